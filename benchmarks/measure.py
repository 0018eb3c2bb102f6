"""Measuring what a run used: py-spy profiles, the synthetic connector's call traces, CPU time
per group of processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


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


SCHED_FIELDS = ("cpu_s", "sys_s", "voluntary", "involuntary", "slices", "run_delay_s", "minflt")


def _group_of(comm: str, cmdline: str, session: int, by_session: dict[int, str], db: str) -> str:
    name = by_session.get(session)
    if name is not None:
        return name
    if comm.startswith("postgres"):
        if db and db in cmdline:
            return "pg_backend"  # this scenario's connections
        if "walwriter" in cmdline:
            return "pg_walwriter"
        return "pg_other"
    if comm in ("beam.smp", "epmd", "erl_child_setup", "inet_gethost"):
        return "rabbitmq"
    if comm == "wrk":
        return "wrk"
    if comm == "cat":
        return "log_reader"  # the log_pipe experiment's reader
    return "other"


def sched_counts(groups: dict[str, int], database: str = "") -> dict[str, dict[str, float]]:
    """Scheduler counters so far, by group (as :func:`cpu_ticks`, with PostgreSQL split into
    this scenario's backends (``database`` in their command line), the WAL writer and the rest):
    CPU seconds (and of them in the kernel), voluntary and involuntary context switches,
    times run on a CPU
    (``schedstat``), seconds spent runnable but waiting for a CPU, and minor page faults.
    Summed over every thread. ``machine`` has the kernel's total context switches
    (``voluntary``) and CPU seconds. Subtract two snapshots (:func:`sched_delta`)."""
    hz = os.sysconf("SC_CLK_TCK")
    by_session = {sid: name for name, sid in groups.items()}
    out: dict[str, dict[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" or not cmdline:  # kernel threads and zombies
            group = "kernel" if not cmdline else "other"
        else:
            group = _group_of(comm, cmdline, int(fields[3]), by_session, database)
        counts = out.setdefault(group, dict.fromkeys(SCHED_FIELDS, 0.0))
        counts["cpu_s"] += (int(fields[11]) + int(fields[12])) / hz
        counts["sys_s"] += int(fields[12]) / hz
        counts["minflt"] += int(fields[7])
        try:
            tasks = list((entry / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                status = (task / "status").read_text()
                sched = (task / "schedstat").read_text().split()
            except OSError:
                continue
            for line in status.splitlines()[-2:]:
                key, _, value = line.partition(":")
                if key == "voluntary_ctxt_switches":
                    counts["voluntary"] += int(value)
                elif key == "nonvoluntary_ctxt_switches":
                    counts["involuntary"] += int(value)
            counts["run_delay_s"] += int(sched[1]) / 1e9
            counts["slices"] += int(sched[2])
    lines = Path("/proc/stat").read_text().splitlines()
    ticks = [int(v) for v in lines[0].split()[1:]]
    ctxt = next(int(line.split()[1]) for line in lines if line.startswith("ctxt "))
    machine = dict.fromkeys(SCHED_FIELDS, 0.0)
    machine["cpu_s"] = (sum(ticks) - ticks[3] - ticks[4]) / hz
    machine["voluntary"] = ctxt  # all switches, the kernel's own count
    out["machine"] = machine
    return out


def sched_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], requests: float
) -> dict[str, dict[str, float]]:
    """Per request, by group, between two :func:`sched_counts` snapshots: CPU in µs, context
    switches (voluntary, involuntary), times scheduled, µs waiting for a CPU, minor faults."""
    scale = {"cpu_s": 1e6, "sys_s": 1e6, "run_delay_s": 1e6}
    names = {"cpu_s": "cpu_us", "sys_s": "sys_us", "run_delay_s": "run_delay_us"}
    out = {}
    for group, counts in after.items():
        old = before.get(group, {})
        out[group] = {
            names.get(key, key): round(
                max(0.0, value - old.get(key, 0.0)) * scale.get(key, 1.0) / max(requests, 1.0), 2
            )
            for key, value in counts.items()
        }
    return out
