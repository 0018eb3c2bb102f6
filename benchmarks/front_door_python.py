"""The front door's own Python per request, without the network (issue 19, session 9).

``python -m benchmarks.front_door_python [--requests 5000] [--rounds 7] [--log FILE]``

Runs ForceResyncBatchTask requests straight through the real application (``create_app``: the
router, the middleware with Basic credentials and metrics, the handler, the task intake with the
real :class:`~engine.store.task_batch.TaskBatcher`, the ``resync queued`` log line) on uvloop,
with the I/O replaced by stand-ins that answer at once: the batcher's database connection
returns the ids of its rows, the publisher confirms at once. The ceiling handler's work (read
the body, publish, 204) runs through the same harness for comparison.

What it measures is CPU-bound Python only, so unlike the wrk runs it is repeatable to a few
percent on a busy machine (best of ``--rounds``). In situ a microsecond saved here is worth
about two of the server's CPU per request and three of the machine's (docs/benchmarks.md,
"Front door, session 9": lower CPU per request raises the rate, and RabbitMQ and PostgreSQL
cost less per request at higher rates).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from benchmarks import config as bench_config
from benchmarks.bare_app import bare_app
from engine.api.appkeys import POOL, PUBLISHER, TASK_INTAKE
from engine.api.intake import TaskIntake
from engine.app import create_app
from engine.observability.logging import configure
from engine.runtime.eventloop import new_event_loop
from engine.store.task_batch import TaskBatcher

BODY = b'{"ErpConnectionId":0,"InternalKeyIds":[1,2,3,4,5,6,7,8,9,10]}'
PATH = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Protocol:
    """What aiohttp's StreamReader calls on its protocol."""

    _reading_paused = False

    def pause_reading(self, **_: Any) -> None:
        pass

    def resume_reading(self, **_: Any) -> None:
        pass


class _Connection:
    """A database connection whose INSERT … RETURNING returns an id per row."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return [{"id": next(self._ids), "message_id": m} for m in args[3]]


class _Pool:
    def __init__(self) -> None:
        self._connection = _Connection()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[_Connection]:
        yield self._connection

    def acquire(self) -> Any:
        return self._acquire()


class _Publisher:
    async def publish(self, routing_key: str, body: bytes, **kw: Any) -> str:
        return str(kw.get("message_id"))


def _request(app: web.Application, protocol: _Protocol, authorization: str) -> web.Request:
    loop = asyncio.get_running_loop()
    payload = streams.StreamReader(protocol, 2**16, loop=loop)  # type: ignore[arg-type]
    payload.feed_data(BODY)
    payload.feed_eof()
    headers = {
        "Content-Type": "application/json",
        "Authorization": authorization,
        "Content-Length": str(len(BODY)),
    }
    return make_mocked_request("POST", PATH, headers=headers, app=app, payload=payload, loop=loop)


def _front_door(log_level: str) -> web.Application:
    settings = bench_config.settings(
        "postgresql://postgres@127.0.0.1/unused", "python", log_level=log_level
    )
    configure(settings.logging)
    app = create_app(settings, engine=False)
    pool: Any = _Pool()
    app[POOL] = pool
    app[TASK_INTAKE] = TaskIntake(pool, TaskBatcher(pool), publish_timeout=5)
    publisher: Any = _Publisher()
    app[PUBLISHER] = publisher
    return app


def _ceiling() -> web.Application:
    publisher = _Publisher()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await publisher.publish("resync", BODY)
        return web.Response(status=204)

    async def nothing(app: web.Application) -> AsyncIterator[None]:
        yield

    return bare_app(nothing, handle)


async def _measure(app: web.Application, requests: int, rounds: int) -> float:
    app.freeze()
    protocol = _Protocol()
    user, password = bench_config.USER, bench_config.PASSWORD
    authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    handle = app._handle
    concurrency = 64  # requests in flight at once, as wrk -c64 keeps them

    async def run(batch: list[web.Request]) -> None:
        responses = await asyncio.gather(*(handle(r) for r in batch))
        assert all(r.status == 204 for r in responses), [r.status for r in responses][:3]

    warm = [_request(app, protocol, authorization) for _ in range(2 * concurrency)]
    for start in range(0, len(warm), concurrency):
        await run(warm[start : start + concurrency])
    best = float("inf")
    for _ in range(rounds):
        elapsed = 0.0
        for _ in range(requests // concurrency):
            # Built untimed, one batch at a time: a server builds each request as it arrives,
            # and thousands built ahead would make every garbage collection dearer.
            batch = [_request(app, protocol, authorization) for _ in range(concurrency)]
            started = time.perf_counter()
            await run(batch)
            elapsed += time.perf_counter() - started
        best = min(best, elapsed / (requests // concurrency * concurrency))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--log", default=os.devnull, help="where the log lines go (default: /dev/null)"
    )
    parser.add_argument("--log-level", default="info", help="the front door's log level")
    args = parser.parse_args()
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    from benchmarks.service import _skip_pieces, experiments

    _skip_pieces(experiments())  # BENCH_EXPERIMENT=skip_auth,... as for the wrk runs
    loop = new_event_loop(True)
    front_door = loop.run_until_complete(
        _measure(_front_door(args.log_level), args.requests, args.rounds)
    )
    ceiling = loop.run_until_complete(_measure(_ceiling(), args.requests, args.rounds))
    print(
        f"front door {front_door:.1f} us per request, ceiling handler {ceiling:.1f} us, "
        f"difference {front_door - ceiling:.1f} us (best of {args.rounds} rounds of "
        f"{args.requests}, 64 in flight, log to {args.log})",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
