"""The conformance kit fails connectors with the bugs it is meant to catch.

Each case is the ``memory`` connector with one bug planted; the matching check must fail.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from connectors import (
    Actor,
    Connector,
    CreateActorInput,
    CreateActorResult,
    GetActorsInput,
    GetActorsResult,
    SaveActorsInput,
    SaveActorsResult,
)
from connectors.memory import MemoryConfig, MemoryConnector, MemoryStore
from connectors.testing import ConnectorContract, make_context
from tests.contract.test_contract_memory import MemoryHarness

SECRET = "planted-s3cret"


class HalfWriter(MemoryConnector):
    """Writes a batch actor by actor, yielding in between."""

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        saved: list[Actor] = []
        for actor in request.actors:
            result = await super().save_actors(SaveActorsInput(request.actor_type, [actor]))
            saved += result.saved
            await asyncio.sleep(0)
        return SaveActorsResult(saved=saved)


class FinishesInTheBackground(MemoryConnector):
    """Like a worker thread or a remote server: once started, a batch completes even when the
    caller is cancelled, actor by actor, so for a moment it is partly visible."""

    tasks: set[asyncio.Task[SaveActorsResult]] = set()

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        async def work() -> SaveActorsResult:
            saved: list[Actor] = []
            for actor in request.actors:
                await asyncio.sleep(0)
                result = await MemoryConnector.save_actors(
                    self, SaveActorsInput(request.actor_type, [actor])
                )
                saved += result.saved
            return SaveActorsResult(saved=saved)

        task = asyncio.ensure_future(work())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return await asyncio.shield(task)


class Leaky(MemoryConnector):
    """Logs its secret when it opens."""

    async def open(self) -> None:
        logging.getLogger("leaky").debug("connecting with password=%s", SECRET)


class LeakyRepr(MemoryConnector):
    def __repr__(self) -> str:
        return f"LeakyRepr(token={SECRET})"


class RaisesKeyError(MemoryConnector):
    """Lets a KeyError escape for unknown actor types."""

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        self.config.actor_types[request.actor_type]
        return await super().get_actors(request)


class CreatesTwins(MemoryConnector):
    """Ignores the idempotency key."""

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        return await super().create_actor(CreateActorInput(request.actor))


class RaisesOnUnknownKeys(MemoryConnector):
    """Fails a whole batch for one unknown key."""

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        result = await super().save_actors(request)
        if result.failures:
            from connectors import PermanentError

            raise PermanentError("unknown key")
        return result


class SharedRequest(MemoryConnector):
    """Keeps the current request on the instance across an await: parallel calls mix up."""

    current: SaveActorsInput | None = None

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        self.current = request
        await asyncio.sleep(0)
        assert self.current is not None
        return await super().save_actors(self.current)


class Planted(MemoryHarness):
    def __init__(self, store: str, cls: type[MemoryConnector]) -> None:
        super().__init__(store)
        self.cls = cls

    def connector(self) -> Connector:
        return self.cls(self.config, make_context())


@pytest.fixture
def store() -> Iterator[str]:
    name = f"planted-{uuid.uuid4().hex}"
    yield name
    MemoryStore.drop(name)


KIT = ConnectorContract()
FAILED = (AssertionError, pytest.fail.Exception)


async def test_a_half_written_batch_is_caught(store: str) -> None:
    harness = Planted(store, HalfWriter)
    harness.settle_timeout = 0.2  # it stays half-written: no need to wait long to be sure
    with pytest.raises(FAILED, match="only some actors of the batch were written"):
        await KIT.test_cancellation_leaves_no_half_written_batch(harness)


async def test_a_cancelled_save_that_completes_in_the_background_passes(store: str) -> None:
    await KIT.test_cancellation_leaves_no_half_written_batch(
        Planted(store, FinishesInTheBackground)
    )


@pytest.mark.parametrize("cls", [Leaky, LeakyRepr])
async def test_a_leaked_secret_is_caught(
    store: str,
    cls: type[MemoryConnector],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    harness = Planted(store, cls)
    harness.secrets = (SECRET,)
    with pytest.raises(FAILED, match="a secret appears in"):
        await KIT.test_secrets_never_appear_in_reprs_errors_or_logs(harness, caplog, capfd)


async def test_a_secret_in_a_plain_str_setting_is_caught(
    store: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A config model that forgets SecretStr leaks through model dumps."""

    class PlainConfig(MemoryConfig):
        password: str = SECRET

    class Plain(MemoryConnector):
        config_model = PlainConfig

    harness = Planted(store, Plain)
    harness.config = PlainConfig(**harness.config.model_dump())
    harness.secrets = (SECRET,)
    with pytest.raises(FAILED, match="a secret appears in"):
        await KIT.test_secrets_never_appear_in_reprs_errors_or_logs(harness, caplog, capfd)

    class SecretConfig(MemoryConfig):
        password: SecretStr = SecretStr(SECRET)

    harness.config = SecretConfig(**harness.config.model_dump(exclude={"password"}))
    await KIT.test_secrets_never_appear_in_reprs_errors_or_logs(harness, caplog, capfd)


async def test_an_exception_outside_the_taxonomy_is_caught(store: str) -> None:
    with pytest.raises(FAILED, match="ConnectorError"):
        await KIT.test_errors_are_mapped_to_the_taxonomy(Planted(store, RaisesKeyError))


async def test_ignoring_the_idempotency_key_is_caught(store: str) -> None:
    with pytest.raises(FAILED, match="same idempotency_key made a second actor"):
        await KIT.test_create_round_trip(Planted(store, CreatesTwins))


async def test_failing_a_whole_batch_for_one_unknown_key_is_caught(store: str) -> None:
    from connectors import PermanentError

    with pytest.raises(PermanentError):
        await KIT.test_save_reports_unknown_keys_per_actor(Planted(store, RaisesOnUnknownKeys))


async def test_state_shared_between_parallel_calls_is_caught(store: str) -> None:
    with pytest.raises(FAILED, match="after parallel saves"):
        await KIT.test_parallel_calls_are_safe(Planted(store, SharedRequest))


async def test_the_unplanted_memory_connector_passes_those_checks(
    store: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    harness = Planted(store, MemoryConnector)
    await KIT.test_cancellation_leaves_no_half_written_batch(harness)
    await KIT.test_errors_are_mapped_to_the_taxonomy(harness)
    await KIT.test_create_round_trip(harness)
    await KIT.test_save_reports_unknown_keys_per_actor(harness)
    await KIT.test_parallel_calls_are_safe(harness)
    await KIT.test_secrets_never_appear_in_reprs_errors_or_logs(harness, caplog, capfd)
