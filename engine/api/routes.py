"""The agent endpoints: ErpSync ForceResyncBatchTask and the Batch agent.

Every agent call is a POST; other methods get 405. Bodies may be JSON, XML or form data
(see :mod:`engine.api.bodies`); responses are JSON, or XML when ``Accept`` prefers it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web

from engine.api import idempotency
from engine.api.appkeys import ACTIVE_CONNECTIONS, POOL, PUBLISHER, SETTINGS, TASK_INTAKE
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.bodies import (
    BodyShape,
    ResyncRequest,
    as_int,
    int_argument,
    read_arguments,
    resync_request,
    text_argument,
)
from engine.api.errors import ApiError
from engine.api.render import project, respond, select_paths
from engine.messaging.broker import PublishFailed
from engine.messaging.commands import resync_body
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.store import tasks
from engine.store.incremental import SYNC_TASK_NAME

log = structlog.get_logger(__name__)
_level = logging.getLogger(__name__)  # what structlog's stdlib logger filters by

ERPSYNC = "/api/v1/Agents/ErpSync"
BATCH = "/api/v1/Agents/Batch"
MAX_TASKS_LISTED = 1000
# BatchTaskState names and their numeric values (CRMScript uses the numbers).
BATCH_TASK_STATES = {
    "Unknown": 0,
    "New": 1,
    "Aquired": 2,
    "Started": 3,
    "Succeeded": 4,
    "Failed": 5,
    "SucceededManualCleanup": 6,
    "All": 99999,
}
_STATE_BY_KEY = {name.lower(): name for name in BATCH_TASK_STATES} | {
    str(value): name for name, value in BATCH_TASK_STATES.items()
}

routes = web.RouteTableDef()


def select_of(request: web.Request) -> list[list[str]] | None:
    """The request's ``$select`` paths (None: all), or 400."""
    if not request.query_string:  # the common case: no query to parse
        return None
    try:
        return select_paths(request.query)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def agent_arguments(
    request: web.Request, shape: BodyShape | None = None
) -> tuple[dict[str, Any], list[list[str]] | None]:
    """Validate ``$select`` and bind the body (``shape``: an endpoint's own properties); every
    agent endpoint reads its request this way."""
    select = select_of(request)
    settings = request.app[SETTINGS]
    return await read_arguments(request, settings.server.max_body_bytes, shape), select


@routes.post(f"{ERPSYNC}/ForceResyncBatchTask")
async def force_resync_batch_task(request: web.Request) -> web.Response:
    """Queue a resync; 204 once the broker confirmed the command, with the task id in a header."""
    settings = request.app[SETTINGS]
    args, _ = await agent_arguments(request)  # $select has no effect on a 204
    resync = resync_request(args, settings.server.max_internal_key_ids)
    if resync.erp_connection_id > 0 and settings.connection(resync.erp_connection_id) is None:
        raise ApiError(  # like an unknown task id: the request is well-formed, the id unknown
            404,
            f"ErpConnectionId {resync.erp_connection_id} is not a known connection",
            "SoNotFoundException",
        )
    require_connection(request[PRINCIPAL], resync.source_connection_id, "resync from")
    await require_active_source(request, resync.source_connection_id)
    intake = request.app[TASK_INTAKE]
    key = request.headers.get(idempotency.HEADER)
    if key is None:  # the common case, on the hot path: no context manager
        task = await intake.create_unkeyed(resync)
        await publish_resync(request, resync, task.task_id, task.message_id)
    else:
        async with intake.create(resync, principal=request[PRINCIPAL].user, key=key) as task:
            if task.publish is not None:
                await publish_resync(request, task.publish, task.task_id, task.message_id)
    task_id = task.task_id
    return web.Response(
        status=204,
        headers={
            "X-Batch-Task-Id": str(task_id),
            "Location": f"{BATCH}/GetBatchTaskInfo?id={task_id}",
        },
    )


