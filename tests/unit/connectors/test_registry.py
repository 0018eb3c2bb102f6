"""Discovery through entry points and "module:Class" references; broken packages are contained."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connectors import BaseConnector, Capability, ConnectorLoadError, available, discover, load
from connectors.memory import MemoryConnector
from connectors.postgres import PostgresConnector
from connectors.rest import RestConnector
from engine.settings import ConfigError, load_settings


def test_builtins_are_registered_and_load_by_name() -> None:
    names = {info.name: info for info in available()}
    assert {"memory", "postgres", "rest"} <= set(names)
    assert names["rest"].reference == "connectors.rest:RestConnector"
    assert names["rest"].distribution == "erpsync"
    assert load("memory") is MemoryConnector
    assert load("postgres") is PostgresConnector
    assert load("rest") is RestConnector


def test_module_class_references_load_without_an_entry_point() -> None:
    assert load("connectors.rest:RestConnector") is RestConnector
    assert load(" connectors.memory:MemoryConnector ") is MemoryConnector


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("connectors.rest:", "not a valid reference"),
        ("connectors rest:RestConnector", "not a valid reference"),
        ("connectors.rest:Rest-Connector", "not a valid reference"),
        ("no_such_module_xyz:Thing", "cannot import 'no_such_module_xyz'"),
        ("connectors.rest:NoSuchClass", "has no 'NoSuchClass'"),
        ("connectors.rest:RestConfig", "lacks connector methods"),
        ("connectors.contract:BaseConnector", "does not implement"),
        ("connectors.model:FieldType.Text", "is not a class"),
        ("nosuchconnector", "no connector named 'nosuchconnector' (installed: "),
    ],
)
def test_bad_references_fail_with_one_clear_line(reference: str, problem: str) -> None:
    with pytest.raises(ConnectorLoadError) as error:
        load(reference)
    assert problem in str(error.value)
    assert "\n" not in str(error.value)


class SyncSave(MemoryConnector):
    def save_actors(self, request: object) -> object:  # type: ignore[override]
        return None


class NoConfig(BaseConnector):  # type: ignore[type-arg]
    async def supported_actor_types(self, request: object) -> object:  # type: ignore[override]
        return None

    fields = get_actors = save_actors = supported_actor_types  # type: ignore[assignment]


def test_validation_rejects_sync_methods_and_missing_config_models() -> None:
    with pytest.raises(ConnectorLoadError, match="must be async: save_actors"):
        load(f"{__name__}:SyncSave")
    with pytest.raises(ConnectorLoadError, match="no pydantic 'config_model'"):
        load(f"{__name__}:NoConfig")


def test_broken_third_party_packages_are_reported_and_skipped(
    third_party: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "erpsync.connectors")
    found = {(info.name, info.distribution): info for info in discover()}

    good = found[("thirdparty", "good-connector")]
    assert good.ok
    assert good.version == "1.2.3"
    assert Capability.create in good.capabilities
    errors = {name: info.error for (name, dist), info in found.items() if not info.ok}
    assert "RuntimeError: the vendor SDK is missing" in (errors["raises"] or "")
    assert "second line" not in (errors["raises"] or "")
    assert "SystemExit: 3" in (errors["exits"] or "")
    assert "is not a class" in (errors["notaclass"] or "")
    assert "lacks connector methods" in (errors["incomplete"] or "")
    assert "several distributions (broken-connectors, erpsync)" in (errors["memory"] or "")
    for name in ("raises", "exits", "notaclass", "incomplete"):
        assert any(f"'{name}' from broken-connectors" in r.getMessage() for r in caplog.records)
    # Lazy loading by name: the good ones still load while the broken ones are installed.
    assert load("thirdparty").__name__ == "ThirdParty"
    assert load("rest") is RestConnector
    with pytest.raises(ConnectorLoadError, match=r"'raises' .* failed to load: RuntimeError"):
        load("raises")


def test_the_service_configuration_is_unaffected_by_unused_broken_packages(
    third_party: Path, tmp_path: Path
) -> None:
    config = tmp_path / "erpsync.toml"
    config.write_text(
        '[crm]\nid = 0\nname = "CRM"\nconnector = "thirdparty"\n'
        '[crm.settings]\nstore = "s"\nactor_types = { Contact = ["name"] }\n'
    )
    assert load_settings(config, env={}).crm.connector == "thirdparty"
    config.write_text(config.read_text().replace('"thirdparty"', '"exits"'))
    with pytest.raises(ConfigError, match=r"crm\.connector: connector 'exits' .*SystemExit"):
        load_settings(config, env={})
