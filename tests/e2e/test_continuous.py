"""Continuous sync end to end: the demo's postgres systems, real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg

from engine.settings import Settings, load_settings
from engine.store import demo
from engine.store import incremental as store
from tests.support import services
from tests.support.service import Service
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = (0, 1, 2)


def demo_settings(
    database: str, prefix: str, interval: float = 1.0, config: Path | None = None, **sync: str
) -> Settings:
    env = {
        "ERPSYNC_DATABASE_URL": services.database_url(database),
        "ERPSYNC_BROKER_URL": services.AMQP_URL,
        "ERPSYNC_BROKER_PREFIX": prefix,
        "ERPSYNC_SERVER_PORT": "0",
        "ERPSYNC_SYNC__ENABLED": "true",
        "ERPSYNC_SYNC__INITIAL_STATUS": "stopped",
        "ERPSYNC_SYNC__INTERVAL": str(interval),
        "ERPSYNC_SYNC__TICK": "0.2",
        **{f"ERPSYNC_SYNC__{k.upper()}": v for k, v in sync.items()},
    }
    return load_settings(config or ROOT / "config" / "erpsync.toml", env)


async def runs_after(db: asyncpg.Connection, since: dt.datetime) -> list[asyncpg.Record]:
    """Every connection's schedule row, once each has finished a run that started after
    ``since``."""

    async def probe() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT * FROM sync_connections WHERE run_started_at > $1 AND last_run_at > $1 "
            "AND run_by IS NULL ORDER BY connection_id",
            since,
        )

    return await wait_for(
        probe,
        lambda rows: len(rows) == len(CONNECTIONS),
        timeout=60,
        what="a run of every connection",
    )


async def sync_tasks_done(db: asyncpg.Connection) -> None:
    async def probe() -> int:
        return int(
            await db.fetchval(
                "SELECT count(*) FROM batch_tasks WHERE state NOT IN ('Succeeded', 'Failed', "
                "'Stopped')"
            )
        )

    await wait_for(probe, lambda n: n == 0, timeout=120, what="every task finished")


async def converge(service: Service) -> None:
    """Force resyncs until the three demo systems agree along every direction."""
    for source in (1, 2, 0):
        info = await service.finished(await service.resync(source, []), timeout=120)
        assert info["State"] == "Succeeded", info


async def now(db: asyncpg.Connection) -> dt.datetime:
    value: dt.datetime = await db.fetchval("SELECT now()")
    return value


async def baseline_runs(service: Service, db: asyncpg.Connection) -> None:
    """Converge the demo, let every connection find its end (first runs queue nothing), stop."""
    await converge(service)
    start = await now(db)
    await store.set_status(db, "running", "test")
    first = await runs_after(db, start)
    assert [r["last_queued"] for r in first] == [0, 0, 0], first
    await store.set_status(db, "stopped", "test")
    await wait_for(
        lambda: db.fetchval("SELECT count(*) FROM sync_connections WHERE run_by IS NOT NULL"),
        lambda n: n == 0,
    )


async def test_changes_on_erp1_and_crm_flow_everywhere_once_and_do_not_echo(
    database: str, db: asyncpg.Connection, broker_prefix: str
) -> None:
    await demo.seed(db)
    settings = demo_settings(database, broker_prefix)
    async with Service(settings) as service:
        await baseline_runs(service, db)

        log_before = int(await db.fetchval("SELECT coalesce(max(id), 0) FROM sync_log"))
        # 500 ERP 1 customers get a new name (both: to the CRM, then to ERP 2's company_name);
        # 500 other CRM contacts a new phone (to ERP 1's phone and ERP 2's telephone).
        await db.execute(
            "UPDATE demo_erp1.customer c SET name = c.name || ' (renamed)' FROM external_keys e "
            "WHERE e.connection_id = 1 AND e.erp_key = c.key AND e.internal_key_id <= 500"
        )
        await db.execute(
            "UPDATE demo_crm.contact SET phone = '+47 ' || id WHERE id > 500 AND id <= 1000"
        )
        start = await now(db)
        await store.set_status(db, "running", "test")
        changed = await runs_after(db, start)
        assert {r["connection_id"]: r["last_queued"] for r in changed}.get(1) == 500, changed
        assert {r["connection_id"]: r["last_queued"] for r in changed}.get(0) == 500, changed
        await sync_tasks_done(db)

        rows = await db.fetch(
            "SELECT connection_id, internal_key_id, erp_field, target_is_crm, new_value "
            "FROM sync_log WHERE id > $1",
            log_before,
        )
        by_target: dict[tuple[int, str, bool], int] = {}
        for r in rows:
            key = (r["connection_id"], r["erp_field"], r["target_is_crm"])
            by_target[key] = by_target.get(key, 0) + 1
        assert by_target == {
            (1, "name", True): 500,  # ERP 1 -> CRM name
            (2, "company_name", False): 500,  # CRM -> ERP 2 company_name
            (1, "phone", False): 500,  # CRM phone -> ERP 1
            (2, "telephone", False): 500,  # CRM phone -> ERP 2
        }, by_target
        pairs = [(r["connection_id"], r["internal_key_id"], r["erp_field"]) for r in rows]
        assert len(pairs) == len(set(pairs)), "a change was logged twice"
        mismatched = await db.fetchval(
            """
            SELECT count(*) FROM internal_keys i
            JOIN demo_crm.contact c ON c.id::text = i.crm_record_id AND i.crm_actor_type = 'Contact'
            JOIN external_keys e1 ON e1.internal_key_id = i.id AND e1.connection_id = 1
            JOIN demo_erp1.customer a ON a.key = e1.erp_key
            JOIN external_keys e2 ON e2.internal_key_id = i.id AND e2.connection_id = 2
            JOIN demo_erp2.customer b ON b.id::text = e2.erp_key
            WHERE c.name <> a.name OR c.name <> b.company_name OR c.phone <> a.phone
               OR c.phone <> b.telephone
            """
        )
        assert mismatched == 0

        # The run after writes nothing: erpsync's own writes are not changes.
        log_after = int(await db.fetchval("SELECT coalesce(max(id), 0) FROM sync_log"))
        tasks_after = int(await db.fetchval("SELECT count(*) FROM batch_tasks"))
        start = await now(db)
        echo = await runs_after(db, start)
        assert [r["last_queued"] for r in echo] == [0, 0, 0], [dict(r) for r in echo]
        await sync_tasks_done(db)
        assert await db.fetchval("SELECT coalesce(max(id), 0) FROM sync_log") == log_after
        assert await db.fetchval("SELECT count(*) FROM batch_tasks") == tasks_after


async def test_a_field_changed_on_both_sides_is_settled_by_its_rule_and_logged(
    database: str, db: asyncpg.Connection, broker_prefix: str, tmp_path: Path
) -> None:
    text = (ROOT / "config" / "erpsync.toml").read_text(encoding="utf-8")
    name = 'fields.name = { crm = "name", direction = "both" }'
    assert name in text
    text = text.replace(name, name.replace(" }", ', conflict = "erp_wins" }'), 1)
    config = tmp_path / "erpsync.toml"
    config.write_text(text, encoding="utf-8")
    await demo.seed(db)
    async with Service(demo_settings(database, broker_prefix, config=config)) as service:
        await baseline_runs(service, db)
        log_before = int(await db.fetchval("SELECT coalesce(max(id), 0) FROM sync_log"))
        # Keys 1-10: the name changes on both sides (erp_wins); 11-20: the email (crm_wins,
        # the default).
        for side, column, table, key_column in (
            ("erp", "name", "demo_erp1.customer", "key"),
            ("crm", "name", "demo_crm.contact", "id::text"),
            ("erp", "email", "demo_erp1.customer", "key"),
            ("crm", "email", "demo_crm.contact", "id::text"),
        ):
            low, high = (1, 10) if column == "name" else (11, 20)
            connection = 1 if side == "erp" else None
            keys = await db.fetch(
                "SELECT e.erp_key, i.crm_record_id FROM internal_keys i "
                "JOIN external_keys e ON e.internal_key_id = i.id AND e.connection_id = 1 "
                "WHERE i.id BETWEEN $1 AND $2",
                low,
                high,
            )
            ids = [r["erp_key"] if connection else r["crm_record_id"] for r in keys]
            await db.execute(
                f"UPDATE {table} SET {column} = $1 || ' ' || {key_column} "
                f"WHERE {key_column} = ANY($2::text[])",
                f"{side}-{column}",
                ids,
            )
        start = await now(db)
        await store.set_status(db, "running", "test")
        await runs_after(db, start)
        await sync_tasks_done(db)
        # Settled: a run after that finds nothing left to do.
        await runs_after(db, await now(db))
        await sync_tasks_done(db)

        rows = await db.fetch(
            "SELECT l.connection_id, l.erp_field, l.target_is_crm, l.conflict_winner, "
            "l.new_value FROM sync_log l WHERE l.id > $1 AND l.internal_key_id <= 20",
            log_before,
        )
        winners = sorted(
            {
                (r["connection_id"], r["erp_field"], r["target_is_crm"], r["conflict_winner"])
                for r in rows
            },
            key=str,
        )
        assert (1, "name", True, "erp") in winners, winners
        assert (1, "email", False, "crm") in winners, winners
        conflicts = [r for r in rows if r["conflict_winner"]]
        assert len(conflicts) == 20, conflicts
        assert all(r["new_value"].startswith(f"{r['conflict_winner']}-") for r in conflicts)
        values = await db.fetch(
            """
            SELECT i.id, c.name, c.email, a.name AS erp_name, a.email AS erp_email,
                   b.company_name
            FROM internal_keys i
            JOIN demo_crm.contact c ON c.id::text = i.crm_record_id
            JOIN external_keys e1 ON e1.internal_key_id = i.id AND e1.connection_id = 1
            JOIN demo_erp1.customer a ON a.key = e1.erp_key
            JOIN external_keys e2 ON e2.internal_key_id = i.id AND e2.connection_id = 2
            JOIN demo_erp2.customer b ON b.id::text = e2.erp_key
            WHERE i.id <= 20 ORDER BY i.id
            """
        )
        for r in values:
            if r["id"] <= 10:
                assert r["name"] == r["erp_name"] == r["company_name"], dict(r)
                assert r["name"].startswith("erp-name"), dict(r)
            else:
                assert r["email"] == r["erp_email"], dict(r)
                assert r["email"].startswith("crm-email"), dict(r)
