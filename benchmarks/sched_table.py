"""Per accepted request, by process group: CPU, context switches, waits (front-door runs).

    python -m benchmarks.sched_table [RESULTS_JSONL] [--line N]

Reads one ``front_door`` line of ``benchmarks/results/results.jsonl`` (default: the last one)
and prints, for every target (the front door, the ceiling handler, the reference, each
variant), the medians over its runs of what :func:`benchmarks.measure.sched_counts` recorded:
``srv`` the server process(es) µs of CPU (``sys`` of it in the kernel, ``inv`` involuntary
switches), ``rmq`` RabbitMQ's µs and ``rmqv`` its voluntary switches (sleeps: each one a
wake-up later), ``pg``/``pgv`` the same for this scenario's PostgreSQL backends (and WAL writer),
``lr`` the log reader of the ``log_pipe`` experiment, ``mach`` all of these plus wrk and the
kernel threads (not ``other``: other people's work), ``sw`` the machine's context switches, and
``other``. Then each target's per-round ratios to the front door's (server / machine), since
the rounds are interleaved and a round's neighbours share the machine's state.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import orjson

from benchmarks.reporting import ROOT

OWN = ("rabbitmq", "pg_backend", "pg_walwriter", "wrk", "kernel", "log_reader")
COLUMNS = ("rps", "p99", "srv", "sys", "inv", "rmq", "rmqv", "pg", "pgv", "lr", "mach", "sw")


def rows(line: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for run in line["runs"]:
        per = run.get("sched_per_request")
        if not per:
            continue
        name = run["target"]
        server = per.get(name.removesuffix("-open-loop").replace(",", "+").replace(":", "-"), {})
        rate = run.get("accepted_per_s", run.get("achieved_rate", 0.0))
        p99 = run["p99_us"] / 1000 if "p99_us" in run else run.get("p99_ms", 0.0)

        def get(group: str, key: str, per: dict[str, Any] = per) -> float:
            return float(per.get(group, {}).get(key, 0.0))

        out.setdefault(name, []).append(
            {
                "rps": rate,
                "p99": p99,
                "srv": server.get("cpu_us", 0.0),
                "sys": server.get("sys_us", 0.0),
                "inv": server.get("involuntary", 0.0),
                "rmq": get("rabbitmq", "cpu_us"),
                "rmqv": get("rabbitmq", "voluntary"),
                "pg": get("pg_backend", "cpu_us") + get("pg_walwriter", "cpu_us"),
                "pgv": get("pg_backend", "voluntary"),
                "lr": get("log_reader", "cpu_us"),
                "mach": server.get("cpu_us", 0.0) + sum(get(g, "cpu_us") for g in OWN),
                "sw": get("machine", "voluntary"),
                "other": get("other", "cpu_us"),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="?", type=Path, default=ROOT / "benchmarks/results/results.jsonl"
    )
    parser.add_argument("--line", type=int, default=-1, help="which line (default: the last)")
    args = parser.parse_args()
    line = orjson.loads(args.results.read_bytes().splitlines()[args.line])
    machine = line.get("machine", {})
    print(
        f"{line.get('time')} commit {machine.get('git_commit')} load average "
        f"{machine.get('load_avg_start')} -> {machine.get('load_avg_end')}"
    )
    table = rows(line)
    print(f"{'target':24s}" + "".join(f"{c:>7s}" for c in (*COLUMNS, "other")))
    for name, runs in table.items():
        medians = [statistics.median(r[c] for r in runs) for c in (*COLUMNS, "other")]
        print(f"{name:24s}" + "".join(f"{m:7.1f}" if m < 100 else f"{m:7.0f}" for m in medians))
    front = table.get("api", [])
    print("per round, server / machine CPU per request relative to the front door's:")
    for name, runs in table.items():
        if name == "api" or name.endswith("-open-loop"):
            continue
        pairs = zip(runs, front, strict=False)
        print(
            f"  {name:22s} "
            + "  ".join(f"{r['srv'] / a['srv']:.2f}/{r['mach'] / a['mach']:.2f}" for r, a in pairs)
        )


if __name__ == "__main__":
    main()
