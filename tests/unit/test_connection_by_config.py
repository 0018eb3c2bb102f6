"""TestConnectionByConfig's parts without services: ConfigFields binding, the trial settings
(options, coercion, secrets left out) and the ActorDesk's trial (own connector, timeout,
bounded concurrency, closed afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

import connectors as sdk
from connectors.memory import MemoryConfig, MemoryConnector, MemoryStore
from connectors.postgres import PostgresConfig
from connectors.rest.config import RestConfig
from connectors.superoffice import SuperOfficeConfig
from connectors.tryton import TrytonConfig
from engine.api.errors import ApiError
from engine.api.openapi import document
from engine.api.readthrough import config_fields
from engine.api.xmlbody import xml_arguments
from engine.observability.metrics import Metrics
from engine.settings import ConnectionSettings
from engine.settings.trial import TrialSettingsError, secret_options, trial_settings
from engine.sync import actors as desk_module
from engine.sync.actors import ActorDesk
from tests.support.settings import memory_settings

SECRET = "s3cret-Value-never-shown"
CUSTOMERS = {"get_many": "/c?ids={keys}", "save": "/c/batch", "fields": ["name"]}


def test_config_fields_are_option_names_to_text() -> None:
    assert config_fields({}) == {}
    assert config_fields({"configfields": None}) == {}
    given = {"configfields": {"Url": "http://x", "port": 5432, "tls": True, "ratio": 0.5}}
    assert config_fields(given) == {
        "Url": "http://x",
        "port": "5432",
        "tls": "true",
        "ratio": "0.5",
    }
    for bad in ("text", ["a"], {"": "x"}, {"k\x00": "x"}, {"k" * 256: "x"}, {"k": None}):
        with pytest.raises(ApiError) as refused:
            config_fields({"configfields": bad})
        assert refused.value.status == 400
    with pytest.raises(ApiError) as refused:
        config_fields({"configfields": {f"k{i}": "v" for i in range(101)}})
    assert refused.value.status == 400
    for value in (SECRET + "\x00", SECRET * 1000):
        with pytest.raises(ApiError) as refused:
            config_fields({"configfields": {"password": value}})
        assert SECRET not in refused.value.message  # a value is never quoted


def test_xml_binds_a_string_dictionary_as_rest_and_soap_write_it() -> None:
    rest = (
        b"<R><ConfigFields xmlns:a='http://schemas.microsoft.com/2003/10/Serialization/Arrays'>"
        b"<a:KeyValueOfstringstring><a:Key>store</a:Key><a:Value>s</a:Value>"
        b"</a:KeyValueOfstringstring></ConfigFields></R>"
    )
    soap = (
        b"<R xmlns:e='http://www.superoffice.net/ws/crm/NetServer/Services88'><e:ConfigFields>"
        b"<e:StringKeyValuePair><e:Key>store</e:Key><e:Value>s</e:Value></e:StringKeyValuePair>"
        b"<e:StringKeyValuePair><e:Key>latency_ms</e:Key><e:Value>5</e:Value>"
        b"</e:StringKeyValuePair></e:ConfigFields></R>"
    )
    one_each = b"<R><ConfigFields><store>s</store></ConfigFields></R>"
    shape: dict[str, Any] = {"maps": {"configfields"}}
    assert xml_arguments(rest, (), {"configfields"}, **shape) == {"configfields": {"store": "s"}}
    assert xml_arguments(soap, (), {"configfields"}, **shape) == {
        "configfields": {"store": "s", "latency_ms": "5"}
    }
    assert xml_arguments(one_each, (), {"configfields"}, **shape) == {
        "configfields": {"store": "s"}
    }


def test_the_options_holding_a_secret_are_found_in_every_built_in_model() -> None:
    assert secret_options(MemoryConfig) == frozenset()
    assert secret_options(PostgresConfig) == {"dsn"}
    assert secret_options(TrytonConfig) == {"password"}
    assert secret_options(RestConfig) == {"auth", "headers"}
    assert secret_options(SuperOfficeConfig) == {"auth", "app_token"}


def _memory(**settings: Any) -> ConnectionSettings:
    return ConnectionSettings(
        id=1,
        name="ERP one",
        connector="memory",
        settings={"store": "configured", "actor_types": {"Customer": ["name"]}, **settings},
    )


def test_options_replace_the_configured_ones_coerced_by_the_connector_model() -> None:
    conn = _memory(latency_ms=3.0)
    trial = trial_settings(conn, {"Store": "other", "LATENCY_MS": "7.5", "fail": "transient"})
    assert trial == {
        "store": "other",
        "actor_types": {"Customer": ["name"]},
        "latency_ms": "7.5",
        "fail": "transient",
    }
    assert MemoryConfig.model_validate(trial).latency_ms == 7.5
    assert trial_settings(conn, {}) == conn.settings  # nothing given: the configured ones
    assert conn.settings["store"] == "configured"  # nothing is changed in place


def test_unknown_twice_given_and_invalid_options_are_refused_by_name() -> None:
    conn = _memory()
    with pytest.raises(TrialSettingsError) as refused:
        trial_settings(conn, {"nosuch": "1", "store": "s", "other": "2"})
    message = str(refused.value)
    assert "'nosuch', 'other'" in message and "does not take" in message
    assert "its options: actor_types, fail, fail_keys" in message
    with pytest.raises(TrialSettingsError, match="'store' twice"):
        trial_settings(conn, {"store": "a", "STORE": "b"})
    with pytest.raises(TrialSettingsError) as refused:
        trial_settings(conn, {"latency_ms": "soon", "fail": "always"})
    message = str(refused.value)
    assert message.startswith("ConfigFields do not configure connector 'memory': latency_ms: ")
    assert "fail: Input should be 'transient', 'permanent' or 'configuration'" in message
    assert "soon" not in message and "always" not in message
    with pytest.raises(TrialSettingsError, match=r"actor_types__Customer: not an option"):
        trial_settings(conn, {"actor_types__Customer": "name"})  # memory takes no flat keys


def test_a_trial_never_carries_a_configured_secret() -> None:
    tryton = ConnectionSettings(
        id=2,
        name="Tryton",
        connector="tryton",
        settings={
            "url": "http://127.0.0.1:8000",
            "database": "db",
            "username": "erpsync",
            "password": SECRET,
        },
    )
    # another URL without a password: refused, the configured one is not sent there
    with pytest.raises(TrialSettingsError) as refused:
        trial_settings(tryton, {"url": "http://elsewhere.test:8000"})
    assert "password: required (a test uses no configured secret: give it)" in str(refused.value)
    trial = trial_settings(tryton, {"password": "given"})
    assert trial["password"] == "given" and trial["url"] == "http://127.0.0.1:8000"
    assert SECRET not in repr(trial)
    rest = ConnectionSettings(
        id=3,
        name="REST",
        connector="rest",
        settings={
            "base_url": "http://127.0.0.1:9000",
            "auth": {"type": "bearer", "token": SECRET},
            "headers": {"X-Tenant": SECRET},
            "actor_types": {"Customer": CUSTOMERS},
        },
    )
    trial = trial_settings(
        rest, {"AUTH__type": "basic", "auth__username": "u", "auth__password": "p"}
    )
    assert trial == {
        "base_url": "http://127.0.0.1:9000",
        "actor_types": {"Customer": CUSTOMERS},
        "auth__type": "basic",
        "auth__username": "u",
        "auth__password": "p",
    }
    assert RestConfig.model_validate(trial).auth.password == SecretStr("p")  # type: ignore[union-attr]


def test_an_alias_is_an_option_name_and_a_plain_options_problem_is_told() -> None:
    postgres = ConnectionSettings(
        id=4,
        name="PG",
        connector="postgres",
        settings={"dsn": SECRET, "actor_types": {"Customer": {"table": "c", "fields": ["name"]}}},
    )
    for name in ("schema", "Schema_Name"):
        trial = trial_settings(postgres, {name: "erp"})
        assert "dsn" not in trial and trial["schema"] == "erp"  # the service's own database
    with pytest.raises(TrialSettingsError) as unknown:
        trial_settings(postgres, {"nosuch": "x"})
    # the options as the configuration spells them: the alias `schema`, not the field's name
    assert str(unknown.value).endswith("its options: actor_types, dsn, pool_max_size, schema")
    with pytest.raises(TrialSettingsError) as refused:
        trial_settings(postgres, {"schema": "not an identifier"})
    assert "schema: Value error, 'not an identifier' is not a plain SQL" in str(refused.value)


# --- the desk's trial ---------------------------------------------------------------------


@pytest.fixture
async def desk() -> AsyncIterator[tuple[ActorDesk, dict[int, MemoryStore]]]:
    names = {i: f"trial-{i}-{uuid.uuid4().hex[:8]}" for i in (0, 1, 2)}
    settings = memory_settings("unused", "unused", names, connection_options={1: {"timeout": 0.3}})
    opened = ActorDesk(settings, Metrics())
    yield opened, {i: MemoryStore.named(name) for i, name in names.items()}
    await opened.close()
    for name in names.values():
        MemoryStore.drop(name)


def _trial(desk: ActorDesk, **options: str) -> dict[str, Any]:
    conn = desk.settings.connection(1)
    assert conn is not None
    return trial_settings(conn, options)


async def test_the_trial_tests_its_own_connector_and_answers_failures(
    desk: tuple[ActorDesk, dict[int, MemoryStore]],
) -> None:
    actors, stores = desk
    ok = await actors.test_config(1, _trial(actors))
    assert ok == sdk.TestConnectionResult(True, f"memory store {stores[1].name!r}")
    other = f"trial-other-{uuid.uuid4().hex[:8]}"
    try:
        tested = await actors.test_config(1, _trial(actors, store=other))
        assert tested.ok and other in tested.message  # the options, not the configured store
    finally:
        MemoryStore.drop(other)
    failed = await actors.test_config(1, _trial(actors, fail="configuration"))
    assert not failed.ok and "misconfigured" in failed.message
    assert actors._opened == {}  # the configured connection was not opened for it
    # the test is bounded by the connection's timeout (0.3 s here)
    slow = await actors.test_config(1, _trial(actors, latency_ms="60000"))
    assert slow == sdk.TestConnectionResult(False, "ERP one: not connected within 0.3s")


class _Recording(MemoryConnector):
    """A memory connector whose open raises with a secret in its text, or records closes."""

    closed: list[str] = []

    async def open(self) -> None:
        if self.config.seed == 13:
            raise RuntimeError(f"cannot use {SECRET}")

    async def aclose(self) -> None:
        type(self).closed.append(self.config.store)


async def test_an_unexpected_error_is_named_by_type_and_the_connector_closed(
    desk: tuple[ActorDesk, dict[int, MemoryStore]], monkeypatch: pytest.MonkeyPatch
) -> None:
    actors, stores = desk
    monkeypatch.setattr(desk_module, "build_connector", _build(_Recording))
    _Recording.closed.clear()
    failed = await actors.test_config(1, _trial(actors, seed="13"))
    assert failed == sdk.TestConnectionResult(
        False, "ERP one: could not be opened or tested (RuntimeError)"
    )
    assert await actors.test_config(1, _trial(actors))
    assert _Recording.closed == [stores[1].name, stores[1].name]  # closed after each


def _build(cls: type[MemoryConnector]) -> Any:
    def build(conn: ConnectionSettings, database_url: str, logger: Any = None) -> Any:
        config = MemoryConfig.model_validate(conn.settings)
        return cls(config, sdk.ConnectorContext(conn.id, conn.name, logger))

    return build


async def test_at_most_trials_run_at_once_and_a_wait_is_bounded(
    desk: tuple[ActorDesk, dict[int, MemoryStore]],
) -> None:
    actors, _ = desk
    for _ in range(desk_module.TRIALS):  # that many trials running
        await actors._trials.acquire()
    with pytest.raises(sdk.TransientError, match="2 connection tests are already running"):
        await actors.test_config(1, _trial(actors))  # waited its timeout (0.3 s) for a slot
    actors._trials.release()
    assert (await actors.test_config(1, _trial(actors))).ok


def test_the_openapi_document_has_both_endpoints() -> None:
    doc = document()
    for name in ("TryConnectActor", "TestConnectionByConfig"):
        operation = doc["paths"][f"/api/v1/Agents/ErpSync/{name}"]["post"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "type": "boolean"
        }
