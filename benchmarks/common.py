"""Shared machinery of the benchmark scripts.

Each scenario gets its own PostgreSQL database and RabbitMQ prefix (``erpsync_bench_*``), starts
erpsync roles as child processes (``benchmarks.service``), and cleans all of it up on the way out,
also on failure or Ctrl-C. Results are printed as a small table and appended as one JSON line to
``benchmarks/results/results.jsonl`` together with the machine's conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks.synthetic import REFERENCE as SYNTHETIC
from engine.messaging.broker import Publisher, connect
from engine.messaging.commands import ResyncCommand
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.settings import Settings
from engine.store import migrate
from tests.support import services

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", ROOT / "benchmarks" / "results"))
ADMIN_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
USER, PASSWORD = "bench", "bench-password"
# pbkdf2 hash of PASSWORD (cheap iteration count: the cache makes it a one-off cost anyway).
AUTH_HEADER = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
RESYNC_PATH = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
TASK_INFO_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfo"
TERMINAL = ("Succeeded", "Failed", "SucceededManualCleanup")


# -- command line ----------------------------------------------------------------------------------


def arguments(
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    default_repeats: int = 3,
) -> argparse.Namespace:
    """Common options: --smoke, --repeats, --results, --profile DIR."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get("BENCH_SMOKE") == "1",
        help="tiny sizes, one run: checks the script works (also BENCH_SMOKE=1)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"runs per figure (default {default_repeats})"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(os.environ.get("BENCH_RESULTS", RESULTS_DIR / "results.jsonl")),
        help="JSON lines file to append to",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="record py-spy profiles into this directory"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.smoke else default_repeats
    return args


# -- statistics and reporting ----------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity over repeated runs."""

    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    higher_is_better: bool = True

    def add(self, value: float) -> None:
        self.runs.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "runs": [round(v, 3) for v in self.runs],
            "min": round(min(self.runs), 3) if self.runs else None,
            "median": round(self.median, 3) if self.runs else None,
            "max": round(max(self.runs), 3) if self.runs else None,
        }


@dataclass
class Check:
    """A target and whether the measured median meets it."""

    name: str
    target: str
    measured: str
    ok: bool


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


class Report:
    """Collects figures and checks of one scenario, prints them and appends the JSON line."""

    def __init__(self, scenario: str, args: argparse.Namespace, params: dict[str, Any]) -> None:
        self.scenario = scenario
        self.args = args
        self.params = params
        self.figures: dict[str, Figure] = {}
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self.started = time.time()
        self.load_start = os.getloadavg()
        print(f"== {scenario} ({'smoke' if args.smoke else f'{args.repeats} runs'})", flush=True)
        print("   parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)

    def figure(self, name: str, unit: str, *, higher_is_better: bool = True) -> Figure:
        if name not in self.figures:
            self.figures[name] = Figure(name, unit, higher_is_better=higher_is_better)
        return self.figures[name]

    def check(self, name: str, target: str, measured: float | str, ok: bool) -> None:
        shown = measured if isinstance(measured, str) else fmt(measured)
        self.checks.append(Check(name, target, shown, ok))

    def finish(self) -> dict[str, Any]:
        load_end = os.getloadavg()
        width = max([len(f.name) for f in self.figures.values()] + [6])
        print(f"   {'figure':<{width}}  {'min':>10} {'median':>10} {'max':>10}  unit")
        for f in self.figures.values():
            lo, mid, hi = (min(f.runs), f.median, max(f.runs)) if f.runs else (float("nan"),) * 3
            print(f"   {f.name:<{width}}  {fmt(lo):>10} {fmt(mid):>10} {fmt(hi):>10}  {f.unit}")
        for c in self.checks:
            verdict = "n/a (smoke)" if self.args.smoke else ("PASS" if c.ok else "MISS")
            print(f"   [{verdict}] {c.name}: {c.measured} (target {c.target})")
        for note in self.notes:
            print(f"   note: {note}")
        print(
            "   load average at start/end: "
            f"{self.load_start[0]:.2f} / {load_end[0]:.2f} on {os.cpu_count()} cores",
            flush=True,
        )
        line = {
            "scenario": self.scenario,
            "time": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - self.started, 1),
            "smoke": bool(self.args.smoke),
            "repeats": self.args.repeats,
            "params": self.params,
            "figures": {name: f.as_json() for name, f in self.figures.items()},
            "checks": [
                {"name": c.name, "target": c.target, "measured": c.measured, "ok": c.ok}
                for c in self.checks
            ],
            "verdict": (
                "smoke"
                if self.args.smoke
                else ("pass" if all(c.ok for c in self.checks) else "miss")
            ),
            "notes": self.notes,
            **self.extra,
            "machine": machine_info(self.load_start, load_end),
        }
        self.args.results.parent.mkdir(parents=True, exist_ok=True)
        with self.args.results.open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")
        return line


