"""Scenario 5, scale-out: the latency-bound workload with 1 and then 2 worker processes.

Connector concurrency C is per process, so two workers may keep 2 C calls in flight per target
and should finish a "resync all" about twice as fast. The figure is records/s from the task's
creation to ``Succeeded``; the target is 2 workers >= 1.8x one.

    python -m benchmarks.scaleout [--smoke] [--repeats 3] [--records 4000] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.measure import trace_stats
from benchmarks.reporting import Report, arguments, fmt, target_options
from benchmarks.scenario import Bench, run_main, seed_links

TARGET_SPEEDUP = 1.8


def options(parser: argparse.ArgumentParser) -> None:
    target_options(parser, "default 4000", "C per target and process")


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (100 if args.smoke else 4_000)
    latency = args.latency_ms or (10.0 if args.smoke else 100.0)
    c = args.concurrency
    per_worker = c / (latency / 1000) * args.batch_size / 2
    report = Report(
        "scaleout",
        args,
        {
            "records": records,
            "targets": 2,
            "latency_ms": latency,
            "concurrency": c,
            "batch_size": args.batch_size,
            "chunk_size": args.chunk_size,
            "prefetch": 8,
            "limit_records_per_s_per_worker": per_worker,
        },
    )
    rates = {n: report.figure(f"workers{n}_records_per_s", "records/s (task)") for n in (1, 2)}
    calls = {n: report.figure(f"workers{n}_target1_calls_per_s", "calls/s (span)") for n in (1, 2)}
    rss: dict[str, float] = {}
    async with Bench("scaleout") as bench:
        await seed_links(bench.conn, records)
        trace = bench.scratch / "trace.txt"
        config = bench.settings(
            latency_ms={1: latency, 2: latency},
            concurrency=c,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            trace_path=trace,
        )
        workers = [await bench.start("worker", config, "worker-a")]
        async with bench.publisher(config) as publisher:
            for n in (1, 2):
                if n == 2:
                    workers.append(await bench.start("worker", config, "worker-b"))
                for _ in range(args.repeats):
                    since = time.time()
                    task = await bench.wait_task(message_id=await bench.resync_all(publisher))
                    assert task["state"] == "Succeeded", dict(task)
                    elapsed = (task["finished_at"] - task["created_at"]).total_seconds()
                    rates[n].add(records / elapsed)
                    calls[n].add(trace_stats(trace, since)[1].calls_per_s)
        for w in workers:
            rss[w.name] = round(w.peak_rss_mb(), 1)
    report.extra["peak_rss_mb"] = rss
    speedup = rates[2].median / rates[1].median if rates[1].median else 0.0
    report.check(
        "1 worker: share of its limit",
        "(informative)",
        f"{rates[1].median / per_worker:.0%} of {fmt(per_worker)} records/s",
        True,
    )
    report.check(
        "2 workers vs 1", f">= {TARGET_SPEEDUP}x", f"{speedup:.2f}x", speedup >= TARGET_SPEEDUP
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
