"""Configuration loading: validation messages name the file and key; env overrides win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

import connectors as sdk
from engine.settings import ConfigError, Direction, load_settings, redact_url

DEMO = Path("config/erpsync.toml")


def test_demo_config_is_valid_and_uses_several_directions() -> None:
    settings = load_settings(DEMO, env={})
    directions = {
        m.direction for c in settings.connections for a in c.actor_types for m in a.fields.values()
    }
    assert directions == set(Direction)
    assert [c.id for c in settings.all_connections] == [0, 1, 2]
    assert settings.auth.users[0].name == "tje0"


def test_environment_overrides_urls_and_connection_secrets() -> None:
    settings = load_settings(
        DEMO,
        env={
            "ERPSYNC_DATABASE_URL": "postgresql://u:secret@db:5432/x",
            "ERPSYNC_BROKER_URL": "amqp://u:p@mq:5672/",
            "ERPSYNC_SERVER_PORT": "9090",
            "ERPSYNC_ENGINE__CHUNK_SIZE": "50",
            "ERPSYNC_CONNECTION_1__DSN": "postgresql://erp@elsewhere/erp",
        },
    )
    assert settings.database.url.get_secret_value() == "postgresql://u:secret@db:5432/x"
    assert "secret" not in repr(settings.database)
    assert settings.broker.url.get_secret_value() == "amqp://u:p@mq:5672/"
    assert settings.server.port == 9090
    assert settings.engine.chunk_size == 50
    assert settings.connections[0].settings["dsn"] == "postgresql://erp@elsewhere/erp"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(DEMO.read_text() + text)
    return path


def test_bad_direction_names_file_and_key(tmp_path: Path) -> None:
    text = DEMO.read_text().replace('direction = "to_crm" }', 'direction = "sideways" }', 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert str(path) in message
    assert "connections[0].actor_types[0].fields.city.direction" in message


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(DEMO, env={"ERPSYNC_SERVER_PORT": "eighty"})
    assert "server.port (from ERPSYNC_SERVER_PORT)" in str(err.value)


def test_unknown_key_and_connector_setting_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(DEMO, env={"ERPSYNC_SERVER__PROT": "1"})
    text = DEMO.read_text().replace('schema = "demo_erp1"', 'schema = "demo erp1"')
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"connections\[0\]\.settings\.schema"):
        load_settings(path, env={})


def test_unknown_connector_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(DEMO.read_text().replace('connector = "postgres"', 'connector = "nope"', 1))
    with pytest.raises(ConfigError, match=r"crm\.connector: no connector named 'nope'"):
        load_settings(path, env={})


def test_duplicate_connection_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(DEMO.read_text().replace("id = 2", "id = 1"))
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(path, env={})


def test_cli_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}: server.port" in result.stderr
    assert f"{path}: crm: Field required" in result.stderr


def test_redact_url_hides_passwords() -> None:
    assert redact_url("amqp://guest:guest@h:5672/") == "amqp://guest:***@h:5672/"
    assert redact_url("postgresql://postgres@h/db") == "postgresql://postgres@h/db"


def test_idle_in_transaction_timeout_must_outlast_a_publish(tmp_path: Path) -> None:
    assert load_settings(DEMO, env={}).database.idle_in_transaction_timeout == 60.0
    env = {"ERPSYNC_DATABASE__IDLE_IN_TRANSACTION_TIMEOUT": "5"}  # publish_timeout is 5 s
    with pytest.raises(ConfigError, match=r"idle_in_transaction_timeout \(5.0\) must be more"):
        load_settings(DEMO, env=env)
    off = load_settings(DEMO, env={"ERPSYNC_DATABASE__IDLE_IN_TRANSACTION_TIMEOUT": "0"})
    assert off.database.idle_in_transaction_timeout == 0


class _AnyConfig(BaseModel):
    model_config = ConfigDict(extra="allow")


class NoChangesConnector(sdk.BaseConnector[_AnyConfig]):
    """A connector without changed_since (the continuous sync cannot read it)."""

    name = "no-changes"
    config_model = _AnyConfig

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=[])

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        return sdk.FieldsResult(fields=[])

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        return sdk.GetActorsResult(actors=[])

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        return sdk.SaveActorsResult(saved=[])


def test_a_bad_sync_overlap_stops_start_up_naming_file_and_key(tmp_path: Path) -> None:
    erp1 = 'name = "Demo ERP 1"\nconnector = "postgres"\n'
    assert erp1 in DEMO.read_text()
    path = tmp_path / "c.toml"
    path.write_text(DEMO.read_text().replace(erp1, erp1 + "sync_overlap = -5\n"))
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert f"{path}: connections[0].sync_overlap: Input should be greater than or equal to 0" in (
        str(err.value)
    )
    other = f'name = "Demo ERP 1"\nconnector = "{__name__}:NoChangesConnector"\n'
    path.write_text(DEMO.read_text().replace(erp1, other + "sync_overlap = 60\n"))
    with pytest.raises(ConfigError, match=r"c\.toml: connections\[0\]\.sync_overlap: connector"):
        load_settings(path, env={})
    path.write_text(DEMO.read_text().replace(erp1, erp1 + "sync_overlap = 0\n"))
    settings = load_settings(path, env={"ERPSYNC_SYNC__OVERLAP": "60"})
    assert settings.connections[0].sync_overlap == 0 and settings.sync.overlap == 60
