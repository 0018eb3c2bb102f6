"""What a task tells its caller (issue 20), end to end over HTTP, RabbitMQ and PostgreSQL:
records not linked to a target, a resync of only unknown keys, and how a publishing service
finds the task its message became (CorrelationId, message id; the pika example)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import asyncpg

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support.cli import operator_env, run_cli
from tests.support.service import AUTH, Service, link
from tests.support.services import AMQP_URL, publish_command
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

LIST = "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState"
DASHBOARD = "/api/v1/erpsync"
EXAMPLE = Path(__file__).parents[2] / "examples" / "publish_with_pika.py"


def cli_env(service: Service) -> dict[str, str]:
    return {**operator_env(str(service.server.make_url("/"))), "COLUMNS": "400"}


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore]) -> Settings:
    return memory_settings(database, prefix, {cid: s.name for cid, s in stores.items()})


async def seed_linked_to_erp1_only(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Contacts 1-3 linked to ERP one; ERP two (no create_missing) has never seen them."""
    for i in (1, 2, 3):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}", "email": f"{i}@c"})
        stores[1].put("Customer", f"A{i}", {"name": "old", "phone": "old", "email": "x"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}")})


async def test_records_not_linked_to_a_target_are_reported_on_the_task(
    database: str, broker_prefix: str, db: asyncpg.Connection, stores: dict[int, MemoryStore]
) -> None:
    await seed_linked_to_erp1_only(db, stores)
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        task_id = await service.resync(0, [1, 2, 3])
        info = await service.finished(task_id)
        detail = await (
            await service.client.get(f"{DASHBOARD}/tasks/{task_id}", headers=AUTH)
        ).json()
        code, shown, err = await run_cli("tasks", "show", str(task_id), env=cli_env(service))
    assert code == 0, err
    assert "3 records not linked to connection 2 (ERP two)" in shown, shown

    assert info["State"] == "Succeeded", info
    response = info["Response"]
    assert response.startswith("3 records;"), response
    assert "3 records not linked to connection 2 (ERP two)" in response, response
    assert "create_missing" in response
    targets = {t["ConnectionId"]: t for t in detail["Targets"]}
    assert targets[2]["NotLinked"] == 3 and targets[2]["Outcomes"] == {"not_linked": 3}
    assert targets[1]["NotLinked"] == 0
    reasons = {f["Error"] for f in detail["Failures"] if f["ConnectionId"] == 2}
    assert reasons == {"not linked to ERP two, and no actor type for Contact sets create_missing"}
    assert stores[2].get("Customer", "A1") is None  # nothing was written there


async def test_a_resync_of_only_unknown_keys_fails_and_says_why(
    database: str, broker_prefix: str, db: asyncpg.Connection, stores: dict[int, MemoryStore]
) -> None:
    await seed_linked_to_erp1_only(db, stores)
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        one_unknown = await service.finished(await service.resync(0, [404]))
        all_unknown = await service.finished(await service.resync(0, [404, 405]))
        mixed = await service.finished(await service.resync(1, [1, 404]))

    assert one_unknown["State"] == "Failed", one_unknown
    assert one_unknown["Response"] == (
        "Nothing resynced: the requested internal key is unknown (no such record); "
        "see the task's failures"
    )
    assert all_unknown["State"] == "Failed"
    assert all_unknown["Response"].startswith(
        "Nothing resynced: all 2 requested internal keys are unknown"
    )
    # some keys known: the task did its work, and counts the unknown one (singular)
    assert mixed["State"] == "Succeeded", mixed
    assert mixed["Response"].startswith("1 record; writes:"), mixed["Response"]
    assert "; 1 unknown internal key" in mixed["Response"]
    assert "keys" not in mixed["Response"]


async def test_a_publishing_service_finds_its_task_by_correlation_or_message_id(
    database: str, broker_prefix: str, db: asyncpg.Connection, stores: dict[int, MemoryStore]
) -> None:
    await seed_linked_to_erp1_only(db, stores)
    correlation = f"order-service/{uuid.uuid4().hex[:8]}"
    message_id = f"order-{uuid.uuid4()}"
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        # the synchronous example, as a publishing service runs it (pika, %2F, confirms)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            f"--url={AMQP_URL.rstrip('/')}/%2F",
            f"--exchange={broker_prefix}",
            "--from=1",
            "--keys=1,2",
            f"--correlation-id={correlation}",
            f"--message-id={message_id}",
            f"--api={service.server.make_url('/')}",
            "--user=tje0",
            "--wait",
            "--timeout=30",
            env={**os.environ, "ERPSYNC_PASSWORD": "Tje0"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
        assert process.returncode == 0, output
        assert f"queued: message id {message_id}" in output
        assert ": Succeeded: 2 records;" in output, output

        # a second command of the same correlation, published with aio-pika
        body = {"ErpConnectionId": 1, "InternalKeyIds": [3], "CorrelationId": correlation}
        await publish_command(broker_prefix, json.dumps(body).encode(), "order-second")

        async def by_correlation() -> list[dict[str, object]]:
            found = await service.client.post(
                LIST, json={"CorrelationId": correlation}, headers=AUTH
            )
            assert found.status == 200, await found.text()
            rows: list[dict[str, object]] = await found.json()
            return rows

        tasks = await wait_for(by_correlation, lambda rows: len(rows) == 2, what="both tasks")
        by_message = await (
            await service.client.post(LIST, json={"MessageId": message_id}, headers=AUTH)
        ).json()
        listed = await (
            await service.client.get(
                f"{DASHBOARD}/tasks", params={"correlation_id": correlation}, headers=AUTH
            )
        ).json()
        none = await (
            await service.client.post(LIST, json={"CorrelationId": "nobody"}, headers=AUTH)
        ).json()
        env = cli_env(service)
        code, out, err = await run_cli(
            "tasks", "list", "--correlation-id", correlation, "--json", env=env
        )
        assert code == 0, err
        assert [t["MessageId"] for t in json.loads(out)] == ["order-second", message_id]
        code, out, err = await run_cli(
            "tasks", "list", "--message-id", message_id, "--json", env=env
        )
        assert code == 0, err
        assert [t["CorrelationId"] for t in json.loads(out)] == [correlation]

    assert [t["MessageId"] for t in tasks] == ["order-second", message_id]  # newest first
    assert {t["CorrelationId"] for t in tasks} == {correlation}
    assert [t["Id"] for t in by_message] == [tasks[1]["Id"]]
    assert [t["Id"] for t in listed] == [t["Id"] for t in tasks]
    assert none == []
