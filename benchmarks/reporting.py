"""What a benchmark script reports: its command line, figures over repeated runs, targets met or
missed, and the JSON line appended to ``benchmarks/results/results.jsonl`` together with the
machine's conditions (cores, load, versions, git commit)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", ROOT / "benchmarks" / "results"))


def arguments(
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    default_repeats: int = 3,
) -> argparse.Namespace:
    """Common options: --smoke, --repeats, --results, --profile DIR."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get("BENCH_SMOKE") == "1",
        help="tiny sizes, one run: checks the script works (also BENCH_SMOKE=1)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"runs per figure (default {default_repeats})"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(os.environ.get("BENCH_RESULTS", RESULTS_DIR / "results.jsonl")),
        help="JSON lines file to append to",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="record py-spy profiles into this directory"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.smoke else default_repeats
    return args


def target_options(
    parser: argparse.ArgumentParser, records_help: str, concurrency_help: str
) -> None:
    """Options of the scenarios whose synthetic targets answer after a fixed latency."""
    parser.add_argument("--records", type=int, default=None, help=records_help)
    parser.add_argument("--latency-ms", type=float, default=None, help="default 100")
    parser.add_argument("--concurrency", type=int, default=10, help=concurrency_help)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=100)


@dataclass
class Figure:
    """One measured quantity over repeated runs."""

    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    higher_is_better: bool = True

    def add(self, value: float) -> None:
        self.runs.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "runs": [round(v, 3) for v in self.runs],
            "min": round(min(self.runs), 3) if self.runs else None,
            "median": round(self.median, 3) if self.runs else None,
            "max": round(max(self.runs), 3) if self.runs else None,
        }


@dataclass
class Check:
    """A target and whether the measured median meets it."""

    name: str
    target: str
    measured: str
    ok: bool


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


class Report:
    """Collects figures and checks of one scenario, prints them and appends the JSON line."""

    def __init__(self, scenario: str, args: argparse.Namespace, params: dict[str, Any]) -> None:
        self.scenario = scenario
        self.args = args
        self.params = params
        self.figures: dict[str, Figure] = {}
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self.started = time.time()
        self.load_start = os.getloadavg()
        print(f"== {scenario} ({'smoke' if args.smoke else f'{args.repeats} runs'})", flush=True)
        print("   parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)

    def figure(self, name: str, unit: str, *, higher_is_better: bool = True) -> Figure:
        if name not in self.figures:
            self.figures[name] = Figure(name, unit, higher_is_better=higher_is_better)
        return self.figures[name]

    def check(self, name: str, target: str, measured: float | str, ok: bool) -> None:
        shown = measured if isinstance(measured, str) else fmt(measured)
        self.checks.append(Check(name, target, shown, ok))

    def finish(self) -> dict[str, Any]:
        load_end = os.getloadavg()
        width = max([len(f.name) for f in self.figures.values()] + [6])
        print(f"   {'figure':<{width}}  {'min':>10} {'median':>10} {'max':>10}  unit")
        for f in self.figures.values():
            lo, mid, hi = (min(f.runs), f.median, max(f.runs)) if f.runs else (float("nan"),) * 3
            print(f"   {f.name:<{width}}  {fmt(lo):>10} {fmt(mid):>10} {fmt(hi):>10}  {f.unit}")
        for c in self.checks:
            verdict = "n/a (smoke)" if self.args.smoke else ("PASS" if c.ok else "MISS")
            print(f"   [{verdict}] {c.name}: {c.measured} (target {c.target})")
        for note in self.notes:
            print(f"   note: {note}")
        print(
            "   load average at start/end: "
            f"{self.load_start[0]:.2f} / {load_end[0]:.2f} on {os.cpu_count()} cores",
            flush=True,
        )
        line = {
            "scenario": self.scenario,
            "time": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - self.started, 1),
            "smoke": bool(self.args.smoke),
            "repeats": self.args.repeats,
            "params": self.params,
            "figures": {name: f.as_json() for name, f in self.figures.items()},
            "checks": [
                {"name": c.name, "target": c.target, "measured": c.measured, "ok": c.ok}
                for c in self.checks
            ],
            "verdict": (
                "smoke"
                if self.args.smoke
                else ("pass" if all(c.ok for c in self.checks) else "miss")
            ),
            "notes": self.notes,
            **self.extra,
            "machine": machine_info(self.load_start, load_end),
        }
        self.args.results.parent.mkdir(parents=True, exist_ok=True)
        with self.args.results.open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")
        return line


_MACHINE_CACHE: dict[str, Any] = {}


def machine_info(load_start: Sequence[float], load_end: Sequence[float]) -> dict[str, Any]:
    """Cores, load, versions and the git commit the figures belong to."""
    if not _MACHINE_CACHE:
        versions: dict[str, str | None] = {"python": platform.python_version()}
        for dist in ("aiohttp", "aio-pika", "aiormq", "asyncpg", "pydantic", "structlog"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(dist)
        versions["wrk"] = _command_output(["wrk", "--version"]).split(" [")[0] or None
        psql = _command_output(["psql", "--version"]).split()  # psql (PostgreSQL) 15.20 (Debian…
        versions["psql_client"] = psql[2] if len(psql) > 2 else None
        versions["rabbitmq"] = _command_output(["rabbitmqctl", "version"]) or None
        commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
        dirty = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "engine"])
        _MACHINE_CACHE.update(
            {
                "host": socket.gethostname(),
                "cores": os.cpu_count(),
                "cpu": _cpu_model(),
                "kernel": platform.release(),
                "versions": versions,
                "git_commit": commit + ("-dirty" if dirty else ""),
            }
        )
    return {
        **_MACHINE_CACHE,
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in load_end],
    }


def _command_output(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
