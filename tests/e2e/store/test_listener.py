"""The process's LISTEN connection (engine/store/listener.py): a connection that stops answering
without closing (a half-open TCP connection) is noticed by its ping, reported lost and
replaced, and notifications flow again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine.settings import DatabaseSettings
from engine.store import connection_states
from engine.store.listener import Listener
from tests.support import services
from tests.support.waiting import wait_for


class FreezingProxy:
    """A TCP proxy whose open connections can be frozen: bytes stop flowing both ways and
    nothing is closed, as in a network partition. Connections made afterwards flow."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._frozen: list[asyncio.Event] = []  # one per connection: set while it flows
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        for flowing in self._frozen:
            flowing.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        flowing = asyncio.Event()
        flowing.set()
        self._frozen.append(flowing)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, flowing))
            self._tasks.add(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await flowing.wait()
                sink.write(data)
                await sink.drain()


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[FreezingProxy, str]]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    proxy = FreezingProxy(parts.hostname, parts.port)
    port = await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
    finally:
        await proxy.close()


async def test_a_listen_connection_that_stops_answering_is_replaced(
    database: str, db: asyncpg.Connection
) -> None:
    async with proxied(services.database_url(database)) as (proxy, url):
        listener = Listener(DatabaseSettings.model_validate({"url": url}), keepalive=0.2)
        payloads: list[str] = []
        told: list[str] = []
        listener.listen(
            connection_states.CHANNEL,
            payloads.append,
            lost=lambda: told.append("lost"),
            listening=lambda: told.append("listening"),
        )
        await listener.start()
        try:
            assert told == ["listening"]
            proxy.freeze()  # neither answers nor closes: only the ping can tell
            await wait_for(
                lambda: asyncio.sleep(0, told), lambda t: len(t) == 3, timeout=10, what="replaced"
            )
            assert told == ["listening", "lost", "listening"] and listener.listening
            await db.execute(
                "INSERT INTO connection_states (connection_id, active) VALUES (1, false)"
            )
            await wait_for(lambda: asyncio.sleep(0, payloads), timeout=10, what="notified")
            assert connection_states.notified(payloads[0]) == connection_states.Toggled(1, False)
        finally:
            await listener.close()
