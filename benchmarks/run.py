"""Run every benchmark scenario in turn (what ``make bench`` does).

    python -m benchmarks.run [--smoke] [--profile DIR] [--only NAME ...]

The engine-overhead scenario runs first because the end-to-end scenario compares itself with its
figure; the huge batch and fairness (two large tasks on two workers) run last because they take
longest. Each script appends its JSON line to the same results file; the exit code is non-zero
when a script failed (not when a target is missed: that is a finding, printed as MISS).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.reporting import RESULTS_DIR, ROOT

ORDER = [
    "engine_overhead",
    "front_door_single",
    "front_door",
    "fanout",
    "scaleout",
    "e2e",
    "force_resync",
    "continuous",
    "tryton",
    "superoffice",
    "huge",
    "fairness",
]
PROFILED = {"engine_overhead", "front_door"}
# Scenarios that run a script with arguments: name -> (module, arguments).
VARIANTS = {"front_door_single": ("front_door", ["--api-processes", "1", "--no-open-loop"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", default=os.environ.get("BENCH_SMOKE") == "1"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy profiles directory")
    parser.add_argument("--only", nargs="*", choices=ORDER, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "results.jsonl")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    failed = []
    start = time.monotonic()
    for name in args.only or ORDER:
        module, extra = VARIANTS.get(name, (name, []))
        cmd = [sys.executable, "-m", f"benchmarks.{module}", *extra, "--results", str(args.results)]
        if args.smoke:
            cmd.append("--smoke")
        if args.profile and name in PROFILED:
            cmd += ["--profile", str(args.profile)]
        t0 = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        print(f"   ({name}: {time.monotonic() - t0:.0f} s, exit {code})\n", flush=True)
        if code:
            failed.append(name)
    print(f"all scenarios: {time.monotonic() - start:.0f} s; results in {args.results}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
