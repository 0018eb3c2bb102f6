"""Helpers shared by the test suite: unique databases and broker names, settings, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from engine.messaging.topology import Names
from engine.settings import Settings

T = TypeVar("T")

ADMIN_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PASSWORD_HASH_TJE0 = (
    "pbkdf2_sha256$600000$Eey+IAGano5qtxeGQimnXQ==$glqsW8c4s7tBrFoS+Mv838bJMOV66jz3b09Q+pdt868="
)


def unique(prefix: str) -> str:
    """A name no other test run uses."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def database_url(name: str, admin_url: str = ADMIN_DATABASE_URL) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(
    name: str, template: str | None = None, admin_url: str = ADMIN_DATABASE_URL
) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await admin.close()
    return database_url(name, admin_url)


async def drop_database(name: str, admin_url: str = ADMIN_DATABASE_URL) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


PUSH_TARGETS_TO_DELETE = (*range(17), 589)  # ids the tests configure (589: API samples)
"""Connection ids whose push queues a clean-up deletes (tests and benchmarks use a few)."""


async def delete_broker_objects(prefix: str, url: str = AMQP_URL) -> None:
    """Remove the queues and exchanges a test declared under ``prefix``."""
    names = Names(prefix)
    connection = await aio_pika.connect(url)
    try:
        push = [names.push(i) for i in PUSH_TARGETS_TO_DELETE]
        for queue in (names.commands, names.chunks, *push, names.dead_letters):
            channel = await connection.channel()
            with contextlib.suppress(Exception):  # absent queues are fine
                await channel.queue_delete(queue)
        for name in (names.exchange, names.dead_letter_exchange):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run ``python -m engine ARGS`` as a real process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        *args,
        env=dict(os.environ) if env is None else env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``predicate`` holds; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


def memory_settings(
    database: str,
    prefix: str,
    stores: dict[int, str],
    *,
    overrides: dict[int, dict[str, Any]] | None = None,
    connection_options: dict[int, dict[str, Any]] | None = None,
    chunk_size: int = 200,
) -> Settings:
    """Settings with a memory CRM (connection 0) and memory ERPs 1 and 2.

    CRM ``Contact`` fields: name, phone, email, city. ERP ``Customer`` fields: name, phone, email,
    city (ERP 1) and company, tel, mail (ERP 2).
    """
    overrides = overrides or {}
    connection_options = connection_options or {}
    crm = {
        "id": 0,
        "name": "CRM",
        "connector": "memory",
        "settings": {
            "store": stores[0],
            "actor_types": {
                "Contact": ["name", "phone", "email", "city"],
                "Person": ["firstname", "lastname", "email"],
            },
            **overrides.get(0, {}),
        },
    }
    erp1 = {
        "id": 1,
        "name": "ERP one",
        "connector": "memory",
        "settings": {
            "store": stores[1],
            "actor_types": {"Customer": ["name", "phone", "email", "city"]},
            **overrides.get(1, {}),
        },
        "actor_types": [
            {
                "erp": "Customer",
                "crm": "Contact",
                "fields": {
                    "name": {"crm": "name", "direction": "both"},
                    "phone": {"crm": "phone", "direction": "to_erp"},
                    "email": {"crm": "email", "direction": "to_crm"},
                    "city": {"crm": "city", "direction": "none"},
                },
            }
        ],
        **connection_options.get(1, {}),
    }
    erp2 = {
        "id": 2,
        "name": "ERP two",
        "connector": "memory",
        "settings": {
            "store": stores[2],
            "actor_types": {"Customer": ["company", "tel", "mail"]},
            **overrides.get(2, {}),
        },
        "actor_types": [
            {
                "erp": "Customer",
                "crm": "Contact",
                "fields": {
                    "company": {"crm": "name", "direction": "to_erp"},
                    "tel": {"crm": "phone", "direction": "both"},
                    "mail": {"crm": "email", "direction": "to_erp"},
                },
            }
        ],
        **connection_options.get(2, {}),
    }
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5},
            "database": {"url": database_url(database), "pool_min_size": 1, "pool_max_size": 5},
            "broker": {"url": AMQP_URL, "prefix": prefix, "publish_timeout": 5},
            "engine": {"chunk_size": chunk_size},
            "auth": {"users": [{"name": "tje0", "password_hash": PASSWORD_HASH_TJE0}]},
            "crm": crm,
            "connections": [erp1, erp2],
        }
    )
