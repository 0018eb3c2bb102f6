"""Pool connections are released without asyncpg's reset query: no session state may leak."""

from __future__ import annotations

import asyncpg
import pytest

from engine.settings import DatabaseSettings
from engine.store import recovery, tasks
from engine.store.pool import create_pool
from tests.support import services
from tests.support.waiting import wait_for


@pytest.fixture
def pool_size() -> int:
    return 1  # so that a released connection is the one reused


async def _advisory_locks(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            """
            SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        )
    )


async def test_the_planning_lock_is_released_on_the_pooled_connection(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        async with recovery.planning_lock(conn, 7):
            assert await _advisory_locks(db) == 1
    assert await _advisory_locks(db) == 0
    async with pool.acquire() as conn:  # the same connection, reused
        assert conn.get_server_pid() == pid


async def test_an_unconfirmed_unlock_terminates_the_connection(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    pid = 0

    async def plan() -> None:
        nonlocal pid
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            async with recovery.planning_lock(conn, 8):
                # Someone released the lock behind the context manager's back: the unlock
                # returns false, so the connection's state is unknown and it must go.
                await conn.execute("SELECT pg_advisory_unlock_all()")
                await conn.execute("SELECT pg_advisory_lock(42)")  # leaked session state
                raise RuntimeError("planning failed")

    with pytest.raises(RuntimeError, match="planning failed"):
        await plan()
    assert await _advisory_locks(db) == 0
    async with pool.acquire() as conn:
        assert conn.get_server_pid() != pid


async def test_an_open_transaction_is_still_rolled_back_on_release(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE leaked (x int)")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('leaked')") is None


async def test_a_session_idle_in_a_transaction_is_ended_and_its_row_locks_go(
    database: str, db: asyncpg.Connection
) -> None:
    """A frozen worker's open transaction must not hold other workers up for ever."""
    settings = DatabaseSettings.model_validate(
        {"url": services.database_url(database), "idle_in_transaction_timeout": 0.5}
    )
    frozen = await create_pool(settings, max_size=1)
    try:
        task_id = await tasks.create(frozen, source_connection_id=0, request={})
        conn = await frozen.acquire()
        pid = conn.get_server_pid()
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("UPDATE batch_tasks SET heartbeat_at = now() WHERE id = $1", task_id)
        # Another session waits for the row lock only until the server ends the idle one.
        await db.execute("SET lock_timeout = '10s'")
        await db.execute("UPDATE batch_tasks SET heartbeat_at = now() WHERE id = $1", task_id)
        # The server ended that session (asserted from the server's side: using the dead
        # connection raises one of several asyncpg errors, depending on timing).
        gone = await wait_for(
            lambda: db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid),
            lambda n: n == 0,
            timeout=10,
            what="the idle session to end",
        )
        assert gone == 0
    finally:
        frozen.terminate()
