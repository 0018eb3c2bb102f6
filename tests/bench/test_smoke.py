"""Every benchmark script runs in smoke mode and appends one well-formed JSON line.

No timing assertions: the figures of a smoke run mean nothing; this only keeps the scripts working
(child processes, databases, broker objects, load tools, parsing, reporting).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "engine_overhead",
    "front_door",
    "fanout",
    "scaleout",
    "huge",
    "fairness",
    "e2e",
    "force_resync",
    "continuous",
    "publish_latency",
    "tryton",
    "superoffice",
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_appends_a_result_line(script: str, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "BENCH_SMOKE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{script}", "--results", str(results)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=170)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert_cleaned_up(proc.pid)
    lines = results.read_bytes().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["scenario"] == script
    assert line["smoke"] is True
    assert line["verdict"] == "smoke"
    assert line["figures"]
    for figure in line["figures"].values():
        assert figure["runs"], figure
        assert figure["min"] <= figure["median"] <= figure["max"]
    assert line["checks"]
    assert {"cores", "load_avg_start", "load_avg_end", "versions", "git_commit"} <= set(
        line["machine"]
    )


def assert_cleaned_up(pid: int) -> None:
    """No database or queue of that benchmark process is left behind."""
    tag = f"_{pid}_"
    databases = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SELECT datname FROM pg_database"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [d for d in databases if d.startswith("erpsync_bench_") and tag in d]
    queues = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not [q for q in queues if q.startswith("erpsync-bench-") and f"-{pid}-" in q]
