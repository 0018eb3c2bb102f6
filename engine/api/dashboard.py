"""Read-only endpoints for the dashboard and the CLI, under ``/api/v1/erpsync``.

They sit under ``/api/`` so they are authenticated like every agent endpoint (Basic, or a
session cookie plus the XSRF header), and scoped like them: a caller whose user entry or
application allows only some connections sees only the tasks whose source it may touch (403 for
another one), and only those connections' outcomes, sync-log rows and health. Tasks are rendered
as the Batch agent's BatchTaskInfo, so a client sees one shape everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from engine.api.appkeys import CONSUMER, METRICS, POOL, SETTINGS
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.bodies import integer_text
from engine.api.errors import ApiError
from engine.api.routes import batch_task_info, visible_task
from engine.store import connection_states, reports

PREFIX = "/api/v1/erpsync"
MAX_LIMIT = 1000
STATES = ("Unknown", "New", "Aquired", "Started", "Succeeded", "Failed", "SucceededManualCleanup")
ACTIVITY_WINDOW = 3600
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
"""Bounds of the columns a query parameter is compared with (connection ids are Int32)."""
MAX_TEXT = 255

routes = web.RouteTableDef()


def _int(
    request: web.Request, name: str, default: int | None = None, maximum: int = INT64_MAX
) -> int | None:
    """An integer query parameter within ``-maximum - 1 .. maximum`` (the column's range)."""
    raw = request.query.get(name, "")
    if raw == "":
        return default
    value = integer_text(raw)
    if value is None:
        raise ApiError(400, f"Query parameter {name!r} must be an integer")
    if not -maximum - 1 <= value <= maximum:
        raise ApiError(
            400, f"Query parameter {name!r} must be between {-maximum - 1} and {maximum}"
        )
    return value


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "")
    if len(value) > MAX_TEXT:
        raise ApiError(400, f"Query parameter {name!r} is longer than {MAX_TEXT} characters")
    if "\x00" in value:  # PostgreSQL's text holds no NUL: nothing stored could match
        raise ApiError(400, f"Query parameter {name!r} must not contain NUL characters")
    return value or None


def _task_id(request: web.Request) -> int:
    task_id = int(request.match_info["id"])
    if task_id > INT64_MAX:  # no task has such an id (the column is a bigint)
        raise ApiError(404, f"BatchTask id {task_id} not found")
    return task_id


def _limit(request: web.Request, default: int) -> int:
    value = _int(request, "limit", default)
    assert value is not None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, f"Query parameter 'limit' must be between 1 and {MAX_LIMIT}")
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", charset="utf-8")


def _connection_name(request: web.Request, connection_id: int | None) -> str:
    if connection_id is None:
        return "(unknown internal keys)"
    conn = request.app[SETTINGS].connection(connection_id)
    return conn.name if conn is not None else f"connection {connection_id}"


