"""Continuous sync: change-to-applied latency at a sustained change rate on the demo connectors.

The demo configuration (postgres connectors over the demo schemas, seeded in the scenario's own
database) with the continuous sync running every ``--interval`` seconds in ``--workers`` worker
processes. A client renames ERP 1 customers by hand (SQL ``UPDATE``, the demo's trigger moves
``last_modified``) at ``--rate`` changes per second for ``--duration`` seconds, round robin over
the 1,000 customers, each to a unique value. A poller (every 50 ms) looks for the values in the
CRM (``contact.name``: the name is ``both`` on ERP 1) and in ERP 2 (``customer.company_name``,
``to_erp``: the end of the chain). Latency = first seen - the change's commit. A value renamed
again before it arrived is counted as superseded, not measured. The target (issue 18): p95 of the
latency to ERP 2 <= interval + 2 s.

    python -m benchmarks.continuous [--smoke] [--duration 300] [--rate 100] [--interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg

from benchmarks.config import AMQP_URL
from benchmarks.reporting import ROOT, Report, arguments, fmt
from benchmarks.scenario import Bench, run_main
from engine.settings import SyncSettings, load_settings
from engine.store import demo
from tests.support import services

POLL = 0.05


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds (default 300)")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--interval", type=float, default=None, help="seconds (default 5)")
    parser.add_argument("--workers", type=int, default=1)


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def main() -> None:
    args = arguments(__doc__ or "", options, default_repeats=1)
    duration = args.duration or (8.0 if args.smoke else 300.0)
    interval = args.interval or (1.0 if args.smoke else 5.0)
    rate = args.rate if not args.smoke else 20.0
    report = Report(
        "continuous",
        args,
        {
            "duration_s": duration,
            "changes_per_s": rate,
            "interval_s": interval,
            "worker_processes": args.workers,
            "connectors": "demo postgres (CRM, ERP 1, ERP 2)",
            "page_size": 500,
        },
    )
    crm_p95 = report.figure("crm_p95_s", "s (ERP 1 change -> CRM), p95", higher_is_better=False)
    erp2_p95 = report.figure("erp2_p95_s", "s (ERP 1 change -> ERP 2), p95", higher_is_better=False)
    erp2_p50 = report.figure(
        "erp2_p50_s", "s (ERP 1 change -> ERP 2), median", higher_is_better=False
    )
    erp2_max = report.figure("erp2_max_s", "s (ERP 1 change -> ERP 2), max", higher_is_better=False)
    achieved = report.figure("achieved_rate", "changes/s issued")
    async with Bench("continuous") as bench:
        await demo.seed(bench.conn)
        env = {
            "ERPSYNC_DATABASE_URL": services.database_url(bench.database),
            "ERPSYNC_BROKER_URL": AMQP_URL,
            "ERPSYNC_BROKER_PREFIX": bench.prefix,
            "ERPSYNC_LOG_LEVEL": "warning",
        }
        config = load_settings(ROOT / "config" / "erpsync.toml", env)
        sync = SyncSettings(enabled=True, initial_status="running", interval=interval, tick=0.2)
        config = config.model_copy(update={"sync": sync})
        for n in range(args.workers):
            await bench.start("worker", config, f"worker{n}")
        await _wait_first_runs(bench.conn)
        keys = [
            r[0] for r in await bench.conn.fetch("SELECT key FROM demo_erp1.customer ORDER BY key")
        ]
        url = services.database_url(bench.database)
        writer, poller = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            changed: dict[str, tuple[str, float]] = {}  # value -> (key, committed at)
            superseded = 0
            latest: dict[str, str] = {}  # key -> its latest value
            crm_seen: dict[str, float] = {}
            erp2_seen: dict[str, float] = {}
            done = asyncio.Event()

            async def load() -> int:
                nonlocal superseded
                issued = 0
                start = time.monotonic()
                while (elapsed := time.monotonic() - start) < duration:
                    due = int(elapsed * rate) + 1 - issued
                    batch = [keys[(issued + i) % len(keys)] for i in range(max(due, 0))]
                    values = [f"bench {issued + i}" for i in range(len(batch))]
                    if batch:
                        await writer.execute(
                            "UPDATE demo_erp1.customer c SET name = v.name "
                            "FROM unnest($1::text[], $2::text[]) AS v(key, name) "
                            "WHERE c.key = v.key",
                            batch,
                            values,
                        )
                        now = time.monotonic()
                        for key, value in zip(batch, values, strict=True):
                            old = latest.get(key)
                            if old is not None and old not in erp2_seen:
                                superseded += 1
                                changed.pop(old, None)
                            latest[key] = value
                            changed[value] = (key, now)
                        issued += len(batch)
                    await asyncio.sleep(0.01)
                return issued

            async def poll() -> None:
                while not done.is_set() or len(erp2_seen) < len(changed):
                    now = time.monotonic()
                    for table, column, seen in (
                        ("demo_crm.contact", "name", crm_seen),
                        ("demo_erp2.customer", "company_name", erp2_seen),
                    ):
                        rows = await poller.fetch(
                            f"SELECT {column} FROM {table} WHERE {column} LIKE 'bench %'"
                        )
                        for (value,) in rows:
                            if value in changed and value not in seen:
                                seen[value] = now
                    if done.is_set() and now - last_change > interval * 4 + 30:
                        break
                    await asyncio.sleep(POLL)

            started = last_change = time.monotonic()
            poll_task = asyncio.create_task(poll())
            issued = await load()
            last_change = time.monotonic()
            done.set()
            await poll_task
            issued_rate = issued / (last_change - started)
        finally:
            await writer.close()
            await poller.close()
    crm_lat = [crm_seen[v] - t for v, (_, t) in changed.items() if v in crm_seen]
    erp2_lat = [erp2_seen[v] - t for v, (_, t) in changed.items() if v in erp2_seen]
    missing = len(changed) - len(erp2_lat)
    crm_p95.add(percentile(crm_lat, 95))
    erp2_p95.add(percentile(erp2_lat, 95))
    erp2_p50.add(percentile(erp2_lat, 50))
    erp2_max.add(max(erp2_lat) if erp2_lat else float("nan"))
    achieved.add(issued_rate)
    report.extra.update(
        {"changes": issued, "measured": len(erp2_lat), "superseded": superseded, "missing": missing}
    )
    limit = interval + 2
    report.check(
        "p95 change -> applied in ERP 2 <= interval + 2 s",
        f"{fmt(limit)} s at {fmt(rate)} changes/s for {fmt(duration)} s",
        f"{fmt(erp2_p95.median)} s (p50 {fmt(erp2_p50.median)} s, max {fmt(erp2_max.median)} s; "
        f"{len(erp2_lat)} measured, {superseded} superseded, {missing} never seen)",
        erp2_p95.median <= limit and missing == 0,
    )
    report.finish()


async def _wait_first_runs(db: asyncpg.Connection, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        n = await db.fetchval("SELECT count(*) FROM sync_connections WHERE last_outcome = 'ok'")
        if n == 3:
            return n
        if time.monotonic() > deadline:
            raise TimeoutError("the first runs of the continuous sync did not happen")
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    run_main(main)
