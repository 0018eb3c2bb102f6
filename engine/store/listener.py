"""One PostgreSQL LISTEN connection per process, shared by whatever waits on a notification.

The connection is dedicated (never a pool connection: the pool releases connections without
``UNLISTEN``). A notification sent while it is down is lost, so each subscriber is told when
the connection is lost and each time it listens (again): it then falls back to reading and
re-reads what it keeps. The listener reconnects in the background, with backoff. A connection
that dies without a word (a half-open TCP connection) would look alive for good, so the
listener also pings it every ``keepalive`` seconds and drops it when the ping goes unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog

from engine.settings import DatabaseSettings
from engine.store import Connection

log = structlog.get_logger(__name__)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Subscriber:
    notified: Callable[[str], None]
    lost: Callable[[], None]
    listening: Callable[[], None]


class Listener:
    """The process's LISTEN connection; subscribers register before :meth:`start`."""

    def __init__(self, settings: DatabaseSettings, *, keepalive: float = 10.0) -> None:
        self._settings = settings
        self._keepalive = keepalive
        self._channels: dict[str, list[_Subscriber]] = {}
        self._conn: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._pinging: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    def listen(
        self,
        channel: str,
        notified: Callable[[str], None],
        *,
        lost: Callable[[], None] = _nothing,
        listening: Callable[[], None] = _nothing,
    ) -> None:
        """Call ``notified`` with each payload on ``channel``, ``lost`` when the connection is
        lost (notifications may be missed from then on) and ``listening`` each time it listens
        (the first time included: what was kept before may have missed some)."""
        if self._started:
            raise RuntimeError("subscribe before the listener starts")
        self._channels.setdefault(channel, []).append(_Subscriber(notified, lost, listening))

    @property
    def listening(self) -> bool:
        """The LISTEN connection is up."""
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen now; when that fails, keep trying in the background."""
        self._started = True
        try:
            await self._listen()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("notification listener not connected; retrying", error=str(exc))
            self._schedule_reconnect()

    async def close(self) -> None:
        self._closed = True
        for task in (self._reconnect, self._pinging):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._settings.url.get_secret_value(), timeout=self._settings.connect_timeout
        )
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._pinging = asyncio.create_task(self._ping(conn), name="erpsync-listen-ping")
        self._tell(lambda s: s.listening())

    async def _ping(self, conn: asyncpg.Connection) -> None:
        """Drop ``conn`` (so that it is replaced) once a ping goes unanswered."""
        while not conn.is_closed():
            await asyncio.sleep(self._keepalive)
            try:
                await asyncio.wait_for(conn.execute("SELECT 1"), timeout=self._keepalive)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if not conn.is_closed():
                    log.warning("notification listener not answering; reconnecting", error=str(exc))
                    conn.terminate()  # calls _terminated
                return

    def _notified(self, _conn: Connection, _pid: int, channel: str, payload: object) -> None:
        self._tell(lambda s: s.notified(str(payload)), channel)

    def _terminated(self, conn: object) -> None:
        if conn is not self._conn and self._conn is not None:
            return  # an older connection's late word
        self._conn = None
        if self._pinging is not None:
            self._pinging.cancel()
        if self._closed:
            return
        log.warning("notification listener lost its connection; reconnecting")
        self._tell(lambda s: s.lost())
        self._schedule_reconnect()

    def _tell(self, call: Callable[[_Subscriber], None], channel: str | None = None) -> None:
        """``call`` for the channel's subscribers (every channel's without one); one failing
        does not keep the others from being told."""
        channels = self._channels.values() if channel is None else [self._channels[channel]]
        for subscribers in channels:
            for subscriber in subscribers:
                try:
                    call(subscriber)
                except Exception:
                    log.exception("notification subscriber failed", channel=channel)

    def _schedule_reconnect(self) -> None:
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.create_task(self._reconnect_loop(), name="erpsync-listen")

    async def _reconnect_loop(self) -> None:
        delay = 0.5
        while not self._closed and not self.listening:
            await asyncio.sleep(delay)
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.debug("notification listener still not connected", error=str(exc))
                delay = min(delay * 2, 10.0)
