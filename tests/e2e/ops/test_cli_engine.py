"""``erpsync engine status|start|stop|interval`` and ``erpsync sync-all`` against the service."""

from __future__ import annotations

import orjson

from connectors.memory import MemoryStore
from tests.support.cli import operator_env, run_cli
from tests.support.ops import settings_for
from tests.support.service import Service


async def test_engine_commands_drive_the_engine_through_the_api(service: Service) -> None:
    env = operator_env(str(service.server.make_url("/")))
    code, out, err = await run_cli("engine", "status", env=env)
    assert code == 0, err
    assert "engine stopped" in out and "not enabled" in out  # the ops settings: sync off

    code, out, err = await run_cli("sync-all", env=env)
    assert code == 1 and "SyncAll: The continuous sync is not enabled" in err, (out, err)
    assert "[sync] enabled = true" in err
    code, out, err = await run_cli("sync-all", "--force", env=env)
    assert code == 1 and "ForceSyncAll: The continuous sync is not enabled" in err, (out, err)
    code, out, err = await run_cli("sync-all", "--from-start", env=env)
    assert code == 1 and "sync from the start: The continuous" in err, (out, err)

    code, out, err = await run_cli("engine", "interval", "45", env=env)
    assert code == 0 and "interval 00:00:45" in out, (out, err)
    code, out, err = await run_cli("engine", "interval", "later", env=env)
    assert code != 0 and "Interval" in err, (out, err)

    code, out, err = await run_cli("engine", "start", "--json", env=env)
    assert code == 0, err
    status = orjson.loads(out)
    # the status is stored, but no worker runs the sync here: the engine is not running
    assert status["IsRunning"] is False and status["Interval"] == "00:00:45"
    assert "not enabled" in status["StatusMessage"]
    assert [c["ConnectionId"] for c in status["Connections"]] == [0, 1, 2]
    code, out, err = await run_cli("engine", "stop", env=env)
    assert code == 0 and "engine stopped" in out, (out, err)


async def test_sync_all_without_a_live_worker_says_to_start_one(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """The API alone (no worker has a lease): nothing can run the sync, whatever is stored."""
    async with Service(settings_for(database, broker_prefix, stores), engine=False) as api:
        env = operator_env(str(api.server.make_url("/")))
        code, out, err = await run_cli("engine", "status", env=env)
        assert code == 0 and "No worker is alive" in out, (out, err)
        code, out, err = await run_cli("sync-all", "--force", env=env)
        assert code == 1 and "ForceSyncAll: No sync worker is running" in err, (out, err)
        assert "hint: start erpsync worker" in err


async def test_connectors_commands_list_and_set_the_active_state(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    async with Service(settings_for(database, broker_prefix, stores), engine=False) as api:
        env = operator_env(str(api.server.make_url("/")))
        code, out, err = await run_cli("connectors", "deactivate", "2", env=env)
        assert code == 0 and "connection 2 is inactive" in out, (out, err)
        code, out, err = await run_cli("connectors", "deactivate", "2", env=env)
        assert code == 0 and "connection 2 is inactive" in out, (out, err)  # set, not toggled
        code, out, err = await run_cli("connectors", "connections", env=env)
        assert code == 0, err
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        assert rows["1"][-2:] == ["yes", "-"] and rows["2"][-2:] == ["NO", "-"], out
        code, out, err = await run_cli("engine", "status", env=env)
        assert code == 0 and "NO" in out, (out, err)
        code, out, err = await run_cli("connectors", "activate", "2", "--json", env=env)
        assert code == 0 and orjson.loads(out) == {"ErpConnectionId": 2, "Active": True}, err
        code, out, err = await run_cli("connectors", "activate", "0", env=env)
        assert code != 0 and "404" in err, (out, err)
