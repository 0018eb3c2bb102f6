"""Two open-loop clients, interleaved against one front door: CPU use and the tail they report.

    git show 6264ca5:benchmarks/openloop.py > /tmp/old_openloop.py   # the earlier aiohttp client
    python -m benchmarks.compare_clients /tmp/old_openloop.py --rates 300 600

Prints one JSON line per client run (achieved rate, p50/p99, the client's own CPU in cores, its
send lag). Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

from benchmarks.config import AUTH_HEADER, RESYNC_PATH
from benchmarks.front_door import bench_json, purge_commands, warm_up
from benchmarks.reporting import ROOT
from benchmarks.scenario import Bench


async def compare(old: str, rates: list[float], repeats: int, duration: float) -> None:
    async with Bench("clients") as bench:
        api = await bench.start("api", bench.settings(log_level="warning"), "api")
        url = f"http://127.0.0.1:{api.port}{RESYNC_PATH}"
        drain = asyncio.create_task(purge_commands(bench.prefix))
        await warm_up(url)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        clients = [
            ("old", [sys.executable, old]),
            ("new", [sys.executable, "-m", "benchmarks.openloop"]),
        ]
        for rate in rates:
            for _ in range(repeats):
                for name, cmd in clients:
                    args = [url, "--rate", str(rate), "--duration", str(duration)]
                    data = await bench_json([*cmd, *args, "--auth", AUTH_HEADER], env)
                    keys = ("achieved_rate", "p50_ms", "p99_ms", "client_cpu_share")
                    line = {"client": name, "rate": rate, "load": os.getloadavg()[0]}
                    line |= {k: data[k] for k in (*keys, "client_lag_p99_ms", "dropped")}
                    print(orjson.dumps(line).decode(), flush=True)
        drain.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("old", help="path of the other client script")
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 600.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    asyncio.run(compare(args.old, args.rates, args.repeats, args.duration))


if __name__ == "__main__":
    main()
