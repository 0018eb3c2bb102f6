"""The operator CLI as a process against the running service: output and exit codes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from connectors.memory import MemoryStore
from engine.devservices.ports import free_port
from tests.support.cli import operator_env, run_cli
from tests.support.ops import seed, settings_for, slow_push_settings
from tests.support.service import Service
from tests.support.waiting import wait_for


async def cli(
    *args: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    return await run_cli(*args, env=env, stdin=stdin, timeout=timeout)


@pytest.fixture
def env(service: Service) -> dict[str, str]:
    return operator_env(str(service.server.make_url("/")))


async def test_resync_follow_prints_the_summary_and_exits_zero(
    service: Service, env: dict[str, str], stores: dict[int, MemoryStore]
) -> None:
    code, out, err = await cli("resync", "--from", "0", "--keys", "1,2", "--follow", env=env)

    assert code == 0, err
    assert "queued task 1 (2 records from connection 0)" in err
    assert "Task 1  Succeeded" in out
    assert "2 records; writes: 3 updated, 1 unchanged, 0 failed; 3 fields changed" in out
    lines = out.splitlines()
    erp1 = next(line for line in lines if line.lstrip().startswith("1 ERP one"))
    assert erp1.split()[3:7] == ["2", "2", "0", "0"]  # records, updated, unchanged, created
    assert stores[1].get("Customer", "E1-1")["phone"] == "100"  # type: ignore[index]
    # Off a terminal, progress is plain lines; the last one is the final state.
    assert err.splitlines()[-1] == "task 1: Succeeded, 2/2 records, 0 failed"

    # On a terminal: a live bar with records done/total.
    terminal = {**env, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    code, out, err = await cli("resync", "--from", "0", "--keys", "1", "--follow", env=terminal)
    assert code == 0, err
    out, err = (re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", s) for s in (out, err))  # no ANSI
    assert "━" in err
    assert "task 2 Succeeded" in err
    assert "1/1 records" in err
    assert "Task 2  Succeeded" in out


async def test_failed_task_exits_non_zero_with_reasons(
    service: Service, env: dict[str, str]
) -> None:
    code, out, err = await cli(
        "resync", "--from", "0", "--keys", "2,3", "--follow", "--json", env=env
    )

    assert code == 4, err
    detail = orjson.loads(out)
    assert detail["Task"]["State"] == "Failed"
    assert detail["Failures"] == [
        {
            "InternalKeyId": 3,
            "ConnectionId": 2,
            "ConnectionName": "ERP two",
            "Status": "failed",
            "Error": detail["Failures"][0]["Error"],
            "At": detail["Failures"][0]["At"],
        }
    ]
    assert "rejected by configuration" in detail["Failures"][0]["Error"]

    code, out, _ = await cli("tasks", "show", "1", env=env)
    assert code == 0
    assert "Task 1  Failed" in out
    assert "First failures" in out
    failures = out.split("First failures")[1]
    failure = next(line for line in failures.splitlines() if "rejected by configuration" in line)
    assert failure.split()[:5] == ["3", "2", "ERP", "two", "failed"]


async def test_keys_file_tasks_list_and_synclog(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("1\n2, 3\n")
    code, out, _ = await cli("resync", "--from", "0", "--keys-file", str(keys), env=env)
    assert (code, out) == (0, "queued task 1 (3 records from connection 0)\n")
    await service.finished(1)
    code, out, _ = await cli("resync", "--from", "0", "--all", "--json", env=env)
    assert code == 0 and orjson.loads(out) == {"Id": 2}
    await service.finished(2)

    code, out, _ = await cli("tasks", "list", env=env)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("2", "Failed", "100%"), ("1", "Failed", "100%")]
    code, out, _ = await cli("tasks", "list", "--state", "Succeeded", env=env)
    assert (code, out) == (0, "no batch tasks\n")
    code, out, _ = await cli("tasks", "list", "--state", "Failed", "--json", env=env)
    assert [t["Id"] for t in orjson.loads(out)] == [2, 1]

    code, out, _ = await cli("synclog", "--task", "1", env=env)
    assert code == 0
    assert "Customer.phone (phone) -> ERP" in out
    assert "999 -> 100" in out
    assert "Old name -> Co 2" in out
    assert "old@x -> 1@crm" in out
    code, out, _ = await cli("synclog", "--key", "1", "--json", env=env)
    changes: list[dict[str, Any]] = orjson.loads(out)
    assert sorted(
        (c["ConnectionId"], c["ErpField"], c["OldValue"], c["NewValue"]) for c in changes
    ) == [
        (1, "phone", "999", "100"),
        (2, "mail", "old@x", "1@crm"),
    ]
    newest = max(c["Id"] for c in changes)
    code, out, _ = await cli("synclog", "--key", "1", "--before", str(newest), "--json", env=env)
    assert [c["Id"] for c in orjson.loads(out)] == [min(c["Id"] for c in changes)]
    code, out, _ = await cli("synclog", "--task", "2", env=env)
    assert (code, out) == (0, "no field changes\n")  # the second run found nothing to change

    # One page of one change: the table shows its id and the last line says how to page on.
    code, out, _ = await cli("synclog", "--key", "1", "--limit", "1", env=env)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["id", "when"] and lines[1].split()[0] == str(newest)
    assert lines[-1] == f"1 shown, there are more: add --before {newest} for older ones"
    code, out, _ = await cli("synclog", "--key", "1", "--limit", "2", env=env)
    assert "there are more" not in out and "--before" not in out, out


async def test_errors_are_one_line_with_a_hint(service: Service, env: dict[str, str]) -> None:
    code, out, err = await cli("tasks", "show", "999", env=env)
    assert code == 1 and out == ""
    assert err == (
        "erpsync: 404: BatchTask id 999 not found\nhint: list tasks with `erpsync tasks list`\n"
    )

    wrong = {**env, "ERPSYNC_PASSWORD": "not-the-password"}
    code, _, err = await cli("tasks", "list", env=wrong)
    assert code == 1
    assert err.startswith("erpsync: the API at http://127.0.0.1:")
    assert "refused the credentials of user 'tje0'" in err
    assert "not-the-password" not in err

    nowhere = {**env, "ERPSYNC_URL": f"http://127.0.0.1:{free_port()}"}
    code, _, err = await cli("resync", "--from", "0", "--keys", "1", env=nowhere)
    assert code == 3
    assert err.splitlines()[0].startswith("erpsync: cannot reach the erpsync API at http://")
    assert err.splitlines()[1].startswith("hint: start it with `erpsync serve`")
    assert "Traceback" not in err
    code, _, err = await cli("tasks", "list", "--debug", env=nowhere)
    assert code != 0 and "Traceback" in err

    code, _, err = await cli("resync", "--from", "0", env=env)
    assert code == 2 and "exactly one of --keys, --keys-file or --all" in err
    code, _, err = await cli("resync", "--from", "0", "--keys", "1,x", env=env)
    assert code == 1 and "'x' is not an internal key id" in err
    code, _, err = await cli("resync", "--from", "77", "--keys", "1", env=env)
    assert code == 1 and "ErpConnectionId 77 is not a known connection" in err

    no_password = {k: v for k, v in env.items() if k != "ERPSYNC_PASSWORD"}
    code, _, err = await cli("tasks", "list", env=no_password)
    assert code == 1
    assert "no password" in err and "ERPSYNC_PASSWORD" in err
    code, out, _ = await cli("tasks", "list", "--password-stdin", env=no_password, stdin=b"Tje0\n")
    assert (code, out) == (0, "no batch tasks\n")


# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across
# exec: the CLI under test would never see the Ctrl-C. Restore the default before exec'ing it.
_WITH_DEFAULT_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
)


async def test_ctrl_c_stops_following_not_the_task(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    # ERP 1 answers slowly, so the task is still running when the operator presses Ctrl-C.
    settings = settings_for(database, broker_prefix, stores, overrides={1: {"latency_ms": 1500}})
    async with Service(settings) as service:
        env = {
            **os.environ,
            "ERPSYNC_URL": str(service.server.make_url("/")),
            "ERPSYNC_USER": "tje0",
            "ERPSYNC_PASSWORD": "Tje0",
        }
        proc = await asyncio.create_subprocess_exec(
            *_WITH_DEFAULT_SIGINT,
            *("-m", "engine", "resync", "--from", "0", "--keys", "1,2", "--follow"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        first = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert first == b"queued task 1 (2 records from connection 0)\n"
        progress = await asyncio.wait_for(proc.stderr.readline(), 30)  # it is following
        assert progress.startswith(b"task 1: ")
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130
        assert b"stopped following; task 1 goes on (erpsync tasks show 1)" in err
        assert b"Traceback" not in err
        info = await service.finished(1)
    assert info["State"] == "Succeeded"


async def test_tasks_stop_stops_a_running_task(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    settings = slow_push_settings(database, broker_prefix, stores)  # Stop finds it running
    async with Service(settings) as service:
        env = {
            **os.environ,
            "ERPSYNC_URL": str(service.server.make_url("/")),
            "ERPSYNC_USER": "tje0",
            "ERPSYNC_PASSWORD": "Tje0",
        }
        task_id = await service.resync(0, [1, 2, 3])
        await wait_for(
            lambda: service.task(task_id),
            lambda info: info["State"] == "Started" and info["Statistics"]["ChunksDone"] >= 1,
            what="the task running",
        )
        code, out, _ = await cli("tasks", "show", str(task_id), env=env)
        assert code == 0 and "records read, " in out and "still to run" in out, out
        code, out, err = await cli("tasks", "stop", str(task_id), env=env)
        assert code == 0, err
        assert out.startswith(f"stopped task {task_id} (Failed): Stopped by tje0 after "), out
        info = await service.task(task_id)
        assert info["State"] == "Failed" and info["Statistics"]["Stopped"] is True
        code, out, err = await cli("tasks", "stop", str(task_id), env=env)
        assert (code, out) == (0, f"task {task_id} had already ended (Failed); nothing to stop\n")
        code, out, err = await cli("tasks", "stop", "999", env=env)
        assert code == 1 and "999 not found" in err


async def test_resync_wait_external_and_no_blank_values_use_the_synchronous_calls(
    service: Service, env: dict[str, str], stores: dict[int, MemoryStore]
) -> None:
    code, out, err = await cli("resync", "--from", "0", "--keys", "1", "--wait", env=env)
    assert code == 0, err
    assert out.startswith("ForceResync: OK, task 1\nTask 1 Succeeded: 1 record")
    assert stores[1].get("Customer", "E1-1")["phone"] == "100"  # type: ignore[index]

    stores[0].put("Contact", "2", {"name": "Co 2", "phone": "", "email": "2@crm"})
    code, out, err = await cli(
        *("resync", "--from", "1", "--external", "E1-2,nope", "--actor-type", "Customer"),
        *("--no-blank-values", "--json"),
        env=env,
    )
    assert code == 0, err
    answer = orjson.loads(out)
    assert (answer["TaskId"], answer["IsOk"], answer["Status"]) == (2, True, "OkWithInfo")
    assert "ExternalKey 'nope'" in answer["TechExplanation"]
    assert "not written over a non-blank value: tel" in answer["TechExplanation"]
    assert stores[2].get("Customer", "E2-2")["tel"] == "200"  # type: ignore[index]

    code, out, err = await cli("resync", "--from", "0", "--keys", "3", "--wait", env=env)
    assert code == 4  # ERP 2 rejects key 3
    assert out.startswith("ForceResync: NOT OK (ResyncFailed), task 3")
    code, _, err = await cli("resync", "--from", "1", "--external", "E1-1", env=env)
    assert code == 2 and "--actor-type" in err

    # --all with --actor-type: every record linked to a Customer of ERP 1 (no keys named).
    code, out, err = await cli(
        *("resync", "--from", "1", "--actor-type", "Customer", "--all", "--json"), env=env
    )
    answer = orjson.loads(out)
    linked = await service.task(answer["TaskId"])
    assert orjson.loads(linked["Request"])["InternalKeyIds"] == [1, 2, 3], linked
    assert code == (0 if answer["IsOk"] else 4), err
