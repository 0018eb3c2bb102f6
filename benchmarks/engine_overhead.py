"""Scenario 2, engine overhead: zero-latency source and 2 targets, one worker process.

A "resync all" command over N linked records goes straight to the broker; the figure is
records x targets written per second, from the task's creation to ``Succeeded`` as PostgreSQL
records them (planning, reads, writes, outcomes, sync log, link stamps, progress included).
Every record has one stale field per target, so each record x target is one read and one write.

    python -m benchmarks.engine_overhead [--smoke] [--repeats 3] [--records 5000] [--profile DIR]
"""

from __future__ import annotations

import argparse

from benchmarks.measure import profiled
from benchmarks.reporting import Report, arguments
from benchmarks.scenario import Bench, run_main, seed_links

TARGET_WRITES_PER_S = 5_000


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="linked records (default 20000)")


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (200 if args.smoke else 20_000)
    targets = 2
    report = Report(
        "engine_overhead",
        args,
        {
            "records": records,
            "targets": targets,
            "latency_ms": 0,
            "chunk_size": 200,
            "batch_size": 100,
            "prefetch": 8,
            "concurrency": 8,
            "worker_processes": 1,
        },
    )
    writes = report.figure("writes_per_s", "record x target writes/s")
    seconds = report.figure("task_seconds", "s (created -> finished)", higher_is_better=False)
    cpu = report.figure("worker_cpu_us_per_write", "worker CPU us/write", higher_is_better=False)
    async with Bench("overhead") as bench:
        await seed_links(bench.conn, records)
        config = bench.settings()
        worker = await bench.start("worker", config)
        async with bench.publisher(config) as publisher:
            # Warm-up run (connections, caches), not reported.
            await bench.wait_task(message_id=await bench.resync_all(publisher))
            with profiled(args.profile, "engine_overhead", [worker.pid]):
                for _ in range(args.repeats):
                    cpu_before = worker.cpu_seconds()
                    task = await bench.wait_task(message_id=await bench.resync_all(publisher))
                    cpu.add((worker.cpu_seconds() - cpu_before) * 1e6 / (records * targets))
                    assert task["state"] == "Succeeded", dict(task)
                    assert task["writes_updated"] == records * targets, dict(task)
                    elapsed = (task["finished_at"] - task["created_at"]).total_seconds()
                    seconds.add(elapsed)
                    writes.add(records * targets / elapsed)
        report.extra["peak_rss_mb"] = {"worker": round(worker.peak_rss_mb(), 1)}
    report.check(
        "writes/s per worker process",
        f">= {TARGET_WRITES_PER_S:,}",
        writes.median,
        writes.median >= TARGET_WRITES_PER_S,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
