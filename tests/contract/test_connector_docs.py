"""Every code block of docs/connectors.md runs.

Blocks tagged ``file=NAME`` are written to a scratch project in order. The tutorial's shell
steps then run as written in a throwaway virtualenv standing for "erpsync's environment" (it
sees this test environment's packages, erpsync included): pip really installs the package
there, the tutorial's tests (the conformance kit) pass, ``erpsync connectors list`` finds it, and
a resync through the whole service writes to it after the doc's linking step. ``snippets.py``
runs, the TOML files are validated by the models that read them, and every ``erpsync`` command
line shown exists.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import site
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from connectors.memory import MemoryStore
from connectors.rest import RestConfig
from connectors.testing.fake_erp import Auth, FakeErp
from engine.settings import ConnectionSettings
from tests.support.service import Service, link
from tests.support.settings import memory_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
TOKEN = "acme-test-token"  # the tutorial's tests use the same


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


def shell_steps() -> list[str]:
    """The tutorial's shell lines other than ``erpsync`` commands, in order, comments cut."""
    return [
        line.split("#")[0].strip()
        for block in blocks()
        if block.lang == "bash"
        for line in block.text.splitlines()
        if line.strip() and not line.startswith("erpsync ")
    ]


@dataclass(frozen=True)
class Environment:
    """The throwaway virtualenv: its variables and its site-packages."""

    env: dict[str, str]
    site_packages: Path


