"""The continuous sync's overlap: a change committed late, stamped behind the watermark.

ERP 1 is a memory system stamping its changes with epoch microseconds (positions that read as
times) whose connector does not claim to be horizon-safe, so its runs re-read the last
``sync.overlap`` seconds. Real RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.settings import Settings
from engine.settings.model import SyncSettings
from engine.store import demo
from engine.store import incremental as store
from tests.e2e.ops.test_metrics import Samples, scrape, value
from tests.e2e.test_continuous import demo_settings, now, runs_after, sync_tasks_done
from tests.support import services
from tests.support.service import Service, link
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

LATE_BY_US = 5_000_000
"""How far behind the watermark the late change is stamped (5 s, within the default 300)."""


def settings(
    database: str, prefix: str, stores: dict[int, MemoryStore], **erp1: object
) -> Settings:
    base = memory_settings(
        database, prefix, {c: s.name for c, s in stores.items()}, connection_options={1: erp1}
    )
    sync = SyncSettings(enabled=True, initial_status="stopped", interval=1.0, tick=0.2)
    return base.model_copy(update={"sync": sync})


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Contacts 1 and 2, the same on every system (ERP 1's ``A<i>``, ERP 2's ``B<i>``)."""
    stores[1].epoch_us = True
    for i in (1, 2):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}", "email": f"{i}@c"})
        stores[1].put("Customer", f"A{i}", {"name": f"Co {i}", "phone": f"{i}", "email": f"{i}@c"})
        stores[2].put("Customer", f"B{i}", {"company": f"Co {i}", "tel": f"{i}", "mail": f"{i}@c"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})


