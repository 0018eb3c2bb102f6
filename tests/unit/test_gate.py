"""The per-connection gate: retries with backoff, taxonomy, breaker, isolation between targets."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.contract import ConfigurationError, PermanentError, TransientError
from engine.settings import ConnectionSettings
from engine.sync.connections import CallFailed, ConnectionHandle


class FakeOperation:
    """Fails with the queued errors, then answers "ok"; counts calls."""

    __name__ = "fake_op"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, request: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def handle(connection_id: int = 1, **options: Any) -> tuple[ConnectionHandle, list[float]]:
    settings = ConnectionSettings.model_validate(
        {
            "id": connection_id,
            "name": f"conn{connection_id}",
            "connector": "memory",
            "retry": {"attempts": 3, "base_delay": 0.5, "max_delay": 4},
            "breaker": {"failure_threshold": 4, "cooldown": 30},
            **options,
        }
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    h = ConnectionHandle.build(settings, connector=None)
    h.sleep = sleep
    return h, slept


async def test_transient_errors_are_retried_with_jittered_backoff() -> None:
    h, slept = handle()
    op = FakeOperation(TransientError("503"), TransientError("503"))
    assert await h.call(op, None) == "ok"
    assert op.calls == 3
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0  # full jitter under the cap


async def test_retry_after_is_honoured() -> None:
    h, slept = handle()
    await h.call(FakeOperation(TransientError("429", retry_after=3.0)), None)
    assert slept == [3.0]


async def test_a_retry_after_beyond_the_backoff_cap_goes_to_the_delayed_retry() -> None:
    h, slept = handle()
    op = FakeOperation(TransientError("429", retry_after=3600.0))
    with pytest.raises(CallFailed) as failed:
        await h.call(op, None)
    assert op.calls == 1
    assert slept == []  # no worker waits an hour in process
    assert failed.value.kind == "transient"
    assert failed.value.retry_after == 3600.0


async def test_gives_up_after_the_configured_attempts() -> None:
    h, _ = handle()
    op = FakeOperation(*[TransientError("down")] * 5)
    with pytest.raises(CallFailed) as failed:
        await h.call(op, None)
    assert op.calls == 3
    assert failed.value.kind == "transient"
    assert "conn1: down" in failed.value.message


@pytest.mark.parametrize(
    ("error", "kind"),
    [(PermanentError("bad value"), "permanent"), (ConfigurationError("no table"), "configuration")],
)
async def test_permanent_and_configuration_errors_are_not_retried(
    error: Exception, kind: str
) -> None:
    h, slept = handle()
    op = FakeOperation(error)
    with pytest.raises(CallFailed) as failed:
        await h.call(op, None)
    assert (op.calls, slept, failed.value.kind) == (1, [], kind)


async def test_timeouts_are_transient() -> None:
    import asyncio

    h, _ = handle(timeout=0.01, retry={"attempts": 1})

    async def hang(request: Any) -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(CallFailed) as failed:
        await h.call(hang, None)
    assert failed.value.kind == "transient"
    assert "timed out" in failed.value.message


async def test_open_breaker_stops_calling_the_target_but_not_others() -> None:
    failing, _ = handle(1)
    healthy, _ = handle(2)
    down = FakeOperation(*[TransientError("down")] * 100)
    for _ in range(2):  # 3 failed attempts, then the 4th consecutive failure opens it
        with pytest.raises(CallFailed):
            await failing.call(down, None)
    assert failing.breaker.state == "open"
    calls = down.calls
    with pytest.raises(CallFailed) as refused:
        await failing.call(down, None)
    assert down.calls == calls  # not called at all
    assert refused.value.kind == "transient"
    assert 29 < refused.value.retry_after <= 30
    assert await healthy.call(FakeOperation(), None) == "ok"


async def test_permanent_errors_do_not_open_the_breaker() -> None:
    h, _ = handle()
    for _ in range(10):
        with pytest.raises(CallFailed):
            await h.call(FakeOperation(PermanentError("bad")), None)
    assert h.breaker.state == "closed"


async def test_rate_limit_is_configured_per_connection() -> None:
    h, _ = handle(rate_limit=5)
    assert h.limiter is not None and h.limiter.max_rate == 5
    assert handle()[0].limiter is None


async def test_rate_limit_holds_across_calls_of_the_connection() -> None:
    h, _ = handle(rate_limit=5)
    for _ in range(5):
        await h.call(FakeOperation(), None)
    assert h.limiter is not None and not h.limiter.has_capacity()  # the 6th call would wait


async def test_configuration_errors_open_the_breaker_which_then_gives_their_reason() -> None:
    h, _ = handle(breaker={"failure_threshold": 2, "cooldown": 30})
    op = FakeOperation(ConfigurationError("relation erp2.customer does not exist"))
    op.errors *= 2
    for _ in range(2):
        with pytest.raises(CallFailed):
            await h.call(op, None)
    with pytest.raises(CallFailed) as refused:
        await h.call(op, None)
    assert op.calls == 2  # the open breaker did not call
    assert refused.value.kind == "configuration"
    assert refused.value.message == (
        "conn1: circuit open, not called (last error: relation erp2.customer does not exist)"
    )
    assert refused.value.retry_after > 0
