"""The ``rest`` connector over real HTTP against the fake ERP: auth, taxonomy, limits, session."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors import (
    Actor,
    ConfigurationError,
    CreateActorInput,
    GetActorsInput,
    PermanentError,
    SaveActorsInput,
    TestConnectionInput,
    TransientError,
)
from connectors.rest import BearerAuth, RestConfig, RestConnector
from connectors.testing import make_context
from connectors.testing.fake_erp import Auth, FakeErp, Fault
from engine.settings import load_settings
from tests.support.rest import TOKEN, rest_settings


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp(auth=Auth("bearer", TOKEN)) as server:
        yield server


async def opened(erp: FakeErp, **settings: Any) -> RestConnector:
    connector = RestConnector(
        RestConfig.model_validate(rest_settings(erp, **settings)), make_context()
    )
    await connector.open()
    return connector


@pytest.fixture
async def rest(erp: FakeErp) -> AsyncIterator[RestConnector]:
    connector = await opened(erp)
    yield connector
    await connector.aclose()


@pytest.mark.parametrize(
    ("server_auth", "client_auth"),
    [
        (Auth("bearer", "tok-1"), {"type": "bearer", "token": "tok-1"}),
        (
            Auth("basic", "pw-1", username="erp"),
            {"type": "basic", "username": "erp", "password": "pw-1"},
        ),
        (
            Auth("api_key", "key-1", header="X-Erp-Key"),
            {"type": "api_key", "header": "X-Erp-Key", "key": "key-1"},
        ),
    ],
)
async def test_each_auth_scheme_is_accepted_and_a_wrong_secret_is_a_configuration_error(
    server_auth: Auth, client_auth: dict[str, Any]
) -> None:
    async with FakeErp(auth=server_auth) as erp:
        key = erp.put("customers", {"name": "Acme"})
        good = await opened(erp, auth=client_auth)
        secret_field = next(k for k in ("token", "password", "key") if k in client_auth)
        wrong = await opened(erp, auth={**client_auth, secret_field: "nope"})
        try:
            assert (await good.test_connection(TestConnectionInput())).ok
            got = await good.get_actors(GetActorsInput("Customer", [key], ["name"]))
            assert [a.fields for a in got.actors] == [{"name": "Acme"}]
            result = await wrong.test_connection(TestConnectionInput())
            assert not result.ok
            assert "HTTP 401" in result.message
            with pytest.raises(ConfigurationError, match="credentials"):
                await wrong.get_actors(GetActorsInput("Customer", [key]))
        finally:
            await good.aclose()
            await wrong.aclose()


async def test_429_is_transient_and_honours_retry_after_capped(
    erp: FakeErp, rest: RestConnector
) -> None:
    get = GetActorsInput("Customer", ["1"])
    erp.add_fault(Fault(status=429, retry_after="7"))
    with pytest.raises(TransientError, match="HTTP 429") as seconds:
        await rest.get_actors(get)
    assert seconds.value.retry_after == 7
    erp.add_fault(Fault(status=429, retry_after="86400"))
    with pytest.raises(TransientError) as capped:
        await rest.get_actors(get)
    assert capped.value.retry_after == 60  # max_retry_after
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    erp.add_fault(Fault(status=503, retry_after=later))
    with pytest.raises(TransientError) as date:
        await rest.get_actors(get)
    assert date.value.retry_after == 60
    erp.add_fault(Fault(status=429, retry_after="soon"))
    with pytest.raises(TransientError) as garbage:
        await rest.get_actors(get)
    assert garbage.value.retry_after is None
    assert (await rest.get_actors(get)).actors == []  # the faults are used up


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_server_errors_are_transient(erp: FakeErp, rest: RestConnector, status: int) -> None:
    erp.add_fault(Fault(status=status))
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await rest.save_actors(SaveActorsInput("Customer", [Actor("Customer", "1", {"name": "x"})]))


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_client_errors_are_permanent(
    erp: FakeErp, rest: RestConnector, status: int
) -> None:
    erp.add_fault(Fault(status=status, body=b'{"message": "no\\u0000 such\\nthing"}'))
    with pytest.raises(PermanentError) as error:
        await rest.create_actor(CreateActorInput(Actor("Customer", "", {"name": "x"})))
    assert error.value.message == f"create Customer: HTTP {status}: no such thing"


async def test_a_hanging_erp_times_out_as_transient_and_the_session_recovers(
    erp: FakeErp,
) -> None:
    rest = await opened(erp, timeout=0.5, read_timeout=0.5)
    try:
        erp.add_fault(Fault(hang=True))
        with pytest.raises(TransientError, match="timed out"):
            await rest.get_actors(GetActorsInput("Customer", ["1"]))
        erp.release()
        key = erp.put("customers", {"name": "after"})
        got = await rest.get_actors(GetActorsInput("Customer", [key], ["name"]))
        assert [a.fields["name"] for a in got.actors] == ["after"]
    finally:
        await rest.aclose()


async def test_a_slow_erp_within_the_timeout_is_fine(erp: FakeErp, rest: RestConnector) -> None:
    key = erp.put("customers", {"name": "slow"})
    erp.add_fault(Fault(delay=0.2))
    got = await rest.get_actors(GetActorsInput("Customer", [key], ["name"]))
    assert [a.fields["name"] for a in got.actors] == ["slow"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_responses_are_refused(erp: FakeErp, chunked: bool) -> None:
    rest = await opened(erp, max_response_bytes=4096)
    try:
        erp.add_fault(Fault(oversized=1_000_000, chunked=chunked))
        with pytest.raises(PermanentError, match="exceeds 4096"):
            await rest.get_actors(GetActorsInput("Customer", ["1"]))
        assert (await rest.get_actors(GetActorsInput("Customer", ["1"]))).actors == []
    finally:
        await rest.aclose()


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'{"items": "nope"}', b'{"items": [1, 2]}', b'[{"id": "1"}]'],
)
async def test_malformed_bodies_are_permanent_errors(
    erp: FakeErp, rest: RestConnector, body: bytes
) -> None:
    erp.add_fault(Fault(body=body))
    with pytest.raises(PermanentError):
        await rest.get_actors(GetActorsInput("Customer", ["1"]))


async def test_records_that_were_not_asked_for_are_ignored(
    erp: FakeErp, rest: RestConnector
) -> None:
    body = {"items": [{"id": "1", "name": "asked"}, {"id": "666", "name": "sneaked in"}]}
    erp.add_fault(Fault(body=json.dumps(body).encode()))
    got = await rest.get_actors(GetActorsInput("Customer", ["1", "2"], ["name"]))
    assert [(a.key, a.fields) for a in got.actors] == [("1", {"name": "asked"})]


async def test_redirects_are_not_followed(erp: FakeErp, rest: RestConnector) -> None:
    erp.add_fault(Fault(status=302, headers={"Location": "http://example.invalid/steal"}))
    with pytest.raises(PermanentError, match="HTTP 302"):
        await rest.get_actors(GetActorsInput("Customer", ["1"]))


async def test_an_unreachable_erp_is_transient(erp: FakeErp) -> None:
    rest = await opened(erp)
    await erp.close()
    try:
        with pytest.raises(TransientError):
            await rest.get_actors(GetActorsInput("Customer", ["1"]))
    finally:
        await rest.aclose()


async def test_a_secret_echoed_by_the_erp_is_redacted(erp: FakeErp, rest: RestConnector) -> None:
    erp.add_fault(Fault(status=400, body=json.dumps({"message": f"bad {TOKEN}"}).encode()))
    with pytest.raises(PermanentError) as error:
        await rest.get_actors(GetActorsInput("Customer", ["1"]))
    assert TOKEN not in str(error.value)
    assert "bad ***" in str(error.value)


async def test_values_are_sent_typed_and_bad_values_fail_per_actor(
    erp: FakeErp, rest: RestConnector
) -> None:
    a = erp.put("customers", {"name": "A", "credit_limit": 1, "active": False})
    b = erp.put("customers", {"name": "B", "credit_limit": 2})
    result = await rest.save_actors(
        SaveActorsInput(
            "Customer",
            [
                Actor("Customer", a, {"credit_limit": "250", "discount": "0.5", "active": "1"}),
                Actor("Customer", b, {"credit_limit": "lots"}),
            ],
        )
    )
    assert [s.key for s in result.saved] == [a]
    assert [(f.key, f.kind) for f in result.failures] == [(b, "permanent")]
    assert "Integer" in result.failures[0].message
    record = erp.get("customers", a)
    assert record is not None
    assert (record["credit_limit"], record["discount"], record["active"]) == (250, 0.5, True)
    assert erp.get("customers", b) == {**(erp.get("customers", b) or {}), "credit_limit": 2}


async def test_keys_are_url_encoded_and_split_into_bounded_requests(erp: FakeErp) -> None:
    odd = erp.put("customers", {"name": "odd"}, key="a b/c?d&e=é")
    keys = [erp.put("customers", {"name": f"n{i}"}) for i in range(25)]
    settings = rest_settings(erp)
    settings["actor_types"]["Customer"]["max_keys_per_request"] = 10
    rest = RestConnector(RestConfig.model_validate(settings), make_context())
    await rest.open()
    try:
        before = erp.requests
        got = await rest.get_actors(GetActorsInput("Customer", [odd, *keys], ["name"]))
        assert [a.key for a in got.actors] == [odd, *keys]
        assert erp.requests - before == 3
    finally:
        await rest.aclose()


async def test_one_session_per_connection_reused_across_parallel_calls(erp: FakeErp) -> None:
    rest = await opened(erp, max_connections=2)
    session = rest.session
    keys = [erp.put("customers", {"name": f"n{i}"}) for i in range(20)]
    await asyncio.gather(*(rest.get_actors(GetActorsInput("Customer", [k])) for k in keys))
    assert rest.session is session
    assert len(erp.peers) <= 2  # pooled: at most max_connections sockets
    await rest.aclose()
    assert session.closed
    with pytest.raises(ConfigurationError, match="not open"):
        await rest.get_actors(GetActorsInput("Customer", keys[:1]))
    await rest.aclose()  # twice is fine


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"base_url": "ftp://erp"}, "http"),
        ({"base_url": "https://user:pw@erp.example"}, "credentials"),
        ({"base_url": "https://erp.example?x=1"}, "query"),
        ({"auth": {"type": "bearer"}}, "token"),
        ({"auth": {"type": "kerberos"}}, "type"),
    ],
)
def test_bad_settings_are_rejected(change: dict[str, Any], problem: str) -> None:
    settings = {
        "base_url": "https://erp.example/api",
        "actor_types": {"Customer": {"get_many": "/c?ids={keys}", "save": "/c", "fields": ["n"]}},
        **change,
    }
    with pytest.raises(ValidationError, match=problem):
        RestConfig.model_validate(settings)


def test_paths_must_be_absolute_and_get_many_needs_keys() -> None:
    base = {"base_url": "https://erp.example"}
    with pytest.raises(ValidationError, match="start with"):
        RestConfig.model_validate(
            {
                **base,
                "actor_types": {
                    "Customer": {"get_many": "c?ids={keys}", "save": "/c", "fields": []}
                },
            }
        )
    with pytest.raises(ValidationError, match="keys"):
        RestConfig.model_validate(
            {**base, "actor_types": {"Customer": {"get_many": "/c", "save": "/c", "fields": []}}}
        )


def test_a_nested_secret_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "erpsync.toml"
    config.write_text(
        '[crm]\nid = 0\nname = "CRM"\nconnector = "memory"\n'
        'settings = { store = "s", actor_types = { Contact = ["name"] } }\n'
        '[[connections]]\nid = 2\nname = "Shop"\nconnector = "rest"\n'
        "[connections.settings]\n"
        'base_url = "https://shop.example"\n'
        'auth = { type = "bearer", token = "placeholder" }\n'
        'actor_types.Customer = { get_many = "/c?ids={keys}", save = "/c", fields = ["name"] }\n'
    )
    env = {
        "ERPSYNC_CONNECTION_2__AUTH__TOKEN": "from-the-env",
        "ERPSYNC_CONNECTION_2__TIMEOUT": "7",
    }
    settings = load_settings(config, env=env)
    rest = RestConfig.model_validate(settings.connections[0].settings)
    assert isinstance(rest.auth, BearerAuth)
    assert rest.auth.token.get_secret_value() == "from-the-env"
    assert rest.timeout == 7
