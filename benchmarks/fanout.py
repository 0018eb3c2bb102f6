"""Scenario 3, latency-bound fan-out: targets at L ms per call, concurrency C per target.

The limit is Little's law per target: at most C / L calls per second (reliability-perf §5.7).
Each batch of ``batch_size`` records costs a target one read and one write, so records/s per
target is at most C / L * batch_size / 2. Two cases, one worker process each:

* ``equal``: both targets at L; each target's sustained calls/s should be >= 90% of C / L.
* ``slow``: target 2 at ``--slow-ms``; target 1's sustained calls/s should stay within 10% of
  its figure in the equal case (a slow target must not hold back a fast one).

Throughput is read from the synthetic connector's per-call trace: a target's calls over the span
from its first call's start to its last call's end (one ramp-up and tail included).

    python -m benchmarks.fanout [--smoke] [--repeats 3] [--records 2000] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import time

import asyncpg

from benchmarks.measure import trace_stats
from benchmarks.reporting import Report, arguments, fmt, target_options
from benchmarks.scenario import Bench, run_main, seed_links
from engine.messaging.broker import Publisher
from engine.messaging.commands import ResyncCommand
from engine.messaging.topology import RESYNC_ROUTING_KEY

SHARE_OF_LIMIT = 0.9
FAST_KEEPS = 0.9


def options(parser: argparse.ArgumentParser) -> None:
    target_options(parser, "default 2000 (slow case: half)", "C per target")
    parser.add_argument("--slow-ms", type=float, default=None, help="default 5x latency")


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (100 if args.smoke else 2_000)
    latency = args.latency_ms or (10.0 if args.smoke else 100.0)
    slow = args.slow_ms or 5 * latency
    c = args.concurrency
    limit = c / (latency / 1000)
    report = Report(
        "fanout",
        args,
        {
            "records": records,
            "records_slow_case": records // 2,
            "targets": 2,
            "latency_ms": latency,
            "slow_ms": slow,
            "concurrency": c,
            "batch_size": args.batch_size,
            "chunk_size": args.chunk_size,
            "prefetch": 8,
            "limit_calls_per_s": limit,
            "worker_processes": 1,
        },
    )
    equal = {t: report.figure(f"equal_target{t}_calls_per_s", "calls/s (span)") for t in (1, 2)}
    inflight = report.figure("equal_target1_mean_in_flight", f"calls (C = {c})")
    fast = report.figure("slow_case_fast_target_calls_per_s", "calls/s (span)")
    slow_fig = report.figure("slow_case_slow_target_calls_per_s", "calls/s (span)")
    task_rate = report.figure("equal_records_per_s", "records/s (task)")
    async with Bench("fanout") as bench:
        await seed_links(bench.conn, records)
        trace = bench.scratch / "trace.txt"
        for case, latencies, count in (
            ("equal", {1: latency, 2: latency}, records),
            ("slow", {1: latency, 2: slow}, records // 2),
        ):
            config = bench.settings(
                latency_ms=latencies,
                concurrency=c,
                batch_size=args.batch_size,
                chunk_size=args.chunk_size,
                trace_path=trace,
            )
            worker = await bench.start("worker", config, f"worker-{case}")
            async with bench.publisher(config) as publisher:
                for _ in range(args.repeats):
                    since = time.time()
                    if case == "equal":
                        task = await bench.wait_task(message_id=await bench.resync_all(publisher))
                    else:
                        # Resync the first `count` keys only: an explicit list.
                        task = await resync_keys(bench, publisher, count)
                    assert task["state"] == "Succeeded", dict(task)
                    stats = trace_stats(trace, since)
                    if case == "equal":
                        for t in (1, 2):
                            equal[t].add(stats[t].calls_per_s)
                        inflight.add(stats[1].mean_in_flight)
                        elapsed = (task["finished_at"] - task["created_at"]).total_seconds()
                        task_rate.add(count / elapsed)
                    else:
                        fast.add(stats[1].calls_per_s)
                        slow_fig.add(stats[2].calls_per_s)
            await bench.stop(worker)
    for t in (1, 2):
        report.check(
            f"equal case, target {t}: share of C/L = {fmt(limit)} calls/s",
            f">= {SHARE_OF_LIMIT:.0%}",
            f"{equal[t].median / limit:.0%}",
            equal[t].median >= SHARE_OF_LIMIT * limit,
        )
    kept = fast.median / equal[1].median if equal[1].median else 0.0
    report.check(
        f"fast target next to a {fmt(slow)} ms target keeps its throughput",
        f">= {FAST_KEEPS:.0%} of the equal case",
        f"{kept:.0%} ({fmt(fast.median)} of {fmt(equal[1].median)} calls/s)",
        kept >= FAST_KEEPS,
    )
    report.finish()


async def resync_keys(bench: Bench, publisher: Publisher, count: int) -> asyncpg.Record:
    """Resync internal keys 1..count (an explicit id list) and wait for the task."""
    body = ResyncCommand.model_validate(
        {"ErpConnectionId": 0, "InternalKeyIds": list(range(1, count + 1))}
    ).to_body()
    return await bench.wait_task(message_id=await publisher.publish(RESYNC_ROUTING_KEY, body))


if __name__ == "__main__":
    run_main(main)
