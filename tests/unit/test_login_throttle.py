"""The failed-login limiter (fake clock), client addresses, and connection scoping of callers."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from pydantic import ValidationError

from engine.api.auth import Authenticator, Principal, RegisteredApp
from engine.api.errors import ApiError
from engine.api.passwords import hash_password, verify_password
from engine.api.throttle import LoginThrottle, client_address
from engine.observability.metrics import Metrics
from engine.settings import AuthSettings, LoginThrottleSettings, Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **kw: Any) -> LoginThrottle:
    settings = {"client_failures": 3, "user_failures": 5, "window": 60.0} | kw
    return LoginThrottle(LoginThrottleSettings.model_validate(settings), clock)


def test_a_client_waits_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(2):
        limiter.failed("10.0.0.1", "ada")
        clock.now += 10
    assert limiter.retry_after("10.0.0.1", "ada") is None
    limiter.failed("10.0.0.1", "ada")  # third failure at t+20; the first was at t+0
    assert limiter.retry_after("10.0.0.1", "ada") == ("client", 40)
    assert limiter.retry_after("10.0.0.1", None) == ("client", 40)
    assert limiter.retry_after("10.0.0.2", "bob") is None  # other clients are not affected
    clock.now += 39.5
    assert limiter.retry_after("10.0.0.1", None) == ("client", 1)
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1", None) is None  # slid: two failures left in window
    limiter.failed("10.0.0.1", "ada")
    assert limiter.retry_after("10.0.0.1", None) == ("client", 10)


def test_a_user_name_is_limited_across_clients_and_success_forgives() -> None:
    clock = Clock()
    limiter = throttle(clock)
    for i in range(5):
        limiter.failed(f"10.0.1.{i}", "ada")
    assert limiter.retry_after("10.0.2.1", "ada") == ("user", 60)
    assert limiter.retry_after("10.0.2.1", "bob") is None
    assert limiter.retry_after("10.0.2.1", None) is None  # cached credentials skip the user check
    limiter.succeeded("10.0.1.0", "ada")
    assert limiter.retry_after("10.0.2.1", "ada") is None
    off = throttle(clock, user_failures=0)
    for i in range(50):
        off.failed(f"10.0.3.{i}", "ada")
    assert off.retry_after("10.0.4.1", "ada") is None


def test_memory_is_bounded_and_the_latest_offenders_are_kept() -> None:
    clock = Clock()
    limiter = throttle(clock, max_tracked=100, user_failures=0)
    for _ in range(3):
        limiter.failed("attacker", "x")
    for i in range(1000):
        limiter.failed(f"spray-{i}", "x")
        if i % 10 == 0:
            limiter.failed("attacker", "x")  # still failing: stays among the recent keys
    assert len(limiter) == 100
    assert limiter.retry_after("attacker", None) is not None
    assert limiter.retry_after("spray-0", None) is None  # forgotten, not blocked


def test_client_address_uses_the_trusted_header_only_when_given() -> None:
    assert client_address("192.0.2.1", None) == "192.0.2.1"
    assert client_address("192.0.2.1", "") == "192.0.2.1"
    assert client_address("192.0.2.1", "6.6.6.6, 203.0.113.9") == "203.0.113.9"
    assert client_address(None, None) == "unknown"


FAST_HASH = hash_password("right", iterations=1000)


def authenticator(clock: Clock, metrics: Metrics, **auth_settings: Any) -> Authenticator:
    settings = AuthSettings.model_validate(
        {
            "users": [{"name": "ada", "password_hash": FAST_HASH, "connections": [0, 1]}],
            "login_throttle": {"client_failures": 3},
        }
        | auth_settings
    )
    return Authenticator(settings, lambda: None, metrics, clock)  # type: ignore[arg-type,return-value]


async def test_a_throttled_check_costs_no_hashing_and_refuses_the_right_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return verify_password(password, encoded)

    monkeypatch.setattr("engine.api.auth.verify_password", counting)
    clock, metrics = Clock(), Metrics()
    checker = authenticator(clock, metrics)
    assert [await checker.check_password("ada", "wrong", "c1") for _ in range(3)] == [False] * 3
    with pytest.raises(ApiError) as refused:
        await checker.check_password("ada", "right", "c1")
    assert refused.value.status == 429 and refused.value.error_type == "TooManyRequestsException"
    assert refused.value.headers == {"Retry-After": "60"}
    assert len(calls) == 3  # the refused check hashed nothing
    assert await checker.check_password("ada", "right", "c2") is True
    assert metrics.logins_throttled.labels("client")._value.get() == 1
    clock.now += 60
    assert await checker.check_password("ada", "right", "c1") is True


async def test_concurrent_guesses_cannot_outrun_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return verify_password(password, encoded)

    monkeypatch.setattr("engine.api.auth.verify_password", counting)
    checker = authenticator(Clock(), Metrics())

    async def guess(i: int) -> int:
        try:
            return (
                401 if await checker.basic(basic_value("ada", f"wrong{i}"), "c1") is None else 200
            )
        except ApiError as exc:
            return exc.status

    assert sorted(await asyncio.gather(*(guess(i) for i in range(30)))) == [401] * 3 + [429] * 27
    assert len(calls) == 3
    # The same credential sent concurrently (a client starting up) is checked once.
    calls.clear()
    users = await asyncio.gather(
        *(checker.basic(basic_value("ada", "right"), "c2") for _ in range(30))
    )
    assert users == ["ada"] * 30 and calls == ["right"]


def basic_value(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_scope_intersects_the_user_and_the_app() -> None:
    checker = authenticator(Clock(), Metrics())
    ada, bob = Principal("ada", "basic"), Principal("bob", "bearer")
    narrow = RegisteredApp("narrow", frozenset(), frozenset({1, 2}))
    wide = RegisteredApp("wide", frozenset(), None)
    assert checker.scope(ada, None).connections == frozenset({0, 1})
    assert checker.scope(ada, narrow).connections == frozenset({1})
    assert checker.scope(ada, wide).connections == frozenset({0, 1})
    assert checker.scope(bob, None) is bob and bob.may_touch(7)  # no entry: every connection
    assert checker.scope(bob, narrow).connections == frozenset({1, 2})
    assert not checker.scope(bob, narrow).may_touch(0)


def test_an_allow_list_naming_an_unknown_connection_stops_start_up() -> None:
    crm = {"id": 0, "name": "CRM", "connector": "memory"}
    user = {"name": "ada", "password_hash": FAST_HASH, "connections": [0, 3]}
    app = {"name": "app", "token_sha256": "00", "connections": [9]}
    with pytest.raises(ValidationError, match=r"auth.users\[0\].connections .* \[3\]"):
        Settings.model_validate({"crm": crm, "auth": {"users": [user]}})
    with pytest.raises(ValidationError, match=r"auth.apps\[0\].connections .* \[9\]"):
        Settings.model_validate({"crm": crm, "auth": {"apps": [app]}})
    ok = {**user, "connections": [0]}
    assert Settings.model_validate({"crm": crm, "auth": {"users": [ok]}}).auth.users[0]
