"""A cheap bounded open-loop HTTP load generator (constant arrival rate), printing one JSON line.

wrk is closed-loop: each connection waits for its answer before sending again, so when the
server stalls the load stalls with it and the stall is counted once, not for every request that
should have been sent meanwhile (coordinated omission). Here request ``i`` is due at
``start + i / rate`` whatever happened before, and its latency counts from that due time, so
queueing in the client or server is charged in full.

The client must cost far less CPU than the server it measures, on the same cores: it is a raw
``asyncio.Protocol`` on uvloop (when installed) over pre-opened keep-alive connections, sends
pre-encoded request bytes, and parses only the status line and ``Content-Length`` of each
response. A due request takes a free connection; when all are busy it waits (its latency keeps
counting from its due time). In-flight plus waiting requests are bounded (``--max-inflight``);
a request due while the bound is reached is counted as dropped. The JSON line reports the
client's own CPU use (``client_cpu_share``, in cores) and how late it sent (``client_lag_*``).

    python -m benchmarks.openloop URL --rate 1000 --duration 10 [--auth 'Basic ...']
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import orjson

BODY = orjson.dumps({"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))})


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def request_bytes(url: str, auth: str | None, body: bytes = BODY) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def due_times(start: float, rate: float, total: int) -> AsyncIterator[float]:
    """The due times ``start + i / rate`` of ``total`` requests, each yielded once it is due
    (``time.perf_counter`` clock; a late wake-up yields the backlog at once)."""
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    i = 0
    while i < total:
        now = clock()
        while i < total and start + i / rate <= now:
            yield start + i / rate
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - clock()))


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, minimal response parsing."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0  # the due time of the request in flight; 0 when idle
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while self.due:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(buffer[9:12])
            length = 0
            if status != 204 and status != 304 and status >= 200:
                lower = bytes(buffer[:end]).lower()
                at = lower.find(b"\r\ncontent-length:")
                if at >= 0:
                    eol = lower.find(b"\r\n", at + 2)
                    length = int(lower[at + 17 : eol if eol >= 0 else end])
            if len(buffer) < end + 4 + length:
                return
            del buffer[: end + 4 + length]
            due, self.due = self.due, 0.0
            self.client.completed(self, due, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.client.idle:
            self.client.idle.remove(self)
        if self.due:
            due, self.due = self.due, 0.0
            self.client.failed(self, due, type(exc).__name__ if exc else "closed")


class _Client:
    def __init__(self, request: bytes, max_inflight: int) -> None:
        self.request = request
        self.max_inflight = max_inflight
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[float] = collections.deque()
        self.outstanding = 0  # in flight + waiting for a connection
        self.latencies: list[float] = []
        self.series: list[tuple[float, float]] | None = None  # (due, latency) when recorded
        self.lags: list[float] = []
        self.errors: Counter[str] = Counter()
        self.dropped = 0
        self.all_done = asyncio.Event()

    def submit(self, due: float) -> None:
        if self.outstanding >= self.max_inflight:
            self.dropped += 1
            return
        self.outstanding += 1
        if self.idle:
            self._send(self.idle.pop(), due)
        else:
            self.waiting.append(due)

    def _send(self, connection: _Connection, due: float) -> None:
        self.lags.append(time.perf_counter() - due)
        connection.send(due)

    def completed(self, connection: _Connection, due: float, status: int) -> None:
        if 200 <= status < 300:
            latency = time.perf_counter() - due
            self.latencies.append(latency)
            if self.series is not None:
                self.series.append((due, latency))
        else:
            self.errors[str(status)] += 1
        self._release(connection)

    def failed(self, connection: _Connection, due: float, error: str) -> None:
        self.errors[error] += 1
        self._release(connection)

    def _release(self, connection: _Connection) -> None:
        self.outstanding -= 1
        if not connection.closed:
            if self.waiting:
                self._send(connection, self.waiting.popleft())
            else:
                self.idle.append(connection)
        if self.outstanding == 0:
            self.all_done.set()


async def load(
    url: str,
    rate: float,
    duration: float,
    max_inflight: int,
    auth: str | None,
    connections: int = 64,
    series: str | None = None,
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    client = _Client(request_bytes(url, auth), max_inflight)
    if series:
        client.series = []
    opened = await asyncio.gather(
        *(
            loop.create_connection(
                lambda: _Connection(client), parts.hostname or "127.0.0.1", parts.port or 80
            )
            for _ in range(connections)
        )
    )
    client.idle = [protocol for _, protocol in opened]
    cpu_start = time.process_time()
    total = int(rate * duration)
    start = time.perf_counter() + 0.05
    async for due in due_times(start, rate, total):
        client.submit(due)
    sent_until = time.perf_counter()
    cpu_sending = time.process_time() - cpu_start
    if client.outstanding:
        client.all_done.clear()
        try:
            await asyncio.wait_for(client.all_done.wait(), timeout=30)
        except TimeoutError:
            client.errors["unanswered"] += client.outstanding
    for transport, _ in opened:
        transport.close()
    if series and client.series is not None:
        # One "due_offset_ms latency_ms" line per answered request, to see when the tail happens.
        with open(series, "w") as out:  # noqa: ASYNC230  # after the run, outside the timing
            out.writelines(f"{(d - start) * 1e3:.2f} {lat * 1e3:.2f}\n" for d, lat in client.series)
    elapsed = max(sent_until - start, 1e-9)
    latencies = sorted(client.latencies)
    lags = sorted(client.lags)
    ms = 1000.0
    return {
        "client": "openloop (asyncio.Protocol, keep-alive)",
        "event_loop": type(loop).__module__,
        "connections": connections,
        "target_rate": rate,
        "duration_s": round(elapsed, 3),
        "scheduled": total,
        "ok": len(latencies),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "dropped": client.dropped,
        "errors": dict(client.errors),
        "p50_ms": round(percentile(latencies, 50) * ms, 2),
        "p90_ms": round(percentile(latencies, 90) * ms, 2),
        "p99_ms": round(percentile(latencies, 99) * ms, 2),
        "p999_ms": round(percentile(latencies, 99.9) * ms, 2),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * ms, 2),
        "client_lag_p50_ms": round(percentile(lags, 50) * ms, 2),
        "client_lag_p99_ms": round(percentile(lags, 99) * ms, 2),
        "client_cpu_share": round(cpu_sending / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--max-inflight", type=int, default=512)
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--auth", default=None, help="Authorization header value")
    parser.add_argument("--no-uvloop", action="store_true", help="the standard asyncio loop")
    parser.add_argument(
        "--series", metavar="FILE", help="write 'due_offset_ms latency_ms' per request to FILE"
    )
    args = parser.parse_args()
    from engine.runtime.eventloop import new_event_loop

    loop = new_event_loop(not args.no_uvloop)
    try:
        result = loop.run_until_complete(
            load(
                args.url,
                args.rate,
                args.duration,
                args.max_inflight,
                args.auth,
                args.connections,
                args.series,
            )
        )
    finally:
        loop.close()
    sys.stdout.write("BENCH_JSON " + orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
