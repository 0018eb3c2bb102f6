"""The ``tryton`` connector against a real Tryton: sessions, the error taxonomy, sub-records."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

from connectors import (
    Actor,
    ConfigurationError,
    CreateActorInput,
    GetActorsInput,
    PermanentError,
    SaveActorsInput,
    TransientError,
)
from connectors.testing import make_context
from connectors.testing.tryton_server import (
    PARTY_ADMIN_GROUP,
    TrytonServer,
    create_parties,
    read_parties,
)
from connectors.tryton import TrytonConfig, TrytonConnector
from tests.support.tryton import tryton_settings


class Events:
    """A logger that keeps what the connector logs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **values: Any) -> None:
        self.seen.append((event, values))

    def logins(self) -> list[bool]:
        return [v["renewed"] for e, v in self.seen if e == "tryton session opened"]


async def opened(settings: dict[str, Any], events: Events | None = None) -> TrytonConnector:
    connector = TrytonConnector(
        TrytonConfig.model_validate(settings), make_context(logger=events or Events())
    )
    await connector.open()
    return connector


@pytest.mark.parametrize("how", ["expire_sessions", "revoke_sessions"])
async def test_a_refused_session_is_renewed_once(tryton_server: TrytonServer, how: str) -> None:
    login = f"renew-{uuid.uuid4().hex[:8]}"
    await tryton_server.create_user(login)
    events = Events()
    connector = await opened(tryton_settings(tryton_server, login), events)
    try:
        async with tryton_server.client() as admin:
            [key] = await create_parties(admin, [{"name": "Renewed"}])
        request = GetActorsInput("Customer", [key], ["name"])
        assert (await connector.get_actors(request)).actors[0].fields == {"name": "Renewed"}
        assert getattr(tryton_server, how)(login) == 1  # the connector's one session
        assert (await connector.get_actors(request)).actors[0].fields == {"name": "Renewed"}
        assert (await connector.get_actors(request)).actors[0].fields == {"name": "Renewed"}
    finally:
        await connector.aclose()
    assert events.logins() == [False, True]


async def test_a_wrong_password_is_a_configuration_error_without_the_password(
    tryton_server: TrytonServer,
) -> None:
    login = f"wrong-{uuid.uuid4().hex[:8]}"
    await tryton_server.create_user(login)
    wrong = "Wr0ng-" + uuid.uuid4().hex
    connector = await opened(tryton_settings(tryton_server, login, wrong))
    try:
        with pytest.raises(ConfigurationError) as caught:
            await connector.get_actors(GetActorsInput("Customer", ["1"]))
    finally:
        await connector.aclose()
    assert login in caught.value.message
    assert wrong not in caught.value.message and wrong not in repr(caught.value)


async def read_only_group(server: TrytonServer) -> str:
    """A group that may read parties but not write them (party administrators keep every
    right, so the other tests' users are unaffected)."""
    name = f"Party readers {uuid.uuid4().hex[:8]}"
    async with server.client() as admin:
        [group] = await admin.call("model.res.group.create", [{"name": name}])
        [admins] = await admin.call(
            "model.res.group.search", [["name", "=", PARTY_ADMIN_GROUP]], 0, None, None
        )
        # ir.model.access.model: a Many2One to ir.model in 7.0, the model's name from 7.8 on
        described = await admin.call("model.ir.model.access.fields_get", ["model"])
        model: int | str = "party.party"
        if described["model"]["type"] == "many2one":
            [model] = await admin.call(
                "model.ir.model.search", [["model", "=", "party.party"]], 0, None, None
            )
        rights = ("perm_read", "perm_write", "perm_create", "perm_delete")
        await admin.call(
            "model.ir.model.access.create",
            [
                {"model": model, "group": admins, **dict.fromkeys(rights, True)},
                {"model": model, "group": group, **dict.fromkeys(rights, False), "perm_read": True},
            ],
        )
    return name


async def test_missing_rights_are_a_configuration_error(tryton_server: TrytonServer) -> None:
    login = f"reader-{uuid.uuid4().hex[:8]}"
    await tryton_server.create_user(login, groups=[await read_only_group(tryton_server)])
    async with tryton_server.client() as admin:
        [key] = await create_parties(admin, [{"name": "Guarded"}])
    connector = await opened(tryton_settings(tryton_server, login))
    try:
        with pytest.raises(ConfigurationError) as caught:
            await connector.save_actors(
                SaveActorsInput("Customer", [Actor("Customer", key, {"name": "Changed"})])
            )
    finally:
        await connector.aclose()
    assert login in caught.value.message


