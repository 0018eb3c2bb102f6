"""A circuit breaker per target connection (per process), driven by an injectable clock.

Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls are refused
until ``cooldown`` has passed. Half-open: ``half_open_probes`` calls go through; if all succeed
the breaker closes, the first failure opens it again for another cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from engine.settings import BreakerSettings

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Decides whether a call to one connection may go out now."""

    def __init__(
        self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0

    @property
    def state(self) -> State:
        if self._state == "open" and self.remaining() == 0:
            return "half_open"
        return self._state

    def remaining(self) -> float:
        """Seconds left in the cool-down (0 unless open)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.settings.cooldown - self._clock())

    def allow(self) -> bool:
        """May a call go out now? In half-open state this takes one probe slot."""
        if self._state == "open":
            if self.remaining() > 0:
                return False
            self._state, self._probes_out, self._probes_ok = "half_open", 0, 0
        if self._state == "half_open":
            if self._probes_out >= self.settings.half_open_probes:
                return False
            self._probes_out += 1
        return True

    def success(self) -> None:
        """The call reached a healthy target."""
        if self._state == "half_open":
            self._probes_ok += 1
            if self._probes_ok >= self.settings.half_open_probes:
                self._state = "closed"
                self._failures = 0
            return
        self._failures = 0

    def abandon(self) -> None:
        """An allowed call was cancelled before it could tell anything: free its probe slot."""
        if self._state == "half_open" and self._probes_out > self._probes_ok:
            self._probes_out -= 1

    def failure(self) -> None:
        """The call failed because of the target (timeout, transient error)."""
        if self._state == "half_open":
            self._open()
            return
        self._failures += 1
        if self._state == "closed" and self._failures >= self.settings.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._failures = 0
