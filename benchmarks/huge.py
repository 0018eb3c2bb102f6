"""Scenario 4, huge batch: "resync all" over N linked records (default 1,000,000).

One front door process and one worker process; the request goes through HTTP with an empty
``InternalKeyIds`` (= every linked record), zero-latency synthetic CRM and 2 targets (stateless,
so the fake systems cost no memory). Reported: wall time and records/s from the task's creation
to ``Succeeded``, and the peak RSS (VmHWM) of every erpsync process; target <= 256 MB each.

    python -m benchmarks.huge [--smoke] [--records 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from benchmarks.config import AUTH_HEADER, RESYNC_PATH
from benchmarks.reporting import Report, arguments
from benchmarks.scenario import Bench, run_main, seed_links
from engine.devservices.processes import Child

TARGET_RSS_MB = 256.0


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="default 1,000,000")


async def main() -> None:
    args = arguments(__doc__ or "", options, default_repeats=1)
    records = args.records or (2_000 if args.smoke else 1_000_000)
    report = Report(
        "huge",
        args,
        {
            "records": records,
            "targets": 2,
            "latency_ms": 0,
            "chunk_size": 200,
            "batch_size": 100,
            "prefetch": 8,
            "worker_processes": 1,
            "api_processes": 1,
        },
    )
    seconds = report.figure("task_seconds", "s (created -> finished)", higher_is_better=False)
    rate = report.figure("records_per_s", "records/s")
    rss = {
        name: report.figure(f"peak_rss_{name}_mb", "MiB (VmHWM)", higher_is_better=False)
        for name in ("api", "worker")
    }
    async with Bench("huge") as bench:
        t0 = time.monotonic()
        await seed_links(bench.conn, records)
        report.extra["seed_seconds"] = round(time.monotonic() - t0, 1)
        config = bench.settings()
        for _ in range(args.repeats):
            api = await bench.start("api", config, "api")
            worker = await bench.start("worker", config, "worker")
            url = f"http://127.0.0.1:{api.port}{RESYNC_PATH}"
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url,
                    json={"ErpConnectionId": 0, "InternalKeyIds": []},
                    headers={"Authorization": AUTH_HEADER},
                ) as response,
            ):
                assert response.status == 204, await response.text()
                task_id = int(response.headers["X-Batch-Task-Id"])
            sampler = asyncio.create_task(sample_rss([api, worker]))
            try:
                task = await bench.wait_task(task_id=task_id, timeout=3600)
            finally:
                sampler.cancel()
            assert task["state"] == "Succeeded", dict(task)
            assert task["done_records"] == records, dict(task)
            elapsed = (task["finished_at"] - task["created_at"]).total_seconds()
            seconds.add(elapsed)
            rate.add(records / elapsed)
            rss["api"].add(api.peak_rss_mb())
            rss["worker"].add(worker.peak_rss_mb())
            report.extra["chunks"] = task["total_chunks"]
            await bench.stop(worker)
            await bench.stop(api)
    worst = max(rss["api"].runs + rss["worker"].runs)
    report.check(
        "peak RSS of every process", f"<= {TARGET_RSS_MB:g} MiB", worst, worst <= TARGET_RSS_MB
    )
    report.finish()


async def sample_rss(children: list[Child]) -> None:
    """Print the RSS every 15 s, so a long run shows progress."""
    while True:
        await asyncio.sleep(15)
        print(
            "   rss: " + ", ".join(f"{c.name} {c.rss_mb():.0f} MiB" for c in children), flush=True
        )


if __name__ == "__main__":
    run_main(main)