async def commit_late(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Run until ERP 1's watermark passed a change of A1, then commit a change of A2 stamped
    behind that watermark (what a transaction that started earlier and committed now does)."""
    await store.set_status(db, "running", "test")
    await runs_after(db, await now(db))  # the first runs only find the end
    stores[1].put("Customer", "A1", {"name": "Co 1", "phone": "1", "email": "new1@c"})
    await runs_after(db, await now(db))
    await sync_tasks_done(db)
    assert stores[0].get("Contact", "1") == {"name": "Co 1", "phone": "1", "email": "new1@c"}
    mark = await store.watermark(db, 1, "Customer")
    assert mark is not None and mark.since == str(stores[1].modified[("Customer", "A1")])
    late = int(mark.since) - LATE_BY_US
    stores[1].put("Customer", "A2", {"name": "Late Co 2", "phone": "2", "email": "2@c"}, late)
    await runs_after(db, await now(db))
    await sync_tasks_done(db)


async def logged(db: asyncpg.Connection) -> list[tuple[int, int, str, bool]]:
    rows = await db.fetch(
        "SELECT connection_id, internal_key_id, erp_field, target_is_crm FROM sync_log ORDER BY id"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_the_overlap_finds_a_change_committed_behind_the_watermark_once(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    async with Service(settings(database, broker_prefix, stores)):
        await commit_late(db, stores)
        assert stores[0].get("Contact", "2") == {"name": "Late Co 2", "phone": "2", "email": "2@c"}
        assert stores[2].get("Customer", "B2") == {
            "company": "Late Co 2",
            "tel": "2",
            "mail": "2@c",
        }
        rows = await logged(db)
        # One row per changed field: A1's email (to the CRM, then ERP 2), A2's name (likewise).
        assert sorted(rows) == [
            (1, 1, "email", True),
            (1, 2, "name", True),
            (2, 1, "mail", False),
            (2, 2, "company", False),
        ], rows
        # Runs after re-read A1 and A2 within the overlap: nothing is queued or logged again.
        tasks = await db.fetchval("SELECT count(*) FROM batch_tasks")
        moved_at = "SELECT moved_at FROM sync_watermarks WHERE connection_id = 1"
        before = await db.fetchval(moved_at)
        again = await runs_after(db, await now(db))
        assert [r["last_queued"] for r in again] == [0, 0, 0], [dict(r) for r in again]
        await sync_tasks_done(db)
        assert await logged(db) == rows
        assert await db.fetchval("SELECT count(*) FROM batch_tasks") == tasks
        assert await db.fetchval(moved_at) == before  # a re-read of nothing new writes nothing
        mark = await store.watermark(db, 1, "Customer")
        assert mark is not None and set(mark.recent or {}) == {"A1", "A2"}, mark


async def test_without_the_overlap_the_late_change_is_never_read(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    async with Service(settings(database, broker_prefix, stores, sync_overlap=0)):
        await commit_late(db, stores)
        assert stores[0].get("Contact", "2") == {"name": "Co 2", "phone": "2", "email": "2@c"}
        assert [r for r in await logged(db) if r[1] == 2] == []


async def test_a_long_open_transaction_shows_as_horizon_lag_and_a_warning(
    database: str, db: asyncpg.Connection, broker_prefix: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The demo's postgres connectors hold their reads back to the oldest open transaction; a
    transaction left open shows per connection on /metrics and as a warning naming it."""
    await demo.seed(db)
    holder = await asyncpg.connect(services.database_url(database))
    try:
        async with Service(demo_settings(database, broker_prefix, horizon_warn="0.5")) as service:
            held = holder.transaction()
            await held.start()
            await holder.execute("SELECT 1")  # the transaction starts with its first statement
            await store.set_status(db, "running", "test")

            def lag(samples: Samples) -> float:
                labels = {"connection": "1", "actor_type": "Customer"}
                return value(samples, "erpsync_sync_horizon_lag_seconds", **labels)

            samples = await wait_for(
                lambda: scrape(service), lambda s: lag(s) > 0.5, what="the horizon lag"
            )
            out = capfd.readouterr().out
            warnings = [line for line in out.splitlines() if "sync horizon held back" in line]
            assert any(
                "connection=1 " in w and "connection_name='Demo ERP 1'" in w for w in warnings
            ), warnings or out[-2000:]
            assert not any("postgres" in w and "://" in w for w in warnings), warnings
            await held.rollback()
            samples = await wait_for(
                lambda: scrape(service), lambda s: lag(s) < 0.5, what="the lag gone"
            )
            assert lag(samples) >= 0
    finally:
        await holder.close()


ISO_STAMPED = """
CREATE SCHEMA ledger;
CREATE TABLE ledger.customer (
    key text PRIMARY KEY, name text, phone text, email text, city text, modified text NOT NULL);
CREATE FUNCTION ledger.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.modified := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    RETURN NEW;
END $$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ledger.customer
    FOR EACH ROW EXECUTE FUNCTION ledger.stamp();
"""
"""An ERP whose rows are stamped with ISO 8601 text when written, visible when committed: the
postgres connector puts no horizon on a text column, so this is a system without a guard."""


@pytest.mark.parametrize("overlap", [None, 0], ids=["default-overlap", "no-overlap"])
async def test_a_real_transaction_committed_late_is_found_by_the_overlap(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    overlap: float | None,
) -> None:
    await db.execute(ISO_STAMPED)
    ledger = {
        "schema": "ledger",
        "actor_types": {
            "Customer": {
                "table": "customer",
                "key_column": "key",
                "modified_column": "modified",
                "fields": ["name", "phone", "email", "city"],
            }
        },
    }
    erp1: dict[str, object] = {"connector": "postgres", "settings": ledger}
    if overlap is not None:
        erp1["sync_overlap"] = overlap
    for i in (1, 2):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}", "email": f"{i}@c"})
        stores[2].put("Customer", f"B{i}", {"company": f"Co {i}", "tel": f"{i}", "mail": f"{i}@c"})
        await db.execute(
            "INSERT INTO ledger.customer (key, name, phone, email) VALUES ($1, $2, $3, $4)",
            f"A{i}",
            f"Co {i}",
            f"{i}",
            f"{i}@c",
        )
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})
    writer = await asyncpg.connect(services.database_url(database))
    try:
        async with Service(settings(database, broker_prefix, stores, **erp1)):
            await store.set_status(db, "running", "test")
            await runs_after(db, await now(db))  # the first runs only find the end
            # A2 is stamped now but stays invisible; A1, stamped later, commits first and is read.
            late = writer.transaction()
            await late.start()
            await writer.execute("UPDATE ledger.customer SET name = 'Late Co 2' WHERE key = 'A2'")
            await db.execute("UPDATE ledger.customer SET email = 'new1@c' WHERE key = 'A1'")
            await runs_after(db, await now(db))
            await sync_tasks_done(db)
            assert stores[0].get("Contact", "1") == {
                "name": "Co 1",
                "phone": "1",
                "email": "new1@c",
            }
            mark = await store.watermark(db, 1, "Customer")
            a1 = await db.fetchval("SELECT modified FROM ledger.customer WHERE key = 'A1'")
            assert mark is not None and mark.since == a1
            await late.commit()
            a2 = await db.fetchval("SELECT modified FROM ledger.customer WHERE key = 'A2'")
            assert a2 < mark.since  # committed behind the watermark
            await runs_after(db, await now(db))
            await sync_tasks_done(db)
            rows = [r for r in await logged(db) if r[1] == 2]
            if overlap == 0:
                assert stores[0].get("Contact", "2") == {
                    "name": "Co 2",
                    "phone": "2",
                    "email": "2@c",
                }
                assert rows == []
            else:
                contact, customer = stores[0].get("Contact", "2"), stores[2].get("Customer", "B2")
                assert contact is not None and contact["name"] == "Late Co 2"
                assert customer is not None and customer["company"] == "Late Co 2"
                assert sorted(rows) == [(1, 2, "name", True), (2, 2, "company", False)], rows
                again = await runs_after(db, await now(db))
                assert [r["last_queued"] for r in again] == [0, 0, 0]
                await sync_tasks_done(db)
                assert sorted(r for r in await logged(db) if r[1] == 2) == sorted(rows)
    finally:
        await writer.close()


