"""Start-up checks and set-up steps that talk to PostgreSQL and RabbitMQ, with clear messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import asyncpg

from engine.settings import Settings, redact_url
from engine.store import demo, migrate
from engine.store.pool import ensure_database


class ServiceUnavailable(Exception):
    """PostgreSQL or RabbitMQ cannot be reached; the message says where and what to do."""


def _pg_hint() -> str:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").glob("*"))
        if Path("/etc/postgresql").exists()
        else []
    )
    start = (
        f"pg_ctlcluster --skip-systemctl-redirect {versions[-1]} main start"
        if versions
        else "start your PostgreSQL server"
    )
    return f"Start it ({start}) or point ERPSYNC_DATABASE_URL at a running server."


def _database_error(settings: Settings, exc: BaseException) -> ServiceUnavailable:
    url = redact_url(settings.database.url.get_secret_value())
    return ServiceUnavailable(
        f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: {exc}). {_pg_hint()}"
    )


def _broker_error(settings: Settings, exc: BaseException) -> ServiceUnavailable:
    url = redact_url(settings.broker.url.get_secret_value())
    return ServiceUnavailable(
        f"RabbitMQ is not reachable at {url} ({type(exc).__name__}: {exc}). "
        "Start it (rabbitmq-server -detached) or point ERPSYNC_BROKER_URL at a running broker."
    )


async def connect_database(settings: Settings) -> asyncpg.Connection:
    """One connection; raise :class:`ServiceUnavailable` with a hint when it fails."""
    url = settings.database.url.get_secret_value()
    try:
        return await asyncpg.connect(url, timeout=settings.database.connect_timeout)
    except asyncpg.InvalidCatalogNameError:
        raise ServiceUnavailable(
            f"the database at {redact_url(url)} does not exist; run `erpsync migrate`"
        ) from None
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise _database_error(settings, exc) from None


async def check_database(settings: Settings) -> None:
    """Connect once; raise :class:`ServiceUnavailable` with a hint when it fails."""
    conn = await connect_database(settings)
    await conn.close()


async def check_broker(settings: Settings) -> None:
    """Connect once; raise :class:`ServiceUnavailable` with a hint when it fails."""
    try:
        async with asyncio.timeout(settings.broker.connect_timeout + 1):
            connection = await aio_pika.connect(
                settings.broker.url.get_secret_value(), timeout=settings.broker.connect_timeout
            )
    except Exception as exc:
        raise _broker_error(settings, exc) from None
    await connection.close()


async def check_services(settings: Settings) -> None:
    """Both services answer."""
    await check_database(settings)
    await check_broker(settings)


async def run_migrations(settings: Settings) -> list[migrate.Migration]:
    """Create the database when missing, then apply migrations."""
    url = settings.database.url.get_secret_value()
    try:
        await ensure_database(url, connect_timeout=settings.database.connect_timeout)
        conn = await asyncpg.connect(url, timeout=settings.database.connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise _database_error(settings, exc) from None
    try:
        return await migrate.migrate(conn)
    finally:
        await conn.close()


async def seed_demo(settings: Settings, *, reset: bool = False) -> demo.SeedReport:
    """Seed the demo schemas in erpsync's database."""
    url = settings.database.url.get_secret_value()
    try:
        conn = await asyncpg.connect(url, timeout=settings.database.connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise _database_error(settings, exc) from None
    try:
        if reset:
            await demo.reset(conn)
        return await demo.seed(conn)
    finally:
        await conn.close()
