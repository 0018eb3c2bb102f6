"""The circuit breaker, driven by a fake clock."""

from __future__ import annotations

from engine.settings import BreakerSettings
from engine.sync.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> State:
    """The breaker's state, read through a call: mypy would keep ``b.state`` narrowed by an
    earlier assert across the calls that change it."""
    return b.state


def breaker(clock: Clock, probes: int = 1) -> CircuitBreaker:
    settings = BreakerSettings(failure_threshold=3, cooldown=10, half_open_probes=probes)
    return CircuitBreaker(settings, clock)


def opened(clock: Clock, probes: int = 1) -> CircuitBreaker:
    """A breaker just opened by three failures in a row."""
    b = breaker(clock, probes)
    for _ in range(3):
        b.failure()
    return b


def half_open(clock: Clock, probes: int = 1) -> CircuitBreaker:
    """A breaker whose cooldown has just run out."""
    b = opened(clock, probes)
    clock.now += 10
    return b


def test_opens_after_consecutive_failures_only() -> None:
    b = breaker(Clock())
    b.failure()
    b.failure()
    b.success()  # resets the streak
    b.failure()
    b.failure()
    assert state(b) == "closed" and b.allow()
    b.failure()
    assert state(b) == "open"
    assert not b.allow()


def test_refuses_during_cooldown_then_lets_one_probe_through() -> None:
    clock = Clock()
    b = opened(clock)
    clock.now += 9.5
    assert not b.allow()
    assert b.remaining() == 0.5
    clock.now += 0.5
    assert state(b) == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # nobody else while it is out
    b.success()
    assert state(b) == "closed"
    assert all(b.allow() for _ in range(5))


def test_failed_probe_opens_again_for_a_full_cooldown() -> None:
    clock = Clock()
    b = half_open(clock)
    assert b.allow()
    b.failure()
    assert state(b) == "open"
    assert b.remaining() == 10
    clock.now += 10
    assert b.allow()


def test_all_probes_must_succeed_to_close() -> None:
    clock = Clock()
    b = half_open(clock, probes=2)
    assert b.allow() and b.allow() and not b.allow()
    b.success()
    assert state(b) == "half_open"
    b.success()
    assert state(b) == "closed"


def test_cancelled_probe_frees_its_slot() -> None:
    clock = Clock()
    b = half_open(clock)
    assert b.allow()
    b.abandon()
    assert b.allow()
