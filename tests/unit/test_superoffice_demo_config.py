"""The SuperOffice demo configuration is valid, and its secrets can come from the environment."""

from __future__ import annotations

from pathlib import Path

from connectors.superoffice import BasicAuth, SuperOfficeConfig
from engine.settings import load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config" / "superoffice.toml"


def test_the_demo_maps_both_erps_onto_superoffice_columns() -> None:
    settings = load_settings(CONFIG, env={})
    assert settings.crm.connector == "superoffice"
    crm = SuperOfficeConfig.model_validate(settings.crm.settings)
    offered: dict[str, set[str]] = {t: set(f or ()) for t, f in crm.actor_types.items()}
    for connection in settings.connections:
        for mapping in connection.actor_types:
            crm_fields = {f.crm for f in mapping.fields.values() if f.crm}
            assert crm_fields <= offered[mapping.crm], (connection.id, mapping.erp)


def test_the_password_can_come_from_the_environment() -> None:
    settings = load_settings(CONFIG, env={"ERPSYNC_CONNECTION_0__AUTH__PASSWORD": "from-env"})
    crm = SuperOfficeConfig.model_validate(settings.crm.settings)
    assert isinstance(crm.auth, BasicAuth)
    assert crm.auth.password.get_secret_value() == "from-env"
