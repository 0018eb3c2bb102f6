"""A bounded open-loop HTTP load generator (constant arrival rate), printing one JSON line.

wrk is closed-loop: each connection waits for its answer before sending again, so when the
server stalls the load stalls with it and the stall is counted once, not for every request that
should have been sent meanwhile (coordinated omission). Here request ``i`` is due at
``start + i / rate`` whatever happened before, and its latency counts from that due time, so
queueing in the client or server is charged in full. In-flight requests are bounded
(``--max-inflight``); a request due while the bound is reached is counted as dropped.

    python -m benchmarks.openloop URL --rate 1000 --duration 10 [--auth 'Basic ...']
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import aiohttp
import orjson

BODY = orjson.dumps({"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))})


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def load(
    url: str, rate: float, duration: float, max_inflight: int, auth: str | None
) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter[str] = Counter()
    dropped = 0
    loop = asyncio.get_running_loop()
    cpu_start = time.process_time()
    connector = aiohttp.TCPConnector(limit=max_inflight, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        inflight: set[asyncio.Task[None]] = set()

        async def one(due: float) -> None:
            lags.append(loop.time() - due)
            try:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, OSError) as exc:
                errors[type(exc).__name__] += 1
                return
            if 200 <= status < 300:
                latencies.append(loop.time() - due)
            else:
                errors[str(status)] += 1

        total = int(rate * duration)
        start = loop.time() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= max_inflight:
                dropped += 1
                continue
            task = asyncio.create_task(one(due))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        sent_until = loop.time()
        if inflight:
            await asyncio.wait(inflight, timeout=30)
        elapsed = max(sent_until - start, 1e-9)
    latencies.sort()
    lags.sort()
    ms = 1000.0
    return {
        "target_rate": rate,
        "duration_s": round(elapsed, 3),
        "scheduled": total,
        "ok": len(latencies),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "dropped": dropped,
        "errors": dict(errors),
        "p50_ms": round(percentile(latencies, 50) * ms, 2),
        "p90_ms": round(percentile(latencies, 90) * ms, 2),
        "p99_ms": round(percentile(latencies, 99) * ms, 2),
        "p999_ms": round(percentile(latencies, 99.9) * ms, 2),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * ms, 2),
        "client_lag_p99_ms": round(percentile(lags, 99) * ms, 2),
        "client_cpu_share": round((time.process_time() - cpu_start) / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--max-inflight", type=int, default=512)
    parser.add_argument("--auth", default=None, help="Authorization header value")
    args = parser.parse_args()
    result = asyncio.run(load(args.url, args.rate, args.duration, args.max_inflight, args.auth))
    sys.stdout.write("BENCH_JSON " + orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