@routes.get(f"{PREFIX}/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """Batch tasks newest first; ``state`` (comma-separated), ``limit``, ``before`` (an id)."""
    states = [s for s in request.query.get("state", "").split(",") if s and s != "All"]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ApiError(400, f"Unknown state {unknown[0]!r}; use one of {', '.join(STATES)}")
    rows = await reports.tasks(
        request.app[POOL],
        states or None,
        _limit(request, 50),
        _int(request, "before"),
        correlation_id=_text(request, "correlation_id"),
        message_id=_text(request, "message_id"),
        sources=request[PRINCIPAL].connections,
    )
    return _json([batch_task_info(r) for r in rows])


@routes.get(PREFIX + "/tasks/{id:\\d+}")
async def show_task(request: web.Request) -> web.Response:
    """One task with its outcomes per target and its first failures."""
    task_id = _task_id(request)
    limit = _limit(request, 20)  # a bad query is 400 whether or not the task exists
    pool = request.app[POOL]
    task = await visible_task(request, task_id, "read the tasks of")
    allowed = request[PRINCIPAL].connections
    targets: dict[int | None, dict[str, Any]] = {}
    for row in await reports.outcomes_by_target(pool, task_id):
        cid = row["connection_id"]
        if allowed is not None and cid is not None and cid not in allowed:
            continue
        target = targets.setdefault(
            cid,
            {
                "ConnectionId": cid,
                "Name": _connection_name(request, cid),
                "Outcomes": {},
                "Records": 0,
                "FieldsChanged": 0,
                "NotLinked": 0,  # records skipped there for want of a link (no create_missing)
            },
        )
        target["Outcomes"][row["status"]] = row["n"]
        if row["status"] == "not_linked":
            target["NotLinked"] = row["n"]
        target["Records"] += row["n"]
        target["FieldsChanged"] += row["fields"] or 0
    failures = await reports.failures(pool, task_id, limit, connections=allowed)
    return _json(
        {
            "Task": batch_task_info(task),
            "Targets": list(targets.values()),
            "Failures": [_failure(request, f) for f in failures],
        }
    )


def _failure(request: web.Request, row: Any) -> dict[str, Any]:
    return {
        "InternalKeyId": row["internal_key_id"],
        "ConnectionId": row["connection_id"],
        "ConnectionName": _connection_name(request, row["connection_id"]),
        "Status": row["status"],
        "Error": row["error"],
        "At": _iso(row["created_at"]),
    }


@routes.get(PREFIX + "/tasks/{id:\\d+}/failures")
async def task_failures(request: web.Request) -> web.Response:
    """A task's outcomes with a reason; ``connection`` filters by target, ``limit`` caps."""
    task_id = _task_id(request)
    limit = _limit(request, 100)
    connection = _int(request, "connection", maximum=INT32_MAX)
    await visible_task(request, task_id, "read the tasks of")
    if connection is not None:
        require_connection(request[PRINCIPAL], connection, "read the outcomes on")
    rows = await reports.failures(
        request.app[POOL],
        task_id,
        limit,
        connection,
        connections=request[PRINCIPAL].connections,
    )
    return _json([_failure(request, r) for r in rows])


@routes.get(f"{PREFIX}/synclog")
async def sync_log(request: web.Request) -> web.Response:
    """Field changes newest first; filters ``task``, ``key``, ``connection``; ``before`` pages."""
    connection = _int(request, "connection", maximum=INT32_MAX)
    if connection is not None:
        require_connection(request[PRINCIPAL], connection, "read the sync log of")
    rows = await reports.sync_log(
        request.app[POOL],
        task_id=_int(request, "task"),
        internal_key_id=_int(request, "key"),
        connection_id=connection,
        limit=_limit(request, 100),
        before_id=_int(request, "before"),
        connections=request[PRINCIPAL].connections,
    )
    return _json(
        [
            {
                "Id": r["id"],
                "TaskId": r["task_id"],
                "ConnectionId": r["connection_id"],
                "ConnectionName": _connection_name(request, r["connection_id"]),
                "InternalKeyId": r["internal_key_id"],
                "ErpActorType": r["erp_actor_type"],
                "ErpField": r["erp_field"],
                "CrmField": r["crm_field"],
                "Direction": r["direction"],
                "OldValue": r["old_value"],
                "NewValue": r["new_value"],
                "At": _iso(r["created_at"]),
            }
            for r in rows
        ]
    )


@routes.get(f"{PREFIX}/connections")
async def connections(request: web.Request) -> web.Response:
    """Configured connections with their Active state, recent activity, health and breaker
    state.

    Health comes from the outcomes every worker committed in the last hour; the breaker state is
    this process's own (``unknown`` when this process runs no engine). ``Active`` is read from
    the store now (ToggleErpConnectionActive), as GetEngineStatus reads it.
    """
    app = request.app
    activity = {
        r["connection_id"]: r for r in await reports.connection_activity(app[POOL], ACTIVITY_WINDOW)
    }
    inactive = await connection_states.inactive(app[POOL])
    engine_here = app.get(CONSUMER) is not None
    breakers = app[METRICS].breaker_states() if METRICS in app else {}
    out = []
    principal = request[PRINCIPAL]
    for conn in app[SETTINGS].all_connections:
        if not principal.may_touch(conn.id):
            continue
        row = activity.get(conn.id)
        total = row["total"] if row else 0
        failed = row["failed"] if row else 0
        breaker = breakers.get(conn.id, "closed" if engine_here else "unknown")
        if breaker == "open" or (total and failed == total):
            health = "failing"
        elif failed:
            health = "degraded"
        elif total:
            health = "ok"
        else:
            health = "idle"
        out.append(
            {
                "Id": conn.id,
                "Name": conn.name,
                "Role": "CRM" if conn.id == 0 else "ERP",
                "Active": conn.id not in inactive,
                "Connector": conn.connector,
                "Concurrency": conn.concurrency,
                "Health": health,
                "Breaker": breaker,
                "RecentOutcomes": total,
                "RecentFailures": failed,
                "LastActivity": _iso(row["last_activity"]) if row else None,
                "LastFailureAt": _iso(row["last_failure_at"]) if row else None,
                "LastError": row["last_error"] if row else None,
            }
        )
    return _json(out)
