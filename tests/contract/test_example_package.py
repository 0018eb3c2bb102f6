"""The example third-party package: installed, discovered by its entry point, conformant.

``make install`` installs ``examples/tinyledger`` next to erpsync (editable); these tests fail,
never skip, when it is missing.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from connectors import Capability, discover, load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tinyledger"


def test_the_example_is_installed_and_found_by_its_entry_point() -> None:
    found = {info.name: info for info in discover()}
    assert "tinyledger" in found, "examples/tinyledger is not installed: run `make install`"
    info = found["tinyledger"]
    assert (info.distribution, info.version, info.error) == ("erpsync-tinyledger", "0.1.0", None)
    assert info.reference == "erpsync_tinyledger:TinyLedgerConnector"
    assert info.capabilities == {Capability.create}
    cls = load("tinyledger")
    assert cls.__module__ == "erpsync_tinyledger"
    assert Path(sys.modules[cls.__module__].__file__ or "").is_relative_to(EXAMPLE)


async def test_the_examples_own_tests_run_the_conformance_kit() -> None:
    """Run the package's tests as its author would: pytest in its folder, the kit marker on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "connector_contract",  # registered by the erpsync_connectors plugin (pytest11)
        cwd=EXAMPLE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(110):
        out, _ = await proc.communicate()
    output = out.decode()
    assert proc.returncode == 0, output
    assert "14 passed" in output, output
