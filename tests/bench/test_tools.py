"""The diagnostic benchmark tools run (tiny sizes) and print their figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ADMIN_DATABASE_URL

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.timeout(150)
def test_front_door_python_measures_both_handlers() -> None:
    out = _run("benchmarks.front_door_python", "--requests", "128", "--rounds", "1")
    assert "front door " in out and "ceiling handler " in out and "us per request" in out


@pytest.mark.timeout(150)
def test_task_insert_measures_every_statement() -> None:
    out = _run(
        "benchmarks.task_insert",
        "--url",
        ADMIN_DATABASE_URL,
        "--rounds",
        "1",
        "--batches",
        "3",
        "--rows",
        "2",
    )
    assert out.count(" median ") == 3, out
