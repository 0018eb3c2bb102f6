"""Synchronous ForceResync of 10 keys: latency from the POST to the PluginResponse (issue 17).

One front door and one worker process; 10 CRM contacts linked on 2 synthetic targets (no
latency; each record has a stale field per target, so every call writes). One client sends the
calls one after the other (closed loop): each is a whole task through the broker and the
workers (plan, one chunk, two push units), answered once the task's PostgreSQL notification
arrives. Figures per run: p50, p95, p99 over ``--calls`` calls; target p95 <= 300 ms.

    python -m benchmarks.force_resync [--smoke] [--repeats 3] [--calls 200]
"""

from __future__ import annotations

import argparse
import time

import aiohttp

from benchmarks.config import AUTH_HEADER
from benchmarks.openloop import percentile
from benchmarks.reporting import Report, arguments, fmt
from benchmarks.scenario import Bench, run_main, seed_links

PATH = "/api/v1/Agents/ErpSync/ForceResync"
KEYS = list(range(1, 11))
TARGET_P95_MS = 300.0


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=None, help="calls per run (default 200)")


async def main() -> None:
    args = arguments(__doc__ or "", options)
    calls = args.calls or (10 if args.smoke else 200)
    report = Report(
        "force_resync",
        args,
        {
            "keys_per_call": len(KEYS),
            "calls_per_run": calls,
            "targets": 2,
            "latency_ms": 0,
            "client": "one, closed loop",
            "worker_processes": 1,
            "api_processes": 1,
        },
    )
    p50 = report.figure("p50_ms", "ms (POST sent -> PluginResponse)", higher_is_better=False)
    p95 = report.figure("p95_ms", "ms", higher_is_better=False)
    p99 = report.figure("p99_ms", "ms", higher_is_better=False)
    async with Bench("force_resync") as bench:
        await seed_links(bench.conn, len(KEYS))
        config = bench.settings()
        api = await bench.start("api", config, "api")
        await bench.start("worker", config, "worker")
        url = f"http://127.0.0.1:{api.port}{PATH}"
        body = {"ErpConnectionId": 0, "InternalKeyIds": KEYS}
        async with aiohttp.ClientSession(headers={"Authorization": AUTH_HEADER}) as session:
            for _ in range(3):  # warm-up: connections, caches, queues
                async with session.post(url, json=body) as response:
                    await response.read()
            for _ in range(args.repeats):
                latencies = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    async with session.post(url, json=body) as response:
                        answer = await response.json()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    assert response.status == 200, answer
                    assert answer["IsOk"], answer
                latencies.sort()
                p50.add(percentile(latencies, 50))
                p95.add(percentile(latencies, 95))
                p99.add(percentile(latencies, 99))
    report.check(
        "ForceResync of 10 keys, p95 latency",
        f"<= {fmt(TARGET_P95_MS)} ms",
        p95.median,
        p95.median <= TARGET_P95_MS,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
