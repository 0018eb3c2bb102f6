"""Throttling of failed password checks, per client and per user name (sliding window).

A throttled check is refused before the password is looked at, so a guessing client costs no
PBKDF2 time. State is per api process, in memory, and bounded: at most ``max_tracked`` keys, the
least recently failed forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from engine.settings import LoginThrottleSettings


class LoginThrottle:
    """Counts failures per key within ``window`` seconds; a key with ``limit`` of them waits."""

    def __init__(
        self, settings: LoginThrottleSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        # key -> times of its latest failures (at most the key's limit)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, user: str | None) -> tuple[str, int] | None:
        """``(what, seconds)`` when ``client`` (or ``user``, when given) must wait; else None."""
        for what, key, limit in self._keys(client, user):
            wait = self._wait(key, limit)
            if wait is not None:
                return what, wait
        return None

    def failed(self, client: str, user: str) -> None:
        """Record a failed password check."""
        now = self._clock()
        for _, key, limit in self._keys(client, user):
            times = self._failures.pop(key, None)
            if times is None:
                times = deque(maxlen=limit)
            times.append(now)
            self._failures[key] = times  # most recently failed last
        while len(self._failures) > self._settings.max_tracked:
            self._failures.popitem(last=False)

    def succeeded(self, client: str, user: str) -> None:
        """A verified password: the client's and the user's failures are forgiven."""
        for _, key, _ in self._keys(client, user):
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)

    def _keys(self, client: str, user: str | None) -> list[tuple[str, str, int]]:
        keys = [("client", "c:" + client, self._settings.client_failures)]
        if user is not None and self._settings.user_failures > 0:
            keys.append(("user", "u:" + user, self._settings.user_failures))
        return keys

    def _wait(self, key: str, limit: int) -> int | None:
        times = self._failures.get(key)
        if times is None or len(times) < limit:
            return None
        left = times[0] + self._settings.window - self._clock()
        return math.ceil(left) if left > 0 else None


def client_address(peer: str | None, header_value: str | None) -> str:
    """The client: the last entry of the trusted proxy's header when configured and present,
    else the TCP peer."""
    if header_value:
        last = header_value.rsplit(",", 1)[-1].strip()
        if last:
            return last[:100]
    return peer or "unknown"
