"""The newcomer's path as processes: migrate, seed the demo, serve, curl, Ctrl-C."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.devservices.ports import free_port
from engine.devservices.processes import Children
from engine.store.migrate import migrations
from tests.support import services
from tests.support.cli import run_cli
from tests.support.service import AUTH, RESYNC, TASK_INFO
from tests.support.waiting import wait_for


async def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    return await run_cli(*args, env=env, timeout=timeout)


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    name = services.unique("erpsync_demo")
    yield name
    await services.drop_database(name)


async def test_migrate_seed_serve_and_resync_the_demo(
    empty_database: str, broker_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ERPSYNC_DATABASE_URL": services.database_url(empty_database),
        "ERPSYNC_BROKER_URL": services.AMQP_URL,
        "ERPSYNC_BROKER_PREFIX": broker_prefix,
        "ERPSYNC_SERVER_PORT": str(port),
        "ERPSYNC_LOG_FORMAT": "json",
    }
    # Set-up is idempotent: the database is created once, the demo seeded once.
    code, applied = (await _cli("migrate", env=env))[:2]
    assert code == 0
    assert applied.splitlines() == [f"applied {m.version:04d}_{m.name}" for m in migrations()]
    assert (await _cli("migrate", env=env))[:2] == (0, "database schema is up to date\n")
    code, out, _ = await _cli("demo", "seed", env=env)
    assert code == 0 and out.startswith("demo data seeded: 1000 companies, 2000 persons")
    code, out, _ = await _cli("demo", "seed", env=env)
    assert code == 0 and out.startswith("demo data already present")

    db = await asyncpg.connect(services.database_url(empty_database))
    children = Children(tmp_path, env)
    try:
        serve = await children.start("serve", "engine", ["serve"], port=port)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base) as http:
            async with http.post(
                RESYNC,
                data=b'{"ErpConnectionId":0,"InternalKeyIds":[1,2,3]}',
                headers={**AUTH, "Content-Type": "application/json"},
            ) as r:
                assert r.status == 204
                task_id = int(r.headers["X-Batch-Task-Id"])

            async def info() -> dict[str, object]:
                async with http.post(TASK_INFO, json={"Id": task_id}, headers=AUTH) as r:
                    return dict(await r.json())

            done = await wait_for(
                info, lambda i: i["State"] == "Succeeded", timeout=30, what="demo task"
            )
        assert done["ProgressPercent"] == 100
        # The seeded differences on keys 1-3 are now gone: ERP 1's stale phone of company 1,
        # ERP 2's stale mail of company 2 and its different telephone of company 3.
        crm = {r["id"]: r for r in await db.fetch("SELECT * FROM demo_crm.contact WHERE id <= 3")}
        erp1 = await db.fetchrow("SELECT phone FROM demo_erp1.customer WHERE key = 'C00001'")
        erp2 = {
            r["id"]: r
            for r in await db.fetch("SELECT * FROM demo_erp2.customer WHERE id IN (10002, 10003)")
        }
        assert erp1 is not None and erp1["phone"] == crm[1]["phone"]
        assert erp2[10002]["mail"] == crm[2]["email"]
        assert erp2[10003]["telephone"] == crm[3]["phone"]
        changed = await db.fetch(
            "SELECT connection_id, internal_key_id, erp_field FROM sync_log ORDER BY 1, 2"
        )
        assert [tuple(r) for r in changed] == [(1, 1, "phone"), (2, 2, "mail"), (2, 3, "telephone")]
    finally:
        await db.close()
        for child in children.started:
            child.signal(signal.SIGINT)
    code = await serve.wait(30)
    assert code == 0, serve.tail()
    assert "Traceback" not in serve.log()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "ERPSYNC_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:1/erpsync",
            "PostgreSQL is not reachable at postgresql://postgres@127.0.0.1:1/erpsync",
        ),
        (
            "ERPSYNC_BROKER_URL",
            "amqp://guest:secret@127.0.0.1:1/",
            "RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:1/",
        ),
    ],
)
async def test_unreachable_service_gives_one_clear_message(
    variable: str, value: str, expected: str, database: str
) -> None:
    env = {**os.environ, "ERPSYNC_DATABASE_URL": services.database_url(database), variable: value}
    code, _, err = await _cli("serve", env=env)
    assert code == 3
    assert expected in err
    assert variable in err
    assert "Traceback" not in err
    assert "secret" not in err
