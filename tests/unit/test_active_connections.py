"""ActiveConnections (engine/api/active.py) with fakes: kept up to date by notification with no
read per call, a notification during a read not undone by the read's older answer, and the
KEPT-seconds fallback while the listener is down, re-read once it listens again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

import asyncpg
import pytest

from engine.api.active import ActiveConnections
from engine.store import connection_states

KEPT = 2.0


class FakePool:
    """Answers ``connection_states.inactive``'s query with ``stored``; with ``hold`` set, each
    read waits until the test releases it (a read in flight)."""

    def __init__(self) -> None:
        self.stored: set[int] = set()
        self.reads = 0
        self.hold = False
        self.started = asyncio.Event()
        self._release: asyncio.Future[set[int]] | None = None

    async def fetch(self, query: str, *args: object) -> list[tuple[int]]:
        assert "connection_states" in query
        self.reads += 1
        answer = set(self.stored)  # the read's snapshot: taken when it starts
        if self.hold:
            self._release = asyncio.get_running_loop().create_future()
            self.started.set()
            await self._release
        return [(cid,) for cid in sorted(answer)]

    def release(self) -> None:
        assert self._release is not None
        self._release.set_result(set())
        self.started.clear()


class FakeListener:
    def __init__(self) -> None:
        self.subscribed: dict[str, dict[str, Callable[..., None]]] = {}

    def listen(
        self,
        channel: str,
        notified: Callable[[str], None],
        *,
        lost: Callable[[], None] = lambda: None,
        listening: Callable[[], None] = lambda: None,
    ) -> None:
        self.subscribed[channel] = {"notified": notified, "lost": lost, "listening": listening}

    def notify(self, connection_id: int, active: bool) -> None:
        payload = json.dumps({"connection_id": connection_id, "active": active})
        self.subscribed[connection_states.CHANNEL]["notified"](payload)

    def truncated(self) -> None:
        self.subscribed[connection_states.CHANNEL]["notified"]("{}")

    def up(self) -> None:
        self.subscribed[connection_states.CHANNEL]["listening"]()

    def lost(self) -> None:
        self.subscribed[connection_states.CHANNEL]["lost"]()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def active(pool: FakePool, clock: Clock) -> ActiveConnections:
    return ActiveConnections(lambda: cast(asyncpg.Pool, pool), kept=KEPT, clock=clock)


@pytest.fixture
def listener(active: ActiveConnections) -> FakeListener:
    listener = FakeListener()
    active.follow(listener)
    listener.up()  # what Listener.start() does once it listens
    return listener


async def test_not_listening_reads_every_kept_seconds_and_sees_its_own_toggles(
    active: ActiveConnections, pool: FakePool, clock: Clock
) -> None:
    pool.stored = {1}
    assert await active.inactive() == {1} and pool.reads == 1
    pool.stored = {1, 2}  # toggled through another process
    clock.now += KEPT - 0.1
    assert await active.inactive() == {1} and pool.reads == 1
    active.changed(3, False)  # toggled through this one
    assert await active.inactive() == {1, 3}
    clock.now += 0.2
    assert await active.inactive() == {1, 2} and pool.reads == 2


async def test_concurrent_callers_share_one_read(active: ActiveConnections, pool: FakePool) -> None:
    pool.stored, pool.hold = {2}, True
    calls = [asyncio.create_task(active.is_active(c)) for c in (1, 2, 3)]
    await pool.started.wait()
    pool.release()
    assert await asyncio.gather(*calls) == [True, False, True]
    assert pool.reads == 1


async def test_listening_notifications_keep_the_set_without_reading(
    active: ActiveConnections, listener: FakeListener, pool: FakePool, clock: Clock
) -> None:
    pool.stored = {1}
    assert active.listening
    assert await active.inactive() == {1} and pool.reads == 1
    clock.now += 1000 * KEPT
    assert await active.inactive() == {1} and pool.reads == 1  # no re-read while listening
    listener.notify(2, False)
    assert not await active.is_active(2)
    listener.notify(1, True)
    listener.notify(2, True)
    assert await active.inactive() == frozenset()
    listener.notify(2, False)
    listener.notify(2, False)  # the same state twice: a repeat changes nothing
    assert await active.inactive() == {2}
    assert pool.reads == 1


@pytest.mark.parametrize(
    ("stored", "notified", "expected"),
    [
        # The read's snapshot predates a deactivation notified while it is in flight.
        (set(), {1: False}, {1}),
        # ... or an activation.
        ({1, 2}, {1: True}, {2}),
        # Several changes, the last one of a connection winning.
        ({1}, {2: False, 1: True, 3: False}, {2, 3}),
    ],
)
async def test_a_change_during_a_read_is_not_undone_by_its_older_answer(
    active: ActiveConnections,
    listener: FakeListener,
    pool: FakePool,
    clock: Clock,
    stored: set[int],
    notified: dict[int, bool],
    expected: set[int],
) -> None:
    pool.stored, pool.hold = stored, True
    reading = asyncio.create_task(active.inactive())
    await pool.started.wait()
    for cid, state in notified.items():
        listener.notify(cid, state)
    pool.release()
    pool.hold = False
    assert await reading == expected
    clock.now += 1000 * KEPT
    assert await active.inactive() == expected and pool.reads == 1


async def test_an_own_toggle_is_read_back_once_while_listening(
    active: ActiveConnections, listener: FakeListener, pool: FakePool, clock: Clock
) -> None:
    assert await active.inactive() == frozenset() and pool.reads == 1
    # This process deactivated 1 (commit c1), another activated it again just after (c2), and
    # both notifications were handled before the toggle's handler told the set about c1.
    listener.notify(1, False)
    listener.notify(1, True)
    active.changed(1, False)
    assert await active.inactive() == frozenset() and pool.reads == 2  # the store says c2
    clock.now += 1000 * KEPT
    assert await active.inactive() == frozenset() and pool.reads == 2
    # The usual order: the own toggle first (seen at once), its notification after.
    pool.stored = {2}
    active.changed(2, False)
    assert await active.inactive() == {2} and pool.reads == 3
    listener.notify(2, False)
    assert await active.inactive() == {2} and pool.reads == 3


async def test_an_own_toggle_during_a_read_is_not_undone(
    active: ActiveConnections, pool: FakePool
) -> None:
    pool.hold = True  # not listening: the own toggle is the only news
    reading = asyncio.create_task(active.inactive())
    await pool.started.wait()
    active.changed(1, False)
    pool.release()
    assert await reading == {1}


async def test_a_lost_listener_falls_back_to_kept_seconds_and_rereads_when_back(
    active: ActiveConnections, listener: FakeListener, pool: FakePool, clock: Clock
) -> None:
    assert await active.inactive() == frozenset() and pool.reads == 1
    listener.lost()
    assert not active.listening
    pool.stored = {1}  # changed while nobody listens: no notification will come
    clock.now += KEPT - 0.1
    assert await active.inactive() == frozenset() and pool.reads == 1  # kept, as before
    clock.now += 0.2
    assert await active.inactive() == {1} and pool.reads == 2  # read again after KEPT
    pool.stored = {1, 2}
    listener.up()  # listening again: what changed in the gap is read at once
    assert active.listening
    assert await active.inactive() == {1, 2} and pool.reads == 3
    clock.now += 1000 * KEPT
    assert await active.inactive() == {1, 2} and pool.reads == 3  # then notifications only
    listener.notify(2, True)
    assert await active.inactive() == {1}


async def test_a_read_during_which_the_listener_came_back_is_not_trusted(
    active: ActiveConnections, pool: FakePool, clock: Clock
) -> None:
    listener = FakeListener()
    active.follow(listener)  # not listening yet (the first connect failed)
    pool.hold = True
    reading = asyncio.create_task(active.inactive())
    await pool.started.wait()
    listener.up()  # may have come up after the read's snapshot: a gap change may be missing
    pool.stored = {1}
    pool.release()
    assert await reading == frozenset()  # the waiting callers get what was read
    pool.hold = False
    assert await active.inactive() == {1} and pool.reads == 2  # the next one reads again
    clock.now += 1000 * KEPT
    assert await active.inactive() == {1} and pool.reads == 2


async def test_a_read_during_which_the_listener_was_lost_is_kept_no_longer(
    active: ActiveConnections, listener: FakeListener, pool: FakePool
) -> None:
    pool.hold = True
    reading = asyncio.create_task(active.inactive())
    await pool.started.wait()
    listener.lost()
    pool.release()
    assert await reading == frozenset()
    pool.hold, pool.stored = False, {2}
    assert await active.inactive() == {2} and pool.reads == 2


async def test_a_truncate_or_an_unreadable_payload_reads_everything_again(
    active: ActiveConnections, listener: FakeListener, pool: FakePool
) -> None:
    pool.stored = {1}
    assert await active.inactive() == {1}
    pool.stored = set()
    listener.truncated()
    assert await active.inactive() == frozenset() and pool.reads == 2
    pool.stored = {3}
    listener.subscribed[connection_states.CHANNEL]["notified"]("not json")
    assert await active.inactive() == {3} and pool.reads == 3


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"connection_id": 2, "active": false}', connection_states.Toggled(2, False)),
        ('{"connection_id": 2, "active": true}', connection_states.Toggled(2, True)),
        ("{}", None),
        ('{"connection_id": "2", "active": true}', None),
        ('{"connection_id": 2, "active": 1}', None),
        ("[1]", None),
        ("", None),
    ],
)
def test_notification_payloads(payload: str, expected: Any) -> None:
    assert connection_states.notified(payload) == expected
