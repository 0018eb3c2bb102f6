"""``erpsync keys import`` / ``export`` as processes against a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import services
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "superoffice" / "keys"


def env_for(database: str) -> dict[str, str]:
    return {
        **os.environ,
        "ERPSYNC_DATABASE_URL": services.database_url(database),
        "ERPSYNC_CONFIG": str(ROOT / "config" / "erpsync.toml"),
    }


async def registry(db: asyncpg.Connection) -> tuple[list[tuple[object, ...]], ...]:
    internal = await db.fetch(
        "SELECT id, crm_actor_type, crm_record_id, most_recent_timestamp FROM internal_keys "
        "ORDER BY id"
    )
    external = await db.fetch(
        "SELECT id, internal_key_id, connection_id, erp_actor_type, erp_key, last_modified "
        "FROM external_keys ORDER BY id"
    )
    return [tuple(r) for r in internal], [tuple(r) for r in external]


@pytest.fixture
async def second_database(template_database: str) -> AsyncIterator[str]:
    async with services.copied_database(template_database, "erpsync_t2") as name:
        yield name


async def test_import_keeps_ids_and_a_second_import_changes_nothing(
    database: str, db: asyncpg.Connection
) -> None:
    env = env_for(database)
    code, out, err = await run_cli("keys", "import", str(SAMPLE), env=env)
    assert code == 0, err
    assert out.splitlines() == [
        "1 external key(s) of deleted connections skipped",
        "imported: internal keys: 4 new, 0 with a new MostRecentTimestamp, 0 unchanged; "
        "external keys: 6 new, 0 with a new MostRecentTimestamp, 0 unchanged",
    ]
    internal, external = await registry(db)
    assert [r[:3] for r in internal] == [
        (7001, "Contact", "11"),
        (7003, "Contact", "12"),
        (7010, "Contact", "13"),
        (7020, "Person", "21"),
    ]
    assert [r[:5] for r in external] == [
        (9101, 7001, 1, "Customer", "E1-11"),
        (9102, 7003, 1, "Customer", "E1-12"),
        (9103, 7010, 1, "Customer", "E1-13"),
        (9104, 7020, 1, "Person", "P1-21"),
        (9201, 7001, 2, "Customer", "E2-11"),
        (9202, 7003, 2, "Customer", "E2-12"),
    ]
    # New keys are numbered after the imported ones.
    new_id = await db.fetchval(
        "INSERT INTO internal_keys (crm_actor_type, crm_record_id) VALUES ('Contact', '99') "
        "RETURNING id"
    )
    assert new_id > 7020
    await db.execute("DELETE FROM internal_keys WHERE id = $1", new_id)
    before = await registry(db)
    code, out, _ = await run_cli("keys", "import", str(SAMPLE), env=env)
    assert code == 0
    assert out.splitlines()[-1] == (
        "nothing to do: internal keys: 0 new, 0 with a new MostRecentTimestamp, 4 unchanged; "
        "external keys: 0 new, 0 with a new MostRecentTimestamp, 6 unchanged"
    )
    assert await registry(db) == before


async def test_dry_run_writes_nothing(database: str, db: asyncpg.Connection) -> None:
    code, out, _ = await run_cli("keys", "import", str(SAMPLE), "--dry-run", env=env_for(database))
    assert code == 0
    assert out.splitlines()[-1].startswith("would import: internal keys: 4 new")
    assert await registry(db) == ([], [])


async def test_clashes_with_the_registry_write_nothing_and_name_the_lines(
    database: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await db.execute(
        "INSERT INTO internal_keys (id, crm_actor_type, crm_record_id) VALUES "
        "(7003, 'Contact', '55'), (500, 'Contact', '13'), (501, 'Contact', '77')"
    )
    await db.execute(
        "INSERT INTO external_keys (id, internal_key_id, connection_id, erp_actor_type, erp_key) "
        "VALUES (1, 501, 2, 'Customer', 'E2-11')"
    )
    keys = tmp_path / "keys"
    shutil.copytree(SAMPLE, keys)
    with (keys / "ErpExternalKey.csv").open("a") as out:
        out.write("9601,8888,1,E1-88,1,,,,,,\n")
    before = await registry(db)
    code, _, err = await run_cli("keys", "import", str(keys), env=env_for(database))
    assert code == 1
    assert err.splitlines() == [
        "ErpInternalKey.csv:3: erpinternalkey_id 7003 is Contact 55 in erpsync, Contact 12 here",
        "ErpInternalKey.csv:4: Contact 13 already has internal key 500 in erpsync, not 7010",
        "ErpExternalKey.csv:6: Customer 'E2-11' on connection 2 is already linked to internal "
        "key 501",
        "ErpExternalKey.csv:9: dangling: no ErpInternalKey 8888",
        "erpsync: 4 problem(s); nothing was written",
    ]
    assert await registry(db) == before


async def test_export_round_trips(
    database: str, db: asyncpg.Connection, second_database: str, tmp_path: Path
) -> None:
    await run_cli("keys", "import", str(SAMPLE), env=env_for(database))
    first = tmp_path / "first"
    code, out, err = await run_cli(
        "keys", "export", str(first), "--format", "json", env=env_for(database)
    )
    assert code == 0, err
    assert f"{first}/ErpInternalKey.json: 4 rows" in out
    code, out, _ = await run_cli("keys", "import", str(first), env=env_for(database))
    assert code == 0 and out.startswith("nothing to do")
    code, _, err = await run_cli("keys", "import", str(first), env=env_for(second_database))
    assert code == 0, err
    second = tmp_path / "second"
    await run_cli("keys", "export", str(second), env=env_for(second_database))
    third = tmp_path / "third"
    await run_cli("keys", "export", str(third), env=env_for(database))
    for table in ("ErpConnection", "ErpInternalKey", "ErpExternalKey"):
        assert (second / f"{table}.csv").read_text() == (third / f"{table}.csv").read_text()
    other = await asyncpg.connect(services.database_url(second_database))
    try:
        assert await registry(other) == await registry(db)
    finally:
        await other.close()
