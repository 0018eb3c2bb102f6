"""Scenario 6, end to end: N = 10,000 records x 2 targets from the HTTP request to ``Succeeded``.

One front door and one worker process. The client POSTs the 10,000 ids, then polls
``GetBatchTaskInfo`` over HTTP every 50 ms; the figure is the client's wall time from sending the
POST to seeing ``Succeeded``. Targets answer in L = 100 ms with C = 10 per target and 100 records
per call, so the latency limit per target is N * 2 calls / 100 / (C / L) seconds. It is compared
with the sum of the scenario limits: POST latency + that latency limit + N x 2 writes at the
engine-overhead rate last measured by ``benchmarks.engine_overhead`` (from the results file).

    python -m benchmarks.e2e [--smoke] [--repeats 3] [--records 10000] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import orjson

from benchmarks.config import AUTH_HEADER, RESYNC_PATH, TASK_INFO_PATH
from benchmarks.reporting import Report, arguments, fmt
from benchmarks.scenario import Bench, run_main, seed_links
from engine.store.tasks import TERMINAL_STATES


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="default 10,000")
    parser.add_argument("--latency-ms", type=float, default=None, help="default 100")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)


def last_engine_rate(args: argparse.Namespace) -> float | None:
    """Median writes/s of the latest full engine_overhead run in the results file."""
    if not args.results.exists():
        return None
    rate = None
    for line in args.results.read_bytes().splitlines():
        data: dict[str, Any] = orjson.loads(line)
        if data.get("scenario") == "engine_overhead" and not data.get("smoke"):
            rate = data["figures"]["writes_per_s"]["median"]
    return rate


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (200 if args.smoke else 10_000)
    latency = args.latency_ms or (10.0 if args.smoke else 100.0)
    c, batch = args.concurrency, args.batch_size
    latency_limit = records * 2 / batch / (c / (latency / 1000))
    engine_rate = last_engine_rate(args)
    report = Report(
        "e2e",
        args,
        {
            "records": records,
            "targets": 2,
            "latency_ms": latency,
            "concurrency": c,
            "batch_size": batch,
            "chunk_size": 200,
            "prefetch": 8,
            "worker_processes": 1,
            "api_processes": 1,
            "latency_limit_s": round(latency_limit, 3),
            "engine_overhead_writes_per_s": engine_rate,
        },
    )
    total = report.figure(
        "seconds_to_succeeded", "s (POST sent -> Succeeded seen)", higher_is_better=False
    )
    post = report.figure("post_ms", "ms (204 received)", higher_is_better=False)
    async with Bench("e2e") as bench:
        await seed_links(bench.conn, records)
        config = bench.settings(
            latency_ms={1: latency, 2: latency}, concurrency=c, batch_size=batch
        )
        api = await bench.start("api", config, "api")
        await bench.start("worker", config, "worker")
        base = f"http://127.0.0.1:{api.port}"
        headers = {"Authorization": AUTH_HEADER}
        async with aiohttp.ClientSession(headers=headers) as session:
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                async with session.post(
                    base + RESYNC_PATH,
                    json={"ErpConnectionId": 0, "InternalKeyIds": list(range(1, records + 1))},
                ) as response:
                    assert response.status == 204, await response.text()
                    task_id = int(response.headers["X-Batch-Task-Id"])
                post.add((time.perf_counter() - t0) * 1000)
                while True:
                    async with session.post(
                        base + TASK_INFO_PATH, json={"Id": task_id}
                    ) as response:
                        info = await response.json()
                    if info["State"] in TERMINAL_STATES:
                        break
                    if time.perf_counter() - t0 > 600:
                        raise TimeoutError(f"task {task_id} not finished: {info}")
                    await asyncio.sleep(0.05)
                total.add(time.perf_counter() - t0)
                assert info["State"] == "Succeeded", info
                assert info["Statistics"]["Updated"] == records * 2, info
    engine_s = records * 2 / engine_rate if engine_rate else 0.0
    limit = post.median / 1000 + latency_limit + engine_s
    overlapped = post.median / 1000 + max(latency_limit, engine_s)
    parts = f"POST {fmt(post.median)} ms + latency limit {fmt(latency_limit)} s"
    if engine_rate:
        parts += f" + {records * 2:,} writes at {fmt(engine_rate)}/s"
    else:
        report.notes.append("no engine_overhead result in the results file: limit without it")
    report.notes.append(
        f"fully overlapped (POST + max of the two) the floor would be {fmt(overlapped)} s"
    )
    report.extra["sum_of_limits_s"] = round(limit, 3)
    report.extra["overlapped_limit_s"] = round(overlapped, 3)
    report.check(
        "time to Succeeded vs the sum of the scenario limits",
        f"{fmt(limit)} s ({parts}) (informative)",
        f"{fmt(total.median)} s = {total.median / limit:.2f}x",
        True,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