_MACHINE_CACHE: dict[str, Any] = {}


def machine_info(load_start: Sequence[float], load_end: Sequence[float]) -> dict[str, Any]:
    """Cores, load, versions and the git commit the figures belong to."""
    if not _MACHINE_CACHE:
        versions: dict[str, str | None] = {"python": platform.python_version()}
        for dist in ("aiohttp", "aio-pika", "aiormq", "asyncpg", "pydantic", "structlog"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(dist)
        versions["wrk"] = _command_output(["wrk", "--version"]).split(" [")[0] or None
        psql = _command_output(["psql", "--version"]).split()  # psql (PostgreSQL) 15.20 (Debian…
        versions["psql_client"] = psql[2] if len(psql) > 2 else None
        versions["rabbitmq"] = _command_output(["rabbitmqctl", "version"]) or None
        commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
        dirty = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "engine"])
        _MACHINE_CACHE.update(
            {
                "host": socket.gethostname(),
                "cores": os.cpu_count(),
                "cpu": _cpu_model(),
                "kernel": platform.release(),
                "versions": versions,
                "git_commit": commit + ("-dirty" if dirty else ""),
            }
        )
    return {
        **_MACHINE_CACHE,
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in load_end],
    }


def _command_output(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# -- names, database, broker -----------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def database_url(name: str) -> str:
    return services.database_url(name, ADMIN_DATABASE_URL)


async def create_database(name: str) -> str:
    """A new, migrated database."""
    url = await services.create_database(name, admin_url=ADMIN_DATABASE_URL)
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(name: str) -> None:
    await services.drop_database(name, ADMIN_DATABASE_URL)


async def delete_broker_objects(prefix: str) -> None:
    await services.delete_broker_objects(prefix, AMQP_URL)


async def seed_links(db: asyncpg.Connection, count: int, targets: Sequence[int] = (1, 2)) -> None:
    """``count`` CRM contacts (internal keys 1..count), each linked as a Customer on ``targets``."""
    await db.execute(
        """
        INSERT INTO internal_keys (id, crm_actor_type, crm_record_id)
        SELECT g, 'Contact', g::text FROM generate_series(1, $1) g
        """,
        count,
    )
    for target in targets:
        await db.execute(
            """
            INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key)
            SELECT g, $2, 'Customer', g::text FROM generate_series(1, $1) g
            """,
            count,
            target,
        )
    await db.execute("SELECT setval('internal_keys_id_seq', $1)", count)
    await db.execute("ANALYZE")


# -- settings --------------------------------------------------------------------------------------

CRM_FIELDS = ["name", "phone", "email", "city"]


def settings(
    database: str,
    prefix: str,
    *,
    port: int = 0,
    targets: Sequence[int] = (1, 2),
    latency_ms: dict[int, float] | None = None,
    concurrency: int = 8,
    batch_size: int = 100,
    chunk_size: int = 200,
    prefetch: int = 8,
    trace_path: Path | None = None,
    log_level: str = "info",
) -> Settings:
    """A CRM and ERP targets on the synthetic connector; each target has a stale ``phone``.

    Mapping per target (Customer <-> Contact): name, phone and email to the ERP, city none, so a
    resync from the CRM reads each batch, then saves one changed field per record.
    """
    latency_ms = latency_ms or {}

    def conn(cid: int, stale: list[str], fields: list[str]) -> dict[str, Any]:
        return {
            "id": cid,
            "name": "CRM" if cid == 0 else f"ERP {cid}",
            "connector": SYNTHETIC,
            "concurrency": concurrency,
            "batch_size": batch_size,
            "timeout": 30,
            "settings": {
                "actor_types": {"Contact" if cid == 0 else "Customer": fields},
                "stale_fields": stale,
                "latency_ms": latency_ms.get(cid, 0.0),
                "trace_path": str(trace_path) if trace_path else None,
            },
        }

    erps = []
    for cid in targets:
        erp = conn(cid, ["phone"], CRM_FIELDS)
        erp["actor_types"] = [
            {
                "erp": "Customer",
                "crm": "Contact",
                "fields": {
                    "name": {"crm": "name", "direction": "to_erp"},
                    "phone": {"crm": "phone", "direction": "to_erp"},
                    "email": {"crm": "email", "direction": "to_erp"},
                    "city": {"crm": "city", "direction": "none"},
                },
            }
        ]
        erps.append(erp)
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": 10},
            "database": {"url": database_url(database), "pool_min_size": 2, "pool_max_size": 10},
            "broker": {"url": AMQP_URL, "prefix": prefix, "prefetch": prefetch},
            "engine": {"chunk_size": chunk_size},
            "logging": {"level": log_level, "format": "json"},
            "auth": {"users": [{"name": USER, "password_hash": _password_hash()}]},
            "crm": conn(0, [], CRM_FIELDS),
            "connections": erps,
        }
    )


