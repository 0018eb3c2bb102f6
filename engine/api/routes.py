"""The agent endpoints: ErpSync ForceResyncBatchTask and the Batch agent's task info."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web

from engine.api.bodies import int_argument, read_arguments, resync_request
from engine.api.errors import ApiError
from engine.appkeys import POOL, PUBLISHER, SETTINGS
from engine.messaging.broker import PublishFailed
from engine.messaging.commands import ResyncCommand
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.store import tasks

log = structlog.get_logger(__name__)

ERPSYNC = "/api/v1/Agents/ErpSync"
BATCH = "/api/v1/Agents/Batch"

routes = web.RouteTableDef()


@routes.post(f"{ERPSYNC}/ForceResyncBatchTask")
async def force_resync_batch_task(request: web.Request) -> web.Response:
    """Queue a resync; 204 once the broker confirmed the command, with the task id in a header."""
    settings = request.app[SETTINGS]
    args = await read_arguments(request, settings.server.max_body_bytes)
    resync = resync_request(args, settings.server.max_internal_key_ids)
    if resync.erp_connection_id > 0 and settings.connection(resync.erp_connection_id) is None:
        raise ApiError(400, f"ErpConnectionId {resync.erp_connection_id} is not a known connection")
    command = ResyncCommand.model_validate(
        {
            "ErpConnectionId": resync.erp_connection_id,
            "InternalKeyIds": list(resync.internal_key_ids),
        }
    )
    pool = request.app[POOL]
    message_id = uuid.uuid4().hex
    task_id = await tasks.create(
        pool,
        source_connection_id=command.source_connection_id,
        request=command.as_request(),
        message_id=message_id,
    )
    command = command.model_copy(update={"task_id": task_id})
    with structlog.contextvars.bound_contextvars(task_id=task_id, message_id=message_id):
        try:
            await request.app[PUBLISHER].publish(
                RESYNC_ROUTING_KEY, command.to_body(), message_id=message_id
            )
        except PublishFailed as exc:
            log.warning("command not queued", error=str(exc))
            await tasks.fail_unqueued(
                pool, task_id, "Not queued: the message broker is unavailable"
            )
            raise ApiError(
                503,
                "The resync could not be queued because the message broker is unavailable; "
                "nothing was started. Retry later.",
                headers={"Retry-After": "5"},
            ) from None
        log.info(
            "resync queued", source=command.source_connection_id, keys=len(command.internal_key_ids)
        )
    return web.Response(
        status=204,
        headers={
            "X-Batch-Task-Id": str(task_id),
            "Location": f"{BATCH}/GetBatchTaskInfo?id={task_id}",
        },
    )


@routes.post(f"{BATCH}/GetBatchTaskInfo")
async def get_batch_task_info(request: web.Request) -> web.Response:
    """One task as SuperOffice's BatchTaskInfo; 404 when unknown."""
    settings = request.app[SETTINGS]
    args = await read_arguments(request, settings.server.max_body_bytes)
    if "id" not in args and "id" in request.query:
        args["id"] = request.query["id"]
    task_id = int_argument(args, "Id")
    task = await tasks.get(request.app[POOL], task_id)
    if task is None:
        raise ApiError(404, f"BatchTask id {task_id} not found")
    return _json(batch_task_info(task))


@routes.post(f"{BATCH}/GetBatchTaskInfosByNameAndState")
async def get_batch_task_infos_by_name_and_state(request: web.Request) -> web.Response:
    """Tasks by name and state (``All`` or missing = any state), newest first."""
    settings = request.app[SETTINGS]
    args = await read_arguments(request, settings.server.max_body_bytes)
    name = args.get("name")
    state = args.get("state")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "Name must be a string")
    if state is not None and not isinstance(state, str):
        raise ApiError(400, "State must be a BatchTaskState name")
    states = None if state in (None, "", "All") else [state]
    rows = await tasks.list_by_name_and_state(request.app[POOL], name or None, states)
    return _json([batch_task_info(row) for row in rows])


def batch_task_info(task: asyncpg.Record) -> dict[str, Any]:
    """The BatchTaskInfo carrier, plus erpsync's counters under ``Statistics``."""
    return {
        "Id": task["id"],
        "Name": task["name"],
        "AssociateId": 0,
        "DetailsTable": 0,
        "DetailsRecord": 0,
        "IsSystemTask": False,
        "IsInternalTask": False,
        "LastStarted": _iso(task["last_started_at"]),
        "Created": _iso(task["created_at"]),
        "StartCount": task["start_count"],
        "State": task["state"],
        "Description": task["description"],
        "Response": task["response"],
        "Request": orjson.dumps(task["request"]).decode(),
        "ProgressDescription": task["progress_description"],
        "ProgressPercent": task["progress_percent"],
        "FileName": "",
        "CancellationBehaviour": "CanCancel",
        "Statistics": {
            "SourceConnectionId": task["source_connection_id"],
            "TotalRecords": task["total_records"],
            "DoneRecords": task["done_records"],
            "UnknownKeys": task["unknown_keys"],
            "Updated": task["writes_updated"],
            "Unchanged": task["writes_unchanged"],
            "Created": task["writes_created"],
            "Failed": task["writes_failed"],
            "FieldsChanged": task["fields_changed"],
            "Chunks": task["total_chunks"],
            "ChunksDone": task["done_chunks"],
            "Finished": _iso(task["finished_at"]),
        },
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", charset="utf-8")
