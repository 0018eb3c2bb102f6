"""The asyncpg pool and database bootstrap (create the database when it is missing)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from engine.settings import DatabaseSettings


def _encode_json(value: object) -> str:
    # Like json.dumps for the values we store (dicts may have int keys, as with json).
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson rather than the stdlib json: the same JSON, less CPU per row.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's reset query.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL;`` on *every* release: a second round trip per pool call (10% of the front door's
    CPU in the profile). It is safe to skip because the service keeps no session state on pool
    connections:

    * an open transaction is still rolled back (asyncpg does that before calling this hook);
    * no LISTEN (the service never listens), no session ``SET`` (only ``server_settings`` at
      connect time, which ``RESET ALL`` would keep anyway), no ``WITH HOLD`` cursors;
    * the one session-level advisory lock taken on a pool connection,
      :func:`engine.store.recovery.planning_lock`, releases itself and *terminates* the
      connection when the unlock cannot be confirmed, so a lock never outlives its block on a
      connection that goes back to the pool. Migrations lock on their own connection.

    Anything that adds session state on a pool connection must clean it up itself (or use a
    dedicated connection).
    """


async def create_pool(settings: DatabaseSettings, *, max_size: int | None = None) -> asyncpg.Pool:
    """Open the pool; JSONB values are decoded to Python objects, and a session idle inside a
    transaction for ``idle_in_transaction_timeout`` is ended by the server (its locks go)."""
    idle_ms = round(settings.idle_in_transaction_timeout * 1000)
    pool = await asyncpg.create_pool(
        settings.url.get_secret_value(),
        min_size=min(settings.pool_min_size, max_size or settings.pool_max_size),
        max_size=max_size or settings.pool_max_size,
        timeout=settings.connect_timeout,
        init=_init_connection,
        reset=_no_reset,
        server_settings={"idle_in_transaction_session_timeout": str(idle_ms)},
    )
    assert pool is not None
    return pool


def database_name(url: str) -> str:
    """The database a PostgreSQL URL points at."""
    return urlsplit(url).path.lstrip("/") or "postgres"


async def ensure_database(url: str, *, connect_timeout: float = 5.0) -> bool:
    """Create the database named in ``url`` if it does not exist; return True when created."""
    name = database_name(url)
    parts = urlsplit(url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(admin_url, timeout=connect_timeout)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        return False  # another process won the race
    finally:
        await admin.close()
    return True