def _password_hash() -> str:
    from engine.api.passwords import hash_password

    return hash_password(PASSWORD, iterations=1000)


def settings_json(value: Settings) -> bytes:
    """Settings as JSON with secrets revealed (for the child process only)."""
    data = value.model_dump(mode="json")
    data["database"]["url"] = value.database.url.get_secret_value()
    data["broker"]["url"] = value.broker.url.get_secret_value()
    for user, model in zip(data["auth"]["users"], value.auth.users, strict=True):
        user["password_hash"] = model.password_hash.get_secret_value()
    return orjson.dumps(data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- child processes -------------------------------------------------------------------------------


@dataclass
class Child:
    """A started child process with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mb(self) -> float:
        """Peak resident set size so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far.

        CPU time per unit of work is far less sensitive to other load on the machine than a
        rate over wall time, so it is the figure to compare before/after a code change.
        """
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL the process group."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class Bench:
    """One scenario's resources: database, broker prefix, scratch dir, child processes."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.database = unique(f"erpsync_bench_{scenario}")
        self.prefix = self.database.replace("_", "-")
        self.scratch = RESULTS_DIR / f"{self.database}.tmp"
        self.children: list[Child] = []
        self.db: asyncpg.Connection | None = None

    async def __aenter__(self) -> Bench:
        _exit_on_sigterm()
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            await create_database(self.database)
            self.db = await asyncpg.connect(database_url(self.database))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for child in reversed(self.children):
            stop_process(child.process)
        if self.db is not None:
            with contextlib.suppress(Exception):
                await self.db.close()
        with contextlib.suppress(Exception):
            await delete_broker_objects(self.prefix)
        with contextlib.suppress(Exception):
            await drop_database(self.database)
        if os.environ.get("BENCH_KEEP_LOGS") != "1":
            shutil.rmtree(self.scratch, ignore_errors=True)
        else:
            print(f"   logs kept in {self.scratch}", file=sys.stderr)

    def settings(self, **kw: Any) -> Settings:
        return settings(self.database, self.prefix, **kw)

    async def start(
        self,
        role: str,
        config: Settings,
        name: str | None = None,
        experiment: str | None = None,
    ) -> Child:
        """Start ``benchmarks.service ROLE`` on a free port and wait until it is ready."""
        name = name or f"{role}{len(self.children)}"
        port = free_port()
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"port": port})}
        )
        path = self.scratch / f"{name}.json"
        path.write_bytes(settings_json(config))
        log = self.scratch / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if experiment:
            env["BENCH_EXPERIMENT"] = experiment
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "benchmarks.service", role, str(path)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log, port)
        self.children.append(child)
        await wait_ready(child)
        return child

    async def stop(self, child: Child) -> None:
        await asyncio.to_thread(stop_process, child.process)
        self.children.remove(child)

    @property
    def conn(self) -> asyncpg.Connection:
        assert self.db is not None
        return self.db

    @contextlib.asynccontextmanager
    async def publisher(self, config: Settings) -> AsyncIterator[Publisher]:
        connection = await connect(config.broker, "bench")
        publisher = Publisher(connection, config.broker)
        try:
            await publisher.start()
            yield publisher
        finally:
            await publisher.close()
            await connection.close()

    async def resync_all(self, publisher: Publisher, source: int = 0) -> str:
        """Publish a "resync all" command straight to the broker; returns its message id."""
        body = ResyncCommand.model_validate({"ErpConnectionId": source}).to_body()
        return await publisher.publish(RESYNC_ROUTING_KEY, body)

    async def wait_task(
        self, *, message_id: str | None = None, task_id: int | None = None, timeout: float = 600
    ) -> asyncpg.Record:
        """Poll PostgreSQL until the task is terminal; return its row."""
        deadline = time.monotonic() + timeout
        while True:
            if task_id is not None:
                row = await self.conn.fetchrow("SELECT * FROM batch_tasks WHERE id = $1", task_id)
            else:
                row = await self.conn.fetchrow(
                    "SELECT * FROM batch_tasks WHERE message_id = $1", message_id
                )
            if row is not None and row["state"] in TERMINAL:
                return row
            for child in self.children:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited; see {child.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task not finished after {timeout}s: {row and dict(row)}")
            await asyncio.sleep(0.05)


async def wait_ready(child: Child, timeout: float = 60.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{child.port}/health/ready"
    async with aiohttp.ClientSession() as session:
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited at start:\n{child.log.read_text()[-3000:]}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} not ready after {timeout}s")
            await asyncio.sleep(0.1)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the cleanup in ``Bench.__aexit__`` runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


# -- profiling -------------------------------------------------------------------------------------


@contextlib.contextmanager
def profiled(directory: Path | None, name: str, pids: Sequence[int]) -> Iterator[None]:
    """Record py-spy profiles (raw collapsed stacks + SVG flame graph) of ``pids``."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = []
    for pid in pids:
        for fmt_, ext in (("raw", "txt"),):
            out = directory / f"{name}-{pid}.{ext}"
            procs.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        fmt_,
                        "--output",
                        str(out),
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--subprocesses",  # `--processes N` forks the servers
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    time.sleep(0.5)
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async ``main`` and exit non-zero on failure."""
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)