async def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)} if env is None else env
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
    root = tmp_path_factory.mktemp("docs") / "acme-erpsync"
    for block in blocks():
        if block.file is None:
            continue
        path = root / block.file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(block.text + "\n\n")
    (root / "acme_erp" / "__init__.py").touch()  # "(empty)" in the doc's layout
    return root


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """A new virtualenv that sees this environment's packages (erpsync, pip, hatchling, pytest)
    through a ``.pth`` file, so what pip installs lands in it alone."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / version / "site-packages"
    ours = sysconfig.get_paths()["purelib"]
    # addsitedir, not a bare path: our editable installs are .pth files themselves.
    (site_packages / "erpsync-environment.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_HASHES")}
    env |= {
        "VIRTUAL_ENV": str(venv),  # what `source .venv/bin/activate` sets
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        # Offline: every dependency is already there, and hatchling is built with the locked
        # one of this environment (PIP_NO_BUILD_ISOLATION=0 turns isolation off; pip's naming).
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
    }
    return Environment(env, site_packages)


@pytest.fixture(scope="module")
def installed(project: Path, environment: Environment) -> Path:
    """The project after the doc's ``pip install`` steps, run as written."""
    for step in shell_steps():
        if " pip install " in f" {step} ":
            done = subprocess.run(
                ["bash", "-c", step],
                cwd=project,
                env=environment.env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
    return project


def test_every_code_block_is_exercised() -> None:
    found = blocks()
    assert len(found) >= 10
    for block in found:
        if block.lang in ("python", "toml", "sql"):
            assert block.file, f"a {block.lang} block has no file=: {block.text[:80]!r}"
        else:
            assert block.lang in ("bash", "text"), block.lang
    names = {b.file for b in found}
    assert {"acme_erp/connector.py", "tests/test_acme.py", "snippets.py", "link.sql"} <= names


def test_the_shell_steps_match_the_package(project: Path) -> None:
    assert shell_steps() == [
        "python -m pip install -e '.[test]'",
        "python -m pytest",
        "python -m pip install -e .",
    ]
    project_meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert "test" in project_meta["optional-dependencies"]
    assert (project / "tests" / "test_acme.py").exists()  # what `pytest` runs


async def test_pip_installs_the_package_and_its_tests_pass(
    installed: Path, environment: Environment
) -> None:
    dist_info = list(environment.site_packages.glob("acme_erpsync-1.0.0.dist-info"))
    assert dist_info, "pip did not install acme-erpsync into the environment"
    entry_points = (dist_info[0] / "entry_points.txt").read_text()
    assert "acme = acme_erp.connector:AcmeConnector" in entry_points
    (step,) = (s for s in shell_steps() if "pytest" in s)
    code, output = await run("bash", "-c", step, cwd=installed, env=environment.env)
    assert code == 0, output
    assert "14 passed" in output, output


async def test_the_reference_snippets_run(project: Path) -> None:
    code, output = await run(sys.executable, "snippets.py", cwd=project)
    assert code == 0, output


async def test_the_tutorial_configuration_is_valid(
    installed: Path, environment: Environment
) -> None:
    code, output = await run(
        "python",
        "-m",
        "engine",
        "check-config",
        "--config",
        "erpsync.toml",
        cwd=installed,
        env=environment.env,
    )
    assert code == 0, output
    assert "ok (1 ERP connections" in output


def test_the_rest_example_is_valid(project: Path) -> None:
    data = tomllib.loads((project / "rest.toml").read_text())
    (connection,) = data["connections"]
    ConnectionSettings.model_validate(connection)
    config = RestConfig.model_validate(connection["settings"])
    assert config.actor_types["Customer"].fields["credit_limit"].type == "Integer"


async def test_every_erpsync_command_shown_exists(
    installed: Path, environment: Environment
) -> None:
    commands = [
        shlex.split(line.split("#")[0])
        for block in blocks()
        if block.lang == "bash"
        for line in block.text.splitlines()
        if line.startswith("erpsync ")
    ]
    assert len(commands) >= 6
    for argv in commands:
        # `python -m engine` is the `erpsync` script of the environment's interpreter.
        if argv[1:] in (["connectors", "list"], ["connectors", "list", "--json"]):
            code, output = await run(
                "python", "-m", "engine", *argv[1:], cwd=installed, env=environment.env
            )
            assert code == 0, output
            assert "acme" in output and "acme-erpsync" in output, output
        else:  # needs a configured, reachable system: check the command line parses
            code, output = await run(
                "python", "-m", "engine", *argv[1:], "--help", cwd=installed, env=environment.env
            )
            assert code == 0, output


async def test_a_resync_writes_to_the_installed_connector_after_linking(
    installed: Path,
    environment: Environment,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
) -> None:
    """The tutorial's connection (step 5), linked as step 6 says, in the whole service."""
    # This process finds the connector as erpsync would in that environment: by its entry point.
    monkeypatch.syspath_prepend(str(environment.site_packages))
    site.addsitedir(str(environment.site_packages))  # the editable install's .pth
    doc = tomllib.loads((installed / "erpsync.toml").read_text())
    (acme,) = doc["connections"]
    assert acme["connector"] == "acme" and acme["actor_types"][0]["create_missing"] is True

    stores[0].put("Contact", "c1", {"name": "Ann", "email": "ann@crm"})
    stores[0].put("Contact", "c2", {"name": "Bob", "email": "bob@crm"})
    await link(db, 1001, "Contact", "c1", {})  # CRM records erpsync knows, linked nowhere
    await link(db, 1002, "Contact", "c2", {})
    async with FakeErp(auth=Auth("bearer", TOKEN)) as erp:
        erp.put("customers", {"name": "Ann (old)", "email": "old@acme", "credit_limit": 10}, "42")
        await db.execute((installed / "link.sql").read_text())  # step 6, as written

        base = memory_settings(database, broker_prefix, {c: s.name for c, s in stores.items()})
        crm = {**doc["crm"], "settings": {**doc["crm"]["settings"], "store": stores[0].name}}
        connection = {**acme, "settings": {"url": erp.url, "token": TOKEN}}
        settings = base.model_copy(
            update={
                "crm": ConnectionSettings.model_validate(crm),
                "connections": [ConnectionSettings.model_validate(connection)],
            }
        )
        async with Service(settings) as service:
            info = await service.finished(await service.resync(0, [1001, 1002]))
        customers = list(erp.collections["customers"].records.values())

    assert info["State"] == "Succeeded", info
    assert info["Statistics"]["Updated"] == 1 and info["Statistics"]["Created"] == 1, info
    ann = next(c for c in customers if c["id"] == "42")
    assert (ann["name"], ann["email"], ann["credit_limit"]) == ("Ann", "ann@crm", 10)
    (bob,) = (c for c in customers if c["id"] != "42")
    assert (bob["name"], bob["email"]) == ("Bob", "bob@crm")
    linked = await db.fetchval(
        "SELECT erp_key FROM external_keys WHERE internal_key_id = 1002 AND connection_id = 3"
    )
    assert linked == bob["id"]  # created and linked: the next resync updates it
