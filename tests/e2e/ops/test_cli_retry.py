"""``erpsync tasks retry-failed`` and ``tasks deliveries`` as processes against the service."""

from __future__ import annotations

import orjson
import pytest

from tests.support.cli import operator_env, run_cli
from tests.support.service import Service


@pytest.fixture
def env(service: Service) -> dict[str, str]:
    return operator_env(str(service.server.make_url("/")))


async def test_retry_failed_queues_the_failed_records_and_refuses_clearly(
    service: Service, env: dict[str, str]
) -> None:
    first = await service.resync(0, [1, 2, 3])  # ERP 2 rejects key 3's actor
    assert (await service.finished(first))["State"] == "Failed"

    code, out, err = await run_cli("tasks", "retry-failed", str(first), env=env)
    assert code == 0, err
    assert out.strip() == (
        f"queued task {first + 1}: 1 failed record of task {first} (1 on connection 2 only)"
    )
    info = await service.finished(first + 1)
    assert orjson.loads(info["Request"])["TargetKeys"] == {"2": [3]}
    assert info["Statistics"]["Failed"] == 1  # still rejected

    code, out, err = await run_cli("tasks", "retry-failed", "--json", str(first + 1), env=env)
    assert code == 0, err
    assert orjson.loads(out)["Id"] == first + 2

    code, out, err = await run_cli("tasks", "retry-failed", "424242", env=env)
    assert code == 1
    assert "404: BatchTask id 424242 not found" in err

    code, out, err = await run_cli("tasks", "deliveries", env=env)
    assert code == 0, err
    assert "no webhook deliveries" in out  # none configured
