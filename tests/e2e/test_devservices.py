"""`python -m engine.devservices`: private PostgreSQL and RabbitMQ started, reused, stopped, kept.

Runs on free ports with its own run folder; the shared services are never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from engine.devservices.nodes import answers
from engine.devservices.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / ".run"
    yield folder
    devservices("down", "--run-dir", str(folder))
    if folder.is_dir():
        for entry in folder.iterdir():
            shutil.rmtree(entry.resolve(), ignore_errors=True)  # data kept outside, if any


def devservices(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "engine.devservices", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_up_starts_private_services_reuses_them_and_keeps_their_data(run_dir: Path) -> None:
    pg, mq = free_port(), free_port()
    database_url = f"postgresql://app@127.0.0.1:{pg}/postgres"
    broker_url = f"amqp://sync:s3cret@127.0.0.1:{mq}/dev"
    up = (
        "up",
        "--run-dir",
        str(run_dir),
        "--database-url",
        database_url,
        "--broker-url",
        broker_url,
    )

    first = devservices(*up)
    assert f"PostgreSQL on 127.0.0.1:{pg}: started a new private one" in first
    assert f"RabbitMQ on 127.0.0.1:{mq}: started a new private one" in first
    assert "s3cret" not in first
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE kept (id int)")
    finally:
        await conn.close()
    connection = await aio_pika.connect(broker_url)  # the user and virtual host were created
    await connection.close()

    again = devservices(*up)
    assert f"PostgreSQL on 127.0.0.1:{pg}: reusing the private one" in again
    assert f"RabbitMQ on 127.0.0.1:{mq}: reusing the private one" in again
    assert "running" in devservices("status", "--run-dir", str(run_dir))

    stopped = devservices("down", "--run-dir", str(run_dir))
    assert stopped.count(": stopped") == 2
    assert not answers("127.0.0.1", pg)
    assert not answers("127.0.0.1", mq)

    restarted = devservices(*up)
    assert restarted.count("started the private one again") == 2
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('kept') IS NOT NULL")
    finally:
        await conn.close()
