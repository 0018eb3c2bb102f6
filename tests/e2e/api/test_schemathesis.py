"""The served ``/openapi.json`` against the running front door, checked by a fuzzer nobody here
wrote: schemathesis (every check, Basic auth, positive and negative data).

It must report no server error, no schema-valid request rejected, no undocumented status
code, content type or header, no response outside its schema: the document states every
constraint the server enforces. Requests outside the document that the lenient binding
accepts are tolerated (see below).
Bounded: ``SCHEMATHESIS_EXAMPLES`` cases per operation (default 60, as in issue 20): about 60 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from tests.support.api import api_settings
from tests.support.service import Service

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "60"))
# A fixed seed keeps `make test` reproducible (CI cannot fail on a case no run before it made);
# SCHEMATHESIS_SEED=random explores new cases, as before any release.
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261206")
TIME_LIMIT = 240.0
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
async def fuzzed_door(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore], rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[Service]:
    """The API alone, with the failed-login throttle set so high that the fuzzer's wrong
    credentials do not turn every later request into a 429 (the 429 itself is documented)."""
    settings = api_settings(database, broker_prefix, stores, rsa_key)
    throttle = settings.auth.login_throttle.model_copy(
        update={"client_failures": 1_000_000, "user_failures": 0}
    )
    auth = settings.auth.model_copy(update={"login_throttle": throttle})
    # No workers: a synchronous ForceResync* answers its ResyncTimeout after this long.
    server = settings.server.model_copy(update={"sync_timeout": 0.05})
    fuzzed = settings.model_copy(update={"auth": auth, "server": server})
    async with Service(fuzzed, engine=False) as service:
        yield service


# pytest-timeout's default (120 s) is below the run's own limit: under load, with the engine
# endpoints of issue 18 added, the bounded run can take longer than that.
@pytest.mark.timeout(TIME_LIMIT + 60)
async def test_schemathesis_finds_nothing_in_the_served_document(
    fuzzed_door: Service, tmp_path: Path
) -> None:
    url = str(fuzzed_door.server.make_url("/openapi.json"))
    report_path = tmp_path / "report.json"
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")),
        f"--config-file={CONFIG}",
        "run",
        url,
        "--checks=all",
        "--auth=tje0:Tje0",
        "--mode=all",
        f"--max-examples={EXAMPLES}",
        "--workers=1",
        "--generation-database=none",
        *([] if SEED == "random" else [f"--seed={SEED}"]),
        "--request-timeout=10",
        "--no-color",
        "--output-truncate=false",
        "--report=json",
        f"--report-json-path={report_path}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIME_LIMIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["test_cases"]["generated"] > 0, text
    assert report["errors"] == [], text
    failures = {failure["code"]: failure["title"] for failure in report["failures"]}
    # Binding is lenient on purpose, like .NET model binding and SuperOffice: numeric strings,
    # any XML root, unknown properties ignored. So some requests outside the document are
    # accepted (ST201 "schema-violating request accepted"); every other check must pass.
    failures.pop("ST201", None)
    assert failures == {}, text