async def test_validation_errors_are_permanent_and_per_actor(
    tryton_server: TrytonServer,
) -> None:
    code = f"C-{uuid.uuid4().hex[:8]}"
    settings = tryton_settings(tryton_server)
    settings["actor_types"]["Customer"]["fields"] = ["name", "code"]
    connector = await opened(settings)
    try:
        first = await connector.create_actor(
            CreateActorInput(Actor("Customer", "", {"name": "One", "code": code}))
        )
        with pytest.raises(PermanentError, match="unique"):
            await connector.create_actor(
                CreateActorInput(Actor("Customer", "", {"name": "Two", "code": code}))
            )
        async with tryton_server.client() as admin:
            a, b = await create_parties(admin, [{"name": "A"}, {"name": "B"}])
        saved = await connector.save_actors(
            SaveActorsInput(
                "Customer",
                [
                    Actor("Customer", a, {"code": code}),  # taken by `first`
                    Actor("Customer", b, {"name": "B2"}),
                ],
            )
        )
    finally:
        await connector.aclose()
    assert first.actor.fields["code"] == code
    assert [f.key for f in saved.failures] == [a]
    assert "unique" in saved.failures[0].message
    assert [s.key for s in saved.saved] == [b]
    async with tryton_server.client() as admin:
        parties = await read_parties(admin, [a, b], ["name"])
    assert parties == {a: {"name": "A"}, b: {"name": "B2"}}


async def test_sub_records_follow_the_fields(tryton_server: TrytonServer) -> None:
    """Address and contact mechanisms are created, updated and (blank) deleted."""
    connector = await opened(tryton_settings(tryton_server))
    try:
        async with tryton_server.client() as admin:
            [key] = await create_parties(admin, [{"name": "Bare"}])
        changes: list[dict[str, str | None]] = [
            {"phone": "+47 111", "city": "Oslo"},
            {"phone": "+47 222", "email": "a@example.test", "street": "Gate 1"},
            {"phone": None, "email": "b@example.test", "city": None},
        ]
        for change in changes:
            result = await connector.save_actors(
                SaveActorsInput("Customer", [Actor("Customer", key, change)])
            )
            assert not result.failures, result.failures
        async with tryton_server.client() as admin:
            got = (await read_parties(admin, [key]))[key]
            mechanisms = await admin.call(
                "model.party.contact_mechanism.search_read",
                [["party", "=", int(key)]],
                0,
                None,
                None,
                ["type", "value"],
            )
    finally:
        await connector.aclose()
    assert got == {
        "name": "Bare",
        "phone": None,
        "email": "b@example.test",
        "street": "Gate 1",
        "postal_code": None,
        "city": None,
    }
    assert [(m["type"], m["value"]) for m in mechanisms] == [("email", "b@example.test")]


async def test_an_unreachable_server_is_a_transient_error(tryton_server: TrytonServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        connector = await opened(tryton_settings(tryton_server, url=f"http://127.0.0.1:{port}"))
        try:
            with pytest.raises(TransientError):
                await connector.get_actors(GetActorsInput("Customer", ["1"]))
        finally:
            await connector.aclose()


async def test_large_answers_are_read_whole_and_capped(tryton_server: TrytonServer) -> None:
    """A batch read of ~400 KB arrives in many chunks; max_response_bytes still caps it."""
    async with tryton_server.client() as admin:
        keys = await create_parties(admin, [{"name": f"{i:04d} " + "x" * 2000} for i in range(200)])
    request = GetActorsInput("Customer", keys, ["name"])
    connector = await opened(tryton_settings(tryton_server))
    small = await opened(tryton_settings(tryton_server, max_response_bytes=100_000))
    try:
        got = await connector.get_actors(request)
        with pytest.raises(PermanentError, match="exceeds 100000 bytes"):
            await small.get_actors(request)
    finally:
        await connector.aclose()
        await small.aclose()
    assert [a.key for a in got.actors] == keys
    assert all(len(a.fields["name"] or "") == 2005 for a in got.actors)
