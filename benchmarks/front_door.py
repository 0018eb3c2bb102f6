"""Scenario 1, front door: accepted ForceResyncBatchTask requests/s, the ceiling, open-loop p99.

Two child processes on loopback: the real front door (``erpsync api``: Basic auth, validation,
task row, confirmed persistent publish) and the ceiling handler (an aiohttp handler that only
does the same confirmed persistent publish). ``wrk -t1 -c64`` with ``benchmarks/wrk/
force_resync.lua`` (10 keys) drives each in turn, interleaved; then the bounded open-loop client
(``benchmarks.openloop``) offers 80% of that run's peak at a constant rate and reports p99. Each
repeat is: wrk on the ceiling, wrk on the front door, open loop on the front door.

    python -m benchmarks.front_door [--smoke] [--repeats 3] [--duration 10] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from benchmarks import common

TARGET_RPS = 3_500
TARGET_CEILING_SHARE = 0.5
TARGET_P99_MS = 50.0
LUA = Path(__file__).resolve().parent / "wrk" / "force_resync.lua"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--no-drain",
        action="store_true",
        help="let the published commands pile up in the commands queue (no worker consumes "
        "them); by default the queue is purged every 0.5 s, standing in for the workers",
    )
    parser.add_argument(
        "--experiment",
        "--variants",
        dest="variants",
        nargs="+",
        default=[],
        metavar="FLAGS",
        help="also run one more front door per FLAGS (comma-separated BENCH_EXPERIMENT flags, "
        "see benchmarks/service.py, e.g. pool_reset or no_batch,no_uvloop; ceiling:FLAGS for a "
        "ceiling handler variant), each measured interleaved with the real front door",
    )
    parser.add_argument(
        "--no-open-loop", action="store_true", help="closed loop only (quicker A/B runs)"
    )
    parser.add_argument(
        "--open-loop-shares",
        type=float,
        nargs="+",
        default=[0.8],
        help="open-loop rates as shares of each run's peak (the target is judged at 0.8)",
    )


async def bench_json(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            data: dict[str, Any] = orjson.loads(line.removeprefix("BENCH_JSON "))
            return data
    raise RuntimeError(f"{cmd[0]} printed no result (exit {proc.returncode}):\n{text[-2000:]}")


async def wrk(url: str, duration: float, connections: int) -> dict[str, Any]:
    """One closed-loop wrk run; accepted = responses that were not errors (204)."""
    env = {**os.environ, "BENCH_AUTH": common.AUTH_HEADER}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    data = await bench_json(cmd, env)
    seconds = data["duration_us"] / 1e6
    data["accepted_per_s"] = (data["requests"] - data["status_errors"]) / seconds
    return data


async def openloop(url: str, rate: float, duration: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.openloop",
        url,
        "--rate",
        f"{rate:.1f}",
        "--duration",
        str(duration),
        "--auth",
        common.AUTH_HEADER,
    ]
    return await bench_json(cmd, {**os.environ, "PYTHONPATH": str(common.ROOT)})


async def purge_commands(prefix: str) -> None:
    """Empty the commands queue every 0.5 s: no worker runs in this scenario."""
    connection = await aio_pika.connect(common.AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{prefix}.commands", ensure=False)
        while True:
            await queue.purge()
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def warm_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(
                url,
                json={"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))},
                headers={"Authorization": common.AUTH_HEADER},
            ) as response:
                assert response.status == 204, await response.text()


async def main() -> None:
    args = common.arguments(__doc__ or "", options)
    duration = args.duration or (1.0 if args.smoke else 10.0)
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk and not args.smoke:
        sys.exit("front_door: wrk is not installed (apt-get install -y wrk)")
    report = common.Report(
        "front_door",
        args,
        {
            "load_tool": "wrk 4.1.0 -t1" if use_wrk else "openloop (wrk missing, smoke only)",
            "connections": args.connections,
            "duration_s": duration,
            "keys_per_request": 10,
            "open_loop_share_of_peak": 0.8,
            "api_processes": 1,
            "commands_queue": "kept" if args.no_drain else "purged every 0.5 s",
        },
    )
    api_rps = report.figure("api_accepted_per_s", "req/s (204)")
    api_p99 = report.figure(
        "api_closed_loop_p99_ms", "ms (wrk, closed loop)", higher_is_better=False
    )
    ceiling_rps = report.figure("ceiling_per_s", "req/s (204)")
    ceiling_p99 = report.figure("ceiling_closed_loop_p99_ms", "ms", higher_is_better=False)
    open_p99 = report.figure("api_open_loop_p99_ms", "ms at 80% of peak", higher_is_better=False)
    open_p50 = report.figure("api_open_loop_p50_ms", "ms at 80% of peak", higher_is_better=False)
    open_rate = report.figure("api_open_loop_achieved_per_s", "req/s")
    open_cpu = report.figure("open_loop_client_cpu", "cores used by the Python client")
    async with common.Bench("frontdoor") as bench:
        config = bench.settings(log_level="warning")
        api = await bench.start("api", config, "api")
        ceiling = await bench.start("ceiling", config, "ceiling")
        api_url = f"http://127.0.0.1:{api.port}{common.RESYNC_PATH}"
        ceiling_url = f"http://127.0.0.1:{ceiling.port}{common.RESYNC_PATH}"
        drain = None if args.no_drain else asyncio.create_task(purge_commands(bench.prefix))
        await warm_up(api_url)
        await warm_up(ceiling_url)
        targets = [
            ("ceiling", ceiling_url, ceiling_rps, ceiling_p99),
            ("api", api_url, api_rps, api_p99),
        ]
        for flags in args.variants:
            # "ceiling:FLAGS" runs a variant of the ceiling handler instead of the front door.
            role, _, experiment = flags.rpartition(":")
            variant = await bench.start(
                role or "api", config, flags.replace(",", "+").replace(":", "-"), experiment
            )
            variant_url = f"http://127.0.0.1:{variant.port}{common.RESYNC_PATH}"
            await warm_up(variant_url)
            targets.append(
                (
                    flags,
                    variant_url,
                    report.figure(f"{flags}_accepted_per_s", "req/s (204)"),
                    report.figure(
                        f"{flags}_closed_loop_p99_ms", "ms (wrk)", higher_is_better=False
                    ),
                )
            )
        runs: list[dict[str, Any]] = []
        for _ in range(args.repeats):
            for name, url, rps, p99 in targets:
                pids = [api.pid] if name == "api" else []
                with common.profiled(args.profile, "front_door_api", pids):
                    if use_wrk:
                        groups = {child.name: child.pid for child in bench.children}
                        before, started = common.cpu_ticks(groups), time.monotonic()
                        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
                        data = await wrk(url, duration, args.connections)
                        seconds = time.monotonic() - started
                        cores = common.cpu_split(before, common.cpu_ticks(groups), seconds)
                        done = resource.getrusage(resource.RUSAGE_CHILDREN)
                        cores["wrk"] = round(  # it has exited: its CPU is in our rusage
                            (done.ru_utime + done.ru_stime - waited.ru_utime - waited.ru_stime)
                            / seconds,
                            2,
                        )
                        data["cpu_cores"] = cores
                        # Requests per CPU-second of the server process(es): what the handler
                        # costs, less sensitive than req/s to how much CPU a loaded machine
                        # leaves to the server.
                        server = cores.get(name.replace(",", "+").replace(":", "-"), 0.0)
                        if server > 0:
                            data["per_server_cpu_s"] = round(data["accepted_per_s"] / server)
                            report.figure(
                                f"{name}_per_server_cpu_s", "req per CPU-second of the server"
                            ).add(data["per_server_cpu_s"])
                        rps.add(data["accepted_per_s"])
                        p99.add(data["p99_us"] / 1000)
                    else:
                        data = await openloop(url, 50, duration)
                        rps.add(data["achieved_rate"])
                        p99.add(data["p99_ms"])
                runs.append({"target": name, **data})
            # Right after each peak measurement, so a shared machine's capacity has not moved.
            for share in [] if args.no_open_loop else args.open_loop_shares:
                rate = 50.0 if args.smoke else share * api_rps.runs[-1]
                data = await openloop(api_url, rate, duration)
                if share == 0.8:
                    open_p50.add(data["p50_ms"])
                    open_p99.add(data["p99_ms"])
                    open_rate.add(data["achieved_rate"])
                    open_cpu.add(data["client_cpu_share"])
                else:
                    name = f"api_open_loop_p99_ms_at_{share:.0%}".replace("%", "pct")
                    report.figure(name, "ms", higher_is_better=False).add(data["p99_ms"])
                runs.append({"target": "api-open-loop", "share": share, **data})
        if drain is not None:
            drain.cancel()
        accepted = await bench.conn.fetchval("SELECT count(*) FROM batch_tasks")
        report.extra["runs"] = runs
        report.extra["tasks_created"] = accepted
        report.extra["peak_rss_mb"] = {
            "api": round(api.peak_rss_mb(), 1),
            "ceiling": round(ceiling.peak_rss_mb(), 1),
        }
    share = api_rps.median / ceiling_rps.median if ceiling_rps.median else 0.0
    report.check(
        "accepted req/s", f">= {TARGET_RPS:,}", api_rps.median, api_rps.median >= TARGET_RPS
    )
    for flags in args.variants:
        gain = report.figures[f"{flags}_accepted_per_s"].median / api_rps.median
        report.check(f"{flags} vs the real front door", "(experiment)", f"{gain:.2f}x", True)
        # Run by run (interleaved, so each pair shares the machine's state at that moment).
        pairs = zip(report.figures[f"{flags}_accepted_per_s"].runs, api_rps.runs, strict=True)
        report.extra[f"{flags}_ratio_per_run"] = [round(v / a, 3) for v, a in pairs]
    report.check(
        "share of the ceiling handler",
        f">= {TARGET_CEILING_SHARE:.0%}",
        f"{share:.0%} of {common.fmt(ceiling_rps.median)}",
        share >= TARGET_CEILING_SHARE,
    )
    if open_p99.runs:
        report.check(
            f"open-loop p99 at 80% of each run's peak ({common.fmt(open_rate.median)} req/s)",
            f"<= {TARGET_P99_MS:g} ms",
            open_p99.median,
            open_p99.median <= TARGET_P99_MS,
        )
    report.finish()


if __name__ == "__main__":
    common.run(main)
