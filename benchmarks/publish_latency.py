"""Diagnostic: confirm latency of the front door's publisher alone, at a constant rate.

The front door's ``Publisher`` (same confirm channels, quorum-queue topology, ``mandatory``,
persistent messages) publishes resync commands open loop: message *i* is due at
``start + i / rate`` and its latency counts from that due time to its confirm. No HTTP, no
database, no other load from this script: what the broker's confirms cost when the machine is
otherwise idle, to compare with the front door's tail under load (``front_door.py``). The
commands queue is purged every 0.5 s, standing in for the workers.

    python -m benchmarks.publish_latency [--smoke] [--repeats 3] [--rate 1500] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.front_door import purge_commands
from benchmarks.openloop import due_times, percentile
from benchmarks.reporting import Report, arguments
from benchmarks.scenario import Bench, run_main
from engine.messaging.broker import Publisher
from engine.messaging.commands import ResyncCommand
from engine.messaging.topology import RESYNC_ROUTING_KEY

BODY = ResyncCommand.model_validate(
    {"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11)), "TaskId": 1}
).to_body()


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default 1500)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default 10)")


async def run(publisher: Publisher, rate: float, duration: float) -> list[float]:
    """Confirm latencies (seconds, from each message's due time) of one open-loop run."""
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        await publisher.publish(RESYNC_ROUTING_KEY, BODY)
        latencies.append(time.perf_counter() - due)

    async for due in due_times(time.perf_counter() + 0.05, rate, int(rate * duration)):
        task = asyncio.create_task(one(due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return sorted(latencies)


async def main() -> None:
    args = arguments(__doc__ or "", options)
    rate = args.rate or (100.0 if args.smoke else 1500.0)
    duration = args.duration or (1.0 if args.smoke else 10.0)
    report = Report(
        "publish_latency",
        args,
        {"rate": rate, "duration_s": duration, "publisher": "engine Publisher, 1 process"},
    )
    p50 = report.figure("confirm_p50_ms", "ms from due time", higher_is_better=False)
    p99 = report.figure("confirm_p99_ms", "ms from due time", higher_is_better=False)
    worst = report.figure("confirm_max_ms", "ms from due time", higher_is_better=False)
    async with Bench("publish") as bench:
        config = bench.settings(log_level="warning")
        drain = asyncio.create_task(purge_commands(bench.prefix))
        try:
            async with bench.publisher(config) as publisher:
                for _ in range(args.repeats):
                    latencies = await run(publisher, rate, duration)
                    p50.add(percentile(latencies, 50) * 1000)
                    p99.add(percentile(latencies, 99) * 1000)
                    worst.add(latencies[-1] * 1000)
        finally:
            drain.cancel()
    report.check(
        "confirm p99 with nothing else running (informative)",
        "(compare with the front door's tail)",
        p99.median,
        True,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
