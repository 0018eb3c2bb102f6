"""The asyncpg pool and database bootstrap (create the database when it is missing)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine.settings import DatabaseSettings


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(settings: DatabaseSettings, *, max_size: int | None = None) -> asyncpg.Pool:
    """Open the pool; JSONB values are decoded to Python objects."""
    pool = await asyncpg.create_pool(
        settings.url.get_secret_value(),
        min_size=min(settings.pool_min_size, max_size or settings.pool_max_size),
        max_size=max_size or settings.pool_max_size,
        timeout=settings.connect_timeout,
        init=_init_connection,
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