async def test_a_first_run_over_nothing_stores_its_watermark_and_the_first_change_is_queued(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """A run that moves nothing writes no watermark, except the first: else a connection whose
    first runs find nothing would take its first change for the end to start from."""
    stores[1].epoch_us = True
    stores[0].put("Contact", "1", {"name": "Co 1", "phone": "1", "email": "1@c"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "A1")})
    async with Service(settings(database, broker_prefix, stores)):
        await store.set_status(db, "running", "test")
        await runs_after(db, await now(db))
        assert await store.watermark(db, 1, "Customer") == store.Watermark(None)
        stores[1].put("Customer", "A1", {"name": "Co 1", "phone": "1", "email": "first@c"})
        await runs_after(db, await now(db))
        await sync_tasks_done(db)
        assert stores[0].get("Contact", "1") == {"name": "Co 1", "phone": "1", "email": "first@c"}


async def test_turning_the_overlap_on_queues_nothing_already_handled(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """Handled without an overlap (no keys recorded), A1 sits behind the watermark when the
    overlap is turned on. Its re-read must not queue it: the CRM has changed the field since
    (email is to_crm, so a Sync task of A1 would write ERP 1's old value over it)."""
    await seed(db, stores)
    async with Service(settings(database, broker_prefix, stores, sync_overlap=0)):
        await store.set_status(db, "running", "test")
        await runs_after(db, await now(db))
        stores[1].put("Customer", "A1", {"name": "Co 1", "phone": "1", "email": "new1@c"})
        stores[1].put("Customer", "A2", {"name": "Co 2", "phone": "2", "email": "new2@c"})
        await runs_after(db, await now(db))
        await sync_tasks_done(db)
        stores[0].put("Contact", "1", {"name": "Co 1", "phone": "1", "email": "crm@c"})
        await runs_after(db, await now(db))
        await sync_tasks_done(db)
        await store.set_status(db, "stopped", "test")
    mark = await store.watermark(db, 1, "Customer")
    assert mark is not None and mark.recent is None
    tasks = await db.fetchval("SELECT count(*) FROM batch_tasks WHERE source_connection_id = 1")
    async with Service(settings(database, broker_prefix, stores)):
        await store.set_status(db, "running", "test")
        await runs_after(db, await now(db))
        await sync_tasks_done(db)
        mark = await store.watermark(db, 1, "Customer")
        assert mark is not None and set(mark.recent or {}) == {"A1", "A2"}
    assert stores[0].get("Contact", "1") == {"name": "Co 1", "phone": "1", "email": "crm@c"}
    assert (
        await db.fetchval("SELECT count(*) FROM batch_tasks WHERE source_connection_id = 1")
        == tasks
    )
