"""docs/configuration.md documents every settings key and matches the models."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from engine.cli.config_reference import configuration_markdown, settings_reference
from engine.settings import (
    ActorTypeMapping,
    AuthSettings,
    BrokerSettings,
    ConnectionSettings,
    DatabaseSettings,
    EngineSettings,
    FieldMapping,
    LoggingSettings,
    ServerSettings,
    Settings,
    User,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_settings_field_has_a_documented_key() -> None:
    keys = {doc.key: doc for doc in settings_reference()}
    expected = set(Settings.model_fields)
    for prefix, model in (
        ("server", ServerSettings),
        ("database", DatabaseSettings),
        ("broker", BrokerSettings),
        ("engine", EngineSettings),
        ("logging", LoggingSettings),
        ("auth", AuthSettings),
        ("auth.users[]", User),
        ("connections[]", ConnectionSettings),
        ("connections[].actor_types[]", ActorTypeMapping),
        ("connections[].actor_types[].fields.<erp field>", FieldMapping),
    ):
        expected |= {f"{prefix}.{name}" for name in model.model_fields}
    sections = {
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    for name in sections - {"crm"}:
        section = Settings.model_fields[name].annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        expected |= {f"{name}.{key}" for key in section.model_fields}
    expected -= sections - {"crm"}  # a section is documented through its keys
    assert expected <= set(keys), sorted(expected - set(keys))
    undocumented = [key for key, doc in keys.items() if not doc.description]
    assert undocumented == []


def test_the_committed_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == configuration_markdown(), (
        "regenerate it: erpsync config-reference > docs/configuration.md"
    )


def test_every_row_of_the_table_has_five_cells() -> None:
    rows = [line for line in configuration_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 50
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]  # an unescaped | ends a cell
        assert len(cells) == 5, row
    assert any("int \\| None" in row for row in rows)
