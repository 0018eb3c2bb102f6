"""Every code block of docs/connectors.md runs.

Blocks tagged ``file=NAME`` are written to a scratch project in order; then the tutorial's
tests (the conformance kit) run there with pytest, ``snippets.py`` runs, the TOML files are
validated by the models that read them, the tutorial package is "installed" from its
``pyproject.toml`` metadata, and every ``erpsync`` command line shown is run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.rest import RestConfig
from engine.settings import ConnectionSettings
from tests.support.distributions import make_distribution

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    lang: str
    file: str | None
    text: str


def blocks() -> list[Block]:
    found = []
    for lang, info, text in FENCE.findall(DOC.read_text(encoding="utf-8")):
        match = re.search(r"file=(\S+)", info)
        found.append(Block(lang, match.group(1) if match else None, text))
    return found


async def run(*args: str, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(100):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scratch project assembled from the doc's file blocks."""
    root = tmp_path_factory.mktemp("docs")
    for block in blocks():
        if block.file is None:
            continue
        path = root / block.file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(block.text + "\n\n")
    (root / "acme_erp" / "__init__.py").touch()
    # What `pip install -e .` records: the distribution and its entry points.
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    make_distribution(
        root, meta["name"], meta["version"], meta["entry-points"]["erpsync.connectors"]
    )
    return root


def test_every_code_block_is_exercised() -> None:
    found = blocks()
    assert len(found) >= 10
    for block in found:
        if block.lang in ("python", "toml"):
            assert block.file, f"a {block.lang} block has no file=: {block.text[:80]!r}"
        else:
            assert block.lang in ("bash", "text"), block.lang
    names = {b.file for b in found}
    assert {"acme_erp/connector.py", "tests/test_acme.py", "snippets.py"} <= names


async def test_the_tutorial_connector_passes_the_conformance_kit(project: Path) -> None:
    code, output = await run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project
    )
    assert code == 0, output
    assert "14 passed" in output, output


async def test_the_reference_snippets_run(project: Path) -> None:
    code, output = await run(sys.executable, "snippets.py", cwd=project)
    assert code == 0, output


async def test_the_tutorial_configuration_is_valid(project: Path) -> None:
    code, output = await run(
        sys.executable, "-m", "engine", "check-config", "--config", "erpsync.toml", cwd=project
    )
    assert code == 0, output
    assert "ok (1 ERP connections" in output


def test_the_rest_example_is_valid(project: Path) -> None:
    data = tomllib.loads((project / "rest.toml").read_text())
    (connection,) = data["connections"]
    ConnectionSettings.model_validate(connection)
    config = RestConfig.model_validate(connection["settings"])
    assert config.actor_types["Customer"].fields["credit_limit"].type == "Integer"


async def test_every_erpsync_command_shown_exists(project: Path) -> None:
    commands = [
        shlex.split(line.split("#")[0])
        for block in blocks()
        if block.lang == "bash"
        for line in block.text.splitlines()
        if line.startswith("erpsync ")
    ]
    assert len(commands) >= 5
    for argv in commands:
        if argv[1:] in (["connectors", "list"], ["connectors", "list", "--json"]):
            code, output = await run(sys.executable, "-m", "engine", *argv[1:], cwd=project)
            assert code == 0, output
            assert "acme" in output and "acme-erpsync" in output, output
        else:  # needs a configured, reachable system: check the command line parses
            code, output = await run(
                sys.executable, "-m", "engine", *argv[1:], "--help", cwd=project
            )
            assert code == 0, output


def test_the_shell_steps_match_the_package(project: Path) -> None:
    lines = [
        line.split("#")[0].strip()
        for block in blocks()
        if block.lang == "bash"
        for line in block.text.splitlines()
        if not line.startswith("erpsync ")
    ]
    assert set(filter(None, lines)) == {"pip install -e '.[test]'", "pytest", "pip install -e ."}
    project_meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert "test" in project_meta["optional-dependencies"]
    assert (project / "tests" / "test_acme.py").exists()  # what `pytest` runs, above
