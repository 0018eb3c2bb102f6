"""Continuous sync control, SuperOffice's shape: GetEngineStatus, ChangeEngineStatus,
ChangeEngineInterval, SyncAll and ForceSyncAll (ErpSync agent), plus the dashboard's and CLI's
per-connection view (``GET /api/v1/erpsync/engine``) and a sync from the start
(``POST /api/v1/erpsync/engine/sync-from-start``).

The engine state lives in PostgreSQL (:mod:`engine.store.incremental`): any front door changes
it and every worker's scheduler follows it at its next tick. Whether the sync runs at all is the
workers' answer, not this process's configuration: a worker's lease says whether it runs the
continuous sync (:mod:`engine.sync.liveness`), and the engine runs while a live worker does. So
an ``erpsync api`` with another ``[sync]`` than its workers answers for the workers; with no
live worker at all, nothing runs (``IsRunning`` false) and SyncAll/ForceSyncAll are refused
(``NoLiveWorker``) rather than accepted for nobody.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import asyncpg
from aiohttp import web

from engine.api.appkeys import POOL, SETTINGS
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.errors import ApiError
from engine.api.force_resync import plugin_response
from engine.api.render import project, respond
from engine.api.routes import agent_arguments
from engine.store import connection_states, recovery
from engine.store import incremental as store

ERPSYNC = "/api/v1/Agents/ErpSync"
PREFIX = "/api/v1/erpsync"
MAX_INTERVAL = 86_400.0

routes = web.RouteTableDef()

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d{1,7})?))?$")
# xs:duration, the form SOAP and DataContract XML give a TimeSpan (days and time only)
_DURATION = re.compile(
    r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE
)


def parse_interval(text: str) -> float:
    """Seconds from a .NET TimeSpan (``[d.]hh:mm[:ss[.fffffff]]``, as TimeSpan.Parse reads it),
    an xs:duration (``PT30S``) or a number of seconds."""
    text = text.strip()
    match = _TIMESPAN.match(text)
    duration = _DURATION.match(text)
    if match:
        days, hours, minutes, seconds = match.groups()
        if int(minutes) > 59 or float(seconds or 0) >= 60:
            raise ValueError("minutes and seconds must be below 60")
        value = (
            int(days or 0) * 86_400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds or 0)
        )
    elif duration and any(duration.groups()) and not text.upper().endswith("T"):
        days, hours, minutes, seconds = duration.groups()
        value = (
            int(days or 0) * 86_400
            + int(hours or 0) * 3600
            + int(minutes or 0) * 60
            + float(seconds or 0)
        )
    else:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                "not a TimeSpan (hh:mm:ss), an xs:duration (PT30S) or a number of seconds"
            ) from None
    if not 0 < value <= MAX_INTERVAL:
        raise ValueError(f"must be more than 0 and at most {MAX_INTERVAL:g} seconds (1 day)")
    return value


def format_interval(seconds: float) -> str:
    """A .NET TimeSpan text: ``hh:mm:ss`` (``.fff`` when fractional, ``d.`` from a day)."""
    whole = int(seconds)
    fraction = seconds - whole
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if fraction > 1e-9:
        text += f"{fraction:.3f}".removeprefix("0")
    return f"{days}.{text}" if days else text


def _require_all(request: web.Request, action: str) -> None:
    """Engine-wide operations need a caller allowed every connection."""
    principal = request[PRINCIPAL]
    for conn in request.app[SETTINGS].all_connections:
        require_connection(principal, conn.id, action)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _workers(request: web.Request) -> recovery.LiveWorkers:
    """The live workers (lease renewed within this process's ``engine.stale_after``)."""
    settings = request.app[SETTINGS]
    return await recovery.live_workers(request.app[POOL], settings.engine.stale_after)


async def _engine_status(request: web.Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app[POOL]
    settings = request.app[SETTINGS]
    workers = await _workers(request)
    state = await store.get_engine(pool)
    if state is None:  # no worker with the sync enabled has started yet
        state = store.EngineState(settings.sync.initial_status, settings.sync.interval)
    rows = await store.connections_status(pool)
    inactive = await connection_states.inactive(pool)
    now = dt.datetime.now(dt.UTC)
    failed = [r["connection_id"] for r in rows if r["last_outcome"] == "failed"]
    # "Is the engine currently running": not while no live worker runs the sync, whatever the
    # stored status (kept for when one does)
    running = state.status == "running" and workers.running_sync > 0
    if not workers.alive:
        message = "No worker is alive (no erpsync worker or serve process has a current lease)"
    elif not workers.running_sync:
        message = "Continuous sync is not enabled in the workers' configuration ([sync] enabled)"
    elif not running:
        message = "Stopped"
    elif failed:
        message = "Running; last run failed on connection(s) " + ", ".join(map(str, failed))
    else:
        message = f"Running every {format_interval(state.interval)}"
    by_id = {r["connection_id"]: r for r in rows}
    return {
        "IsRunning": running,
        "StatusMessage": message,
        "Interval": format_interval(state.interval),
        "TableRight": None,
        "FieldProperties": {},
        # erpsync's: the live workers, and those of them that run the continuous sync
        "Workers": {"Alive": workers.alive, "RunningSync": workers.running_sync},
        # erpsync's: the per-connection schedule (the dashboard's panel, `erpsync engine status`)
        "Connections": [
            _connection(conn.id, conn.name, by_id.get(conn.id), running, now, conn.id in inactive)
            for conn in settings.all_connections
        ],
    }


def _connection(
    connection_id: int,
    name: str,
    row: Any,
    running: bool,
    now: dt.datetime,
    inactive: bool = False,
) -> dict[str, Any]:
    """One connection's schedule (a connection the scheduler has not seen yet: all empty);
    an inactive one (ToggleErpConnectionActive) has no next run."""
    if row is None:
        row = {"watermarks": [], "runs": 0, "last_changed": 0, "last_queued": 0}
        row |= {"last_echoes": 0, "last_unlinked": 0}
    caught_up = row.get("caught_up_at")
    return {
        "ConnectionId": connection_id,
        "Name": name,
        "Active": not inactive,
        "Watermarks": [
            {"ActorType": w["actor_type"], "Since": w["since"], "MovedAt": w["moved_at"]}
            for w in _watermarks(row["watermarks"])
        ],
        "Running": row.get("run_by") is not None,
        "Runs": row["runs"],
        "LastRun": _iso(row.get("last_run_at")),
        "LastOutcome": row.get("last_outcome"),
        "LastError": row.get("last_error"),
        "LastChanged": row["last_changed"],
        "LastQueued": row["last_queued"],
        "LastEchoes": row["last_echoes"],
        "LastUnlinked": row["last_unlinked"],
        "LagSeconds": None if caught_up is None else round((now - caught_up).total_seconds(), 3),
        "NextRun": _iso(row.get("next_run_at"))
        if running and not inactive and row.get("next_run_at")
        else None,
    }


def _watermarks(value: Any) -> list[dict[str, Any]]:
    return json.loads(value) if isinstance(value, str) else list(value)


def _status_response(
    request: web.Request, data: dict[str, Any], select: list[list[str]] | None
) -> web.Response:
    return respond(
        request,
        project(data, select) if select else data,
        root="ErpSyncEngineStatus",
    )


@routes.post(f"{ERPSYNC}/GetEngineStatus")
async def get_engine_status(request: web.Request) -> web.Response:
    """Whether the continuous sync runs, its interval, and erpsync's per-connection view."""
    _, select = await agent_arguments(request)
    return _status_response(request, await _engine_status(request), select)


@routes.post(f"{ERPSYNC}/ChangeEngineStatus")
async def change_engine_status(request: web.Request) -> web.Response:
    """``Run``: true starts the engine (every active connection runs at once), false stops it."""
    args, select = await agent_arguments(request)
    run = args.get("run")
    if isinstance(run, str) and run.lower() in ("true", "false"):
        run = run.lower() == "true"
    if not isinstance(run, bool):
        raise ApiError(400, "Run is required and must be true or false")
    _require_all(request, "start or stop the sync engine of")
    pool: asyncpg.Pool = request.app[POOL]
    await _ensure(request)
    await store.set_status(pool, "running" if run else "stopped", request[PRINCIPAL].user)
    return _status_response(request, await _engine_status(request), select)


@routes.post(f"{ERPSYNC}/ChangeEngineInterval")
async def change_engine_interval(request: web.Request) -> web.Response:
    """``Interval``: a TimeSpan (``00:00:30``, ``00:30``), an xs:duration (``PT30S``) or
    seconds; 204."""
    args, _ = await agent_arguments(request)
    raw = args.get("interval")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ApiError(400, "Interval is required: a TimeSpan (hh:mm:ss) or seconds")
    try:
        seconds = parse_interval(str(raw))
    except ValueError as exc:
        raise ApiError(400, f"Interval {str(raw)[:40]!r}: {exc}") from None
    _require_all(request, "change the sync interval of")
    await _ensure(request)
    await store.set_interval(request.app[POOL], seconds, request[PRINCIPAL].user)
    return web.Response(status=204)


async def _ensure(request: web.Request) -> store.EngineState:
    settings = request.app[SETTINGS]
    return await store.ensure(
        request.app[POOL],
        [c.id for c in settings.all_connections],
        status=settings.sync.initial_status,
        interval=settings.sync.interval,
    )


_NOT_ENABLED = (
    "The continuous sync is not enabled.",
    "No live worker runs the continuous sync: set [sync] enabled = true in the workers' "
    "configuration",
    "SyncNotEnabled",
)
_NO_WORKER = (
    "No sync worker is running.",
    "No worker is alive (none renewed its lease within engine.stale_after): start erpsync "
    "worker (or erpsync serve) with [sync] enabled = true",
    "NoLiveWorker",
)


async def _sync_all(request: web.Request, *, forced: bool, from_start: bool = False) -> Any:
    """The PluginResponse of SyncAll (``forced`` False: only while the engine runs) and
    ForceSyncAll (``forced``: once even while it is stopped); ``from_start`` also forgets the
    watermarks."""
    _require_all(request, "sync all records of")
    workers = await _workers(request)
    if not workers.alive:
        return plugin_response(False, "Error", *_NO_WORKER)
    if not workers.running_sync:
        return plugin_response(False, "Error", *_NOT_ENABLED)
    pool: asyncpg.Pool = request.app[POOL]
    state = await _ensure(request)
    running = state.status == "running"
    if not forced and not running:
        return plugin_response(
            False,
            "Error",
            "The sync engine is stopped; start it first.",
            "ChangeEngineStatus Run=true first, or ForceSyncAll for one pass while stopped",
            "EngineStopped",
        )
    if from_start:
        count = await store.request_full(pool, None)
    else:
        count = await store.make_due(pool, None, forced=forced)
    what = "every record from the start" if from_start else "the changes since their last run"
    once = "" if running else " (once: automatic sync stays off)"
    inactive = await connection_states.inactive(pool)
    left_out = [c.id for c in request.app[SETTINGS].connections if c.id in inactive]
    skipped = (
        f" Inactive connections left out: {', '.join(map(str, left_out))}." if left_out else ""
    )
    return plugin_response(
        True,
        "Ok",
        f"{count} connections will sync {what} now{once}.{skipped}",
        f"The runs queue Sync batch tasks (GetBatchTaskInfo, Name {store.SYNC_TASK_NAME!r}).",
    )


@routes.post(f"{ERPSYNC}/SyncAll")
async def sync_all(request: web.Request) -> web.Response:
    """Run every active connection's incremental sync now instead of at its next interval."""
    _, select = await agent_arguments(request)
    data = await _sync_all(request, forced=False)
    return respond(request, project(data, select) if select else data, root="PluginResponse")


@routes.post(f"{ERPSYNC}/ForceSyncAll")
async def force_sync_all(request: web.Request) -> web.Response:
    """Sync all active connections now, even when automatic sync is off (one pass; SuperOffice's
    "sync all active connections even when automatic sync is off")."""
    _, select = await agent_arguments(request)
    data = await _sync_all(request, forced=True)
    return respond(request, project(data, select) if select else data, root="PluginResponse")


@routes.post(f"{PREFIX}/engine/sync-from-start")
async def sync_from_start(request: web.Request) -> web.Response:
    """erpsync's extension: every active connection's next run (now, once, even while the engine is
    stopped) forgets its watermarks and reads every record. Answers the PluginResponse as JSON."""
    return web.json_response(await _sync_all(request, forced=True, from_start=True))


@routes.get(f"{PREFIX}/engine")
async def engine_view(request: web.Request) -> web.Response:
    """The dashboard's and the CLI's view: GetEngineStatus as JSON."""
    return web.json_response(await _engine_status(request))
