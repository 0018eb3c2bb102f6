"""``erpsync connectors list`` and ``erpsync connectors check``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.testing.fake_erp import Auth, FakeErp, Fault
from tests.support.cli import run_cli
from tests.support.rest import TOKEN, rest_settings


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run(*args: str, path: Path | None = None) -> Result:
    """Run ``python -m engine ARGS`` as a real process (``path`` prepended to PYTHONPATH)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return Result(*await run_cli(*args, env=env))


def toml_value(value: Any) -> str:
    """Enough TOML for the settings dicts used here (inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_config(path: Path, erp_settings: dict[str, Any], fields: dict[str, str]) -> Path:
    """``fields``: ERP field -> ``"crm_field [direction]"`` (default both)."""
    specs = {k: [*v.split(), "both"][:2] for k, v in fields.items()}
    mapped = "\n".join(
        f'fields.{k} = {{ crm = "{crm}", direction = "{d}" }}' for k, (crm, d) in specs.items()
    )
    path.write_text(
        f"""
[crm]
id = 0
name = "CRM"
connector = "memory"
settings = {toml_value({"store": "cli-crm", "actor_types": {"Contact": ["name", "email"]}})}

[[connections]]
id = 1
name = "Shop ERP"
connector = "rest"
timeout = 5
settings = {toml_value(erp_settings)}

[[connections.actor_types]]
erp = "Customer"
crm = "Contact"
{mapped}
"""
    )
    return path


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp(auth=Auth("bearer", TOKEN)) as server:
        yield server


async def test_list_shows_name_distribution_version_and_capabilities() -> None:
    result = await run("connectors", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "CAPABILITIES"]
    rest = next(line for line in lines if line.startswith("rest "))
    assert rest.split()[:3] == ["rest", "erpsync", "0.1.0"]
    assert "changed_since, create" in rest


async def test_list_json_reports_broken_packages_without_failing(third_party: Path) -> None:
    result = await run("connectors", "list", "--json", path=third_party)
    assert result.exit_code == 0
    rows = {(row["name"], row["distribution"]): row for row in json.loads(result.stdout)}
    assert rows[("rest", "erpsync")]["capabilities"] == ["changed_since", "create"]
    assert rows[("rest", "erpsync")]["version"] == "0.1.0"
    assert "several distributions" in rows[("memory", "broken-connectors")]["error"]
    assert rows[("thirdparty", "good-connector")]["error"] is None
    assert rows[("raises", "broken-connectors")]["error"].startswith("connector 'raises'")
    table = await run("connectors", "list", path=third_party)
    assert "BROKEN: connector 'exits'" in table.stdout


async def test_check_validates_tests_and_describes_a_connection(
    erp: FakeErp, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml",
        rest_settings(erp),
        {"name": "name to_erp", "email": "email both", "active": "name none"},
    )
    result = await run("connectors", "check", "1", "--config", str(config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "connection 1 (Shop ERP): connector 'rest', settings valid" in out
    assert "test connection: ok" in out
    assert "actor types: Customer, Person" in out
    assert "Customer (mapped to CRM Contact):" in out
    assert "credit_limit" in out and "Integer" in out
    assert "<- CRM name (to_erp)" in out  # the direction of each field, not always <->
    assert "<-> CRM email (both)" in out
    assert "-- not synced: CRM name (none)" in out
    assert out.rstrip().endswith("connection 1 (Shop ERP): ok")
    assert TOKEN not in result.output


async def test_check_fails_with_one_line_when_the_erp_refuses(erp: FakeErp, tmp_path: Path) -> None:
    wrong = rest_settings(erp, {"type": "bearer", "token": "wrong-token"})
    config = write_config(tmp_path / "c.toml", wrong, {"name": "name"})
    result = await run("connectors", "check", "1", "--config", str(config))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "erpsync: connection 1 (Shop ERP): test connection failed: "
        "configuration: get Customer: HTTP 401: unauthorized (check the credentials in 'auth')"
    ]
    assert "Traceback" not in result.output
    assert "wrong-token" not in result.output


async def test_check_reports_mapped_fields_the_connector_does_not_know(
    erp: FakeErp, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", rest_settings(erp), {"nickname": "name"})
    result = await run("connectors", "check", "1", "--config", str(config))
    assert result.exit_code == 1
    assert "field Customer.nickname is mapped but unknown to the connector" in result.stderr


async def test_check_reports_an_unavailable_erp(erp: FakeErp, tmp_path: Path) -> None:
    erp.add_fault(Fault(status=503, times=5))
    config = write_config(tmp_path / "c.toml", rest_settings(erp), {"name": "name"})
    result = await run("connectors", "check", "1", "--config", str(config))
    assert result.exit_code == 1
    assert "transient: get Customer: HTTP 503" in result.stderr


async def test_check_rejects_invalid_settings_and_unknown_connections(tmp_path: Path) -> None:
    bad = {"base_url": "ftp://nowhere", "actor_types": {}}
    config = write_config(tmp_path / "c.toml", bad, {})
    result = await run("connectors", "check", "1", "--config", str(config))
    assert result.exit_code == 2
    assert "connections[0].settings.base_url" in result.stderr
    good = write_config(
        tmp_path / "g.toml", {"base_url": "http://127.0.0.1:1", "actor_types": {}}, {}
    )
    result = await run("connectors", "check", "9", "--config", str(good))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"erpsync: no connection 9 in {good} (ids: 0, 1)"
