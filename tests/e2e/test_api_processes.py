"""``erpsync api`` with several processes on one port (server.processes / --processes)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support import demo_workers, services
from tests.support.service import AUTH, RESYNC


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


async def test_two_api_processes_share_the_port_and_stop_together(
    database: str, db: asyncpg.Connection, broker_prefix: str
) -> None:
    async with demo_workers.workers(database, services.AMQP_URL, broker_prefix) as group:
        api = await group.start("api", "api", ERPSYNC_SERVER__PROCESSES="2")
        servers = children(api.process.pid)
        assert len(servers) == 2, api.log()[-3000:]
        # A new connection per request: the kernel spreads them over both processes.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(headers=AUTH, connector=connector) as http:

            async def post(n: int) -> int:
                async with http.post(
                    f"http://127.0.0.1:{api.port}{RESYNC}",
                    json={"ErpConnectionId": 0, "InternalKeyIds": [n + 1]},
                ) as response:
                    return response.status

            statuses = await asyncio.gather(*(post(n) for n in range(30)))
        assert statuses == [204] * 30
        assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 30
        api.signal(signal.SIGTERM)
        assert await api.wait(timeout=30) == 0, api.log()[-3000:]
        for pid in servers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