async def require_active_source(request: web.Request, connection_id: int) -> None:
    """409 ``ConflictException`` when the resync's source connection is inactive
    (ToggleErpConnectionActive); nothing is created or queued. The inactive set is kept per
    process, updated by notification (:mod:`engine.api.active`): no database round trip per
    request."""
    if connection_id == 0 or await request.app[ACTIVE_CONNECTIONS].is_active(connection_id):
        return
    conn = request.app[SETTINGS].connection(connection_id)
    name = f" ({conn.name})" if conn is not None else ""
    raise ApiError(
        409,
        f"Connection {connection_id}{name} is inactive: nothing is synced from it. "
        "Activate it first (ToggleErpConnectionActive, erpsync connectors activate)",
        "ConflictException",
    )


async def publish_resync(
    request: web.Request, resync: ResyncRequest, task_id: int, message_id: str
) -> None:
    """Publish the task's command and wait for the confirm; 503 (task Failed) when refused."""
    pool = request.app[POOL]
    # resync_request checked all that ResyncCommand does and more (Int32 connection id;
    # positive, unique Int32 ids): the body is encoded without building the model, which
    # costs ten times as much (pydantic) on the hot path.
    body = resync_body(
        resync.erp_connection_id,
        resync.internal_key_ids,
        task_id=task_id,
        no_blank_values=True if resync.no_blank_values else None,
    )
    try:
        await request.app[PUBLISHER].publish(RESYNC_ROUTING_KEY, body, message_id=message_id)
    except PublishFailed as exc:
        # Context bound only on this path: binding per request costs the hot path (profile).
        with structlog.contextvars.bound_contextvars(task_id=task_id, message_id=message_id):
            log.warning("command not queued", error=str(exc))
        await tasks.fail_unqueued(pool, task_id, "Not queued: the message broker is unavailable")
        raise ApiError(
            503,
            "The resync could not be queued because the message broker is unavailable; "
            "nothing was started. Retry later.",
            headers={"Retry-After": "5"},
        ) from None
    if _level.isEnabledFor(logging.INFO):
        log.info(
            "resync queued",
            task_id=task_id,
            message_id=message_id,
            source=resync.source_connection_id,
            keys=len(resync.internal_key_ids),
        )


@routes.post(f"{BATCH}/GetBatchTaskInfo")
async def get_batch_task_info(request: web.Request) -> web.Response:
    """One task as SuperOffice's BatchTaskInfo; 404 when unknown."""
    args, select = await agent_arguments(request)
    if "id" not in args and "id" in request.query:
        args["id"] = request.query["id"]
    return await _task_info(request, int_argument(args, "Id"), select)


@routes.get(f"{BATCH}/GetBatchTaskInfo", allow_head=False)
async def get_batch_task_info_by_query(request: web.Request) -> web.Response:
    """``GET ...?id=N`` (erpsync's extension): the 204's ``Location`` answers a plain GET."""
    args = {"id": request.query.get("id")}
    return await _task_info(request, int_argument(args, "Id"), select_of(request))


async def _task_info(
    request: web.Request, task_id: int, select: list[list[str]] | None
) -> web.Response:
    task = await visible_task(request, task_id, "read the tasks of")
    info = batch_task_info(task)
    return respond(request, project(info, select) if select else info, root="BatchTaskInfo")


@routes.post(f"{BATCH}/GetBatchTaskInfosByNameAndState")
async def get_batch_task_infos_by_name_and_state(request: web.Request) -> web.Response:
    """Tasks by name and state (``All`` or missing = any state), newest first, at most 1000."""
    args, select = await agent_arguments(request)
    name = text_argument(args, "Name")
    state = _state(args.get("state"))
    states = None if state in (None, "All") else [state]
    rows = await tasks.list_by_name_and_state(
        request.app[POOL],
        name or None,
        states,
        limit=MAX_TASKS_LISTED,
        sources=request[PRINCIPAL].connections,  # only the tasks the caller may see
        correlation_id=text_argument(args, "CorrelationId") or None,
        message_id=text_argument(args, "MessageId") or None,
    )
    infos = [batch_task_info(row) for row in rows]
    return respond(
        request,
        project(infos, select) if select else infos,
        root="ArrayOfBatchTaskInfo",
        item="BatchTaskInfo",
    )


