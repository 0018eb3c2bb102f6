"""One socket write per event-loop iteration for an AMQP connection.

aiormq writes every frame set (a publish is three frames: method, header, body) with its own
``write``, and each write that reaches an idle RabbitMQ wakes one of its threads. On a VM a
wake-up on another CPU costs more than the write itself (an inter-processor interrupt: ~13 µs of
CPU for each side, against ~2.5 µs on the same CPU; docs/benchmarks.md, "Front door, session
8"), and a busy front door publishes a dozen commands per iteration (the rows of one batched
task INSERT). :class:`CoalescingWriter` keeps what is written during one iteration and sends it
with one ``write`` at the next, so the broker wakes once for all of them.

It is plugged in through aiormq's public ``TransportFactory`` (the ``transport_factory``
connection argument), for ``amqp://`` URLs; ``amqps://`` keeps aiormq's own TLS transport.
Ordering is unchanged (one buffer per connection, written in order), ``drain``, ``write_eof``
and ``close`` send what is buffered first, and nothing is buffered across iterations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL


class CoalescingWriter(asyncio.StreamWriter):
    """A stream writer that sends the writes of one event-loop iteration with one ``write``."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._event_loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._event_loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Send what was written since the last flush (dropped if the transport is closing,
        as the transport itself would)."""
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTCPTransport(TransportFactory):
    """aiormq's plain TCP transport (``asyncio.open_connection``) with a
    :class:`CoalescingWriter`."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kwargs.pop("ssl_context_provider", None)  # plain TCP, as aiormq's own factory
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=kwargs.pop("limit", 2**16), loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, host=url.host or "localhost", port=url.port or 5672, **kwargs
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        return reader, CoalescingWriter(transport, protocol, reader, loop)


class CoalescingRobustConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection whose every (re)connection uses
    :class:`CoalescingTCPTransport` (``amqp://`` only)."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kw: Any) -> None:
        super().__init__(url, loop, **kw)
        if self.url.scheme == "amqp":
            self.kwargs["transport_factory"] = CoalescingTCPTransport()