# -- connector call traces -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStats:
    """What one connection saw during a run, from the synthetic connector's trace."""

    calls: int
    actors: int
    calls_per_s: float
    mean_in_flight: float


def trace_stats(path: Path, since: float, until: float | None = None) -> dict[int, TargetStats]:
    """Per connection: calls started in [since, until] and their throughput.

    ``calls_per_s`` is the number of calls over the span from the first call's start to the last
    call's end: the sustained rate including one ramp-up and one tail (conservative; windowing
    inside the span is biased because calls complete in waves of C). ``mean_in_flight`` is the
    busy time over the same span (Little's law), to compare with C.
    """
    calls: dict[int, list[tuple[float, float, int]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            cid_text, _op, start, end, actors = line.split()
            s, e = float(start), float(end)
            if s >= since and (until is None or s <= until):
                calls.setdefault(int(cid_text), []).append((s, e, int(actors)))
    out = {}
    for cid, items in calls.items():
        span = max(max(e for _, e, _ in items) - min(s for s, _, _ in items), 1e-9)
        out[cid] = TargetStats(
            calls=len(items),
            actors=sum(a for _, _, a in items),
            calls_per_s=len(items) / span,
            mean_in_flight=sum(e - s for s, e, _ in items) / span,
        )
    return out


def cpu_ticks(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far, by group: ``groups`` maps a name to a session id (our children
    start their own session, which their forked servers keep); every other process counts as
    ``postgres``, ``rabbitmq`` (beam.smp, epmd), ``wrk`` or ``other`` by its command name.
    ``total`` is the machine's busy time (all cores).

    Take two snapshots and subtract (:func:`cpu_split`). Shared services count everyone's work
    (e.g. other engineers' tests on the same PostgreSQL)."""
    hz = os.sysconf("SC_CLK_TCK")
    by_session = {sid: name for name, sid in groups.items()}
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        session, utime, stime = int(fields[3]), int(fields[11]), int(fields[12])
        name = by_session.get(session)
        if name is None:
            if comm.startswith("postgres"):
                name = "postgres"
            elif comm in ("beam.smp", "epmd", "erl_child_setup", "inet_gethost"):
                name = "rabbitmq"
            elif comm == "wrk":
                name = "wrk"
            else:
                name = "other"
        used[name] = used.get(name, 0.0) + (utime + stime) / hz
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in cpu]
    used["total"] = (sum(ticks) - ticks[3] - ticks[4]) / hz  # minus idle and iowait
    return used


def cpu_split(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Cores used per group between two :func:`cpu_ticks` snapshots (exited processes are lost)."""
    # Processes that exit between the snapshots take their CPU with them, so "other" can
    # come out negative on a busy machine; it is clamped at 0.
    return {
        name: max(0.0, round((after.get(name, 0.0) - before.get(name, 0.0)) / seconds, 2))
        for name in sorted(after)
    }