def _state(value: Any) -> str | None:
    """A BatchTaskState by name (any casing) or number; None when missing (``null``, which is
    how form and XML bodies spell the document's null, included)."""
    if value is None or value == "" or value == "null":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(as_int(value, "State"))
    if not isinstance(value, str):
        raise ApiError(400, "State must be a BatchTaskState name")
    state = _STATE_BY_KEY.get(value.strip().lower())
    if state is None:
        raise ApiError(400, f"State {value[:40]!r} is not one of " + ", ".join(BATCH_TASK_STATES))
    return state


@routes.post(f"{BATCH}/StopBatchJob")
async def stop_batch_job(request: web.Request) -> web.Response:
    """Stop a task between chunks: ``true`` when it was running and is now stopped (state
    Failed, ``Statistics.Stopped``), ``false`` when it had already finished; 404 when unknown."""
    args, _ = await agent_arguments(request)
    task_id = int_argument(args, "Id")
    pool = request.app[POOL]
    await visible_task(request, task_id, "stop the tasks of")
    stopped = await tasks.stop(pool, task_id, request[PRINCIPAL].user)
    if stopped is not None:
        log.info("task stopped", task_id=task_id)
    return respond(request, stopped is not None, root="boolean")


async def visible_task(request: web.Request, task_id: int, action: str) -> asyncpg.Record:
    """The task; 404 when unknown, 403 when its source is not a connection the caller may touch."""
    task = await tasks.get(request.app[POOL], task_id)
    if task is None:
        raise ApiError(404, f"BatchTask id {task_id} not found", "SoNotFoundException")
    require_connection(request[PRINCIPAL], task["source_connection_id"], action)
    return task


def batch_task_info(task: asyncpg.Record) -> dict[str, Any]:
    """The BatchTaskInfo carrier, plus erpsync's counters under ``Statistics``."""
    stopped = task["stopped_at"] is not None
    # A chunk running when the task was stopped still commits: describe the current counts.
    response = tasks.stopped_response(task) if stopped else task["response"]
    progress = "Stopped" if stopped else task["progress_description"]
    return {
        "Id": task["id"],
        "Name": task["name"],
        "AssociateId": 0,
        "DetailsTable": 0,
        "DetailsRecord": 0,
        # "not initiated by an associate": the continuous sync's tasks
        "IsSystemTask": task["name"] == SYNC_TASK_NAME,
        "IsInternalTask": False,
        "ParameterObject": None,
        "LastStarted": _iso(task["last_started_at"]),
        "Created": _iso(task["created_at"]),
        "StartCount": task["start_count"],
        "DatabaseSerialNumber": "",
        "Context": "",
        "Result": "",
        "State": task["state"],
        "Description": task["description"],
        "Response": response,
        "Request": orjson.dumps(task["request"]).decode(),
        "ProgressDescription": progress,
        "ProgressPercent": task["progress_percent"],
        "FileName": "",
        "CancellationBehaviour": "CanCancel",
        "TableRight": None,
        "FieldProperties": {},
        # erpsync's: the command message's ids, so a publishing service finds its task
        "CorrelationId": task["correlation_id"],
        "MessageId": task["message_id"],
        "Statistics": {
            "SourceConnectionId": task["source_connection_id"],
            **tasks.record_counts(task),
            "Chunks": task["total_chunks"] + task["retry_chunks"],
            # push units (stage 2, one per chunk and target) and delayed retries share the
            # numbering and the counter retry_chunks
            "PushUnits": task["push_units"],
            "RetryChunks": task["retry_chunks"] - task["push_units"],
            "ChunksDone": task["done_chunks"],
            "Finished": _iso(task["finished_at"]),
            "Stopped": stopped,
            "StoppedBy": task["stopped_by"],
            "StoppedAt": _iso(task["stopped_at"]),
        },
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")
