"""The synchronous ErpSync resyncs: ForceResync, ForceResyncNoBlankValues, ForceResyncExternal
and ForceResyncExternalNoBlankValues, answering SuperOffice's ``PluginResponse``.

Each call is a ForceResyncBatchTask that waits: the task is created by the same
:class:`~engine.api.intake.TaskIntake`, its command published the same way, and the workers run
it as any other. The handler then waits (PostgreSQL notification, polling fallback:
:class:`~engine.store.finished.TaskWaiter`) until the task is final or ``server.sync_timeout``
passes, and describes the task. A call may cover at most ``server.sync_max_keys`` records;
more get 413 at once, pointing to ForceResyncBatchTask.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiohttp import web

import connectors as sdk
from engine.api import idempotency
from engine.api.appkeys import POOL, SETTINGS, TASK_INTAKE, TASK_WAITER
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.bodies import (
    ResyncRequest,
    as_int,
    int_argument,
    integer_text,
    resync_request,
    text_argument,
)
from engine.api.errors import ApiError
from engine.api.render import project, respond
from engine.api.routes import (
    BATCH,
    ERPSYNC,
    agent_arguments,
    publish_resync,
    require_active_source,
)
from engine.settings import Settings
from engine.settings.model import ConnectionSettings
from engine.store import keys as keys_store
from engine.store import reports

routes = web.RouteTableDef()

MAX_EXTERNAL_KEY_LENGTH = 255
MAX_EXPLAINED = 20
"""Records (failures, notes) and unknown ERP keys named one by one in the explanations."""
MAX_EXPLANATION = 4000
"""Characters of ``TechExplanation`` (``UserExplanation`` keeps to SuperOffice's 254)."""
MAX_LINE = 160
"""Characters of one record's or ERP key's line, so that the lines all fit."""

# ErrorCode values (documented in docs/api.md)
TIMEOUT = "ResyncTimeout"
FAILED = "ResyncFailed"
STOPPED = "ResyncStopped"
UNKNOWN_INTERNAL_KEYS = "UnknownInternalKeys"
UNKNOWN_EXTERNAL_KEYS = "UnknownExternalKeys"


@dataclasses.dataclass(frozen=True, slots=True)
class _External:
    """What an external-keys call resolved: the actor type and the ERP keys with no link."""

    erp_actor_type: str
    connection_id: int
    unknown: Sequence[str]


@routes.post(f"{ERPSYNC}/ForceResync")
async def force_resync(request: web.Request) -> web.Response:
    """Resync internal keys and answer when the task has ended (or the timeout passed)."""
    return await _by_internal_keys(request, "ForceResync", no_blank_values=False)


@routes.post(f"{ERPSYNC}/ForceResyncNoBlankValues")
async def force_resync_no_blank_values(request: web.Request) -> web.Response:
    """ForceResync where a blank source value never overwrites a non-blank target value."""
    return await _by_internal_keys(request, "ForceResyncNoBlankValues", no_blank_values=True)


@routes.post(f"{ERPSYNC}/ForceResyncExternal")
async def force_resync_external(request: web.Request) -> web.Response:
    """ForceResync of the records linked to ERP keys; unknown ERP keys are reported per key."""
    return await _by_external_keys(request, "ForceResyncExternal", no_blank_values=False)


@routes.post(f"{ERPSYNC}/ForceResyncExternalNoBlankValues")
async def force_resync_external_no_blank_values(request: web.Request) -> web.Response:
    """ForceResyncExternal with the NoBlankValues rule."""
    return await _by_external_keys(
        request, "ForceResyncExternalNoBlankValues", no_blank_values=True
    )


def _known_connection(settings: Settings, connection_id: int) -> ConnectionSettings:
    connection = settings.connection(max(connection_id, 0))
    if connection is None:
        raise ApiError(
            404,
            f"ErpConnectionId {connection_id} is not a known connection",
            "SoNotFoundException",
        )
    return connection


def _too_many(name: str, count: int, limit: int, what: str = "records") -> ApiError:
    return ApiError(
        413,
        f"{name} answers synchronously for at most {limit} {what} (server.sync_max_keys); "
        f"this call covers {count}. Use ForceResyncBatchTask for more and follow the task "
        "with the Batch agent (GetBatchTaskInfo).",
    )


async def _by_internal_keys(
    request: web.Request, name: str, *, no_blank_values: bool
) -> web.Response:
    settings = request.app[SETTINGS]
    limit = settings.server.sync_max_keys
    args, select = await agent_arguments(request)
    resync = resync_request(args, settings.server.max_internal_key_ids)
    if len(resync.internal_key_ids) > limit:  # before any database work: at once
        raise _too_many(name, len(resync.internal_key_ids), limit)
    _known_connection(settings, resync.erp_connection_id)
    require_connection(request[PRINCIPAL], resync.source_connection_id, "resync from")
    await require_active_source(request, resync.source_connection_id)
    if not resync.internal_key_ids:  # "resync all": as many as are linked to the source
        linked = await keys_store.count_linked(request.app[POOL], resync.source_connection_id)
        if linked > limit:
            raise _too_many(name, linked, limit, "records (all linked records were asked for)")
    resync = dataclasses.replace(resync, no_blank_values=no_blank_values)
    return await _run(request, name, resync, select)


async def _by_external_keys(
    request: web.Request, name: str, *, no_blank_values: bool
) -> web.Response:
    settings = request.app[SETTINGS]
    limit = settings.server.sync_max_keys
    args, select = await agent_arguments(request)
    connection_id = int_argument(args, "ErpConnectionId", default=0)
    erp_keys = _external_keys(args, settings.server.max_internal_key_ids)
    if len(erp_keys) > limit:
        raise _too_many(name, len(erp_keys), limit, "ERP keys")
    if connection_id <= 0:
        raise ApiError(
            400,
            f"ErpConnectionId must name an ERP connection (> 0): ExternalKeys are keys of "
            f"actors on an ERP, got {connection_id}",
        )
    connection = _known_connection(settings, connection_id)
    require_connection(request[PRINCIPAL], connection_id, "resync from")
    await require_active_source(request, connection_id)
    erp_actor_type = _actor_type(connection, _actor_type_name(args))
    if not erp_keys:  # SuperOffice: "or empty to resync all" (of that actor type)
        return await _all_of_type(
            request, name, connection, erp_actor_type, no_blank_values, select
        )
    found = await keys_store.by_external_keys(
        request.app[POOL], connection_id, erp_actor_type, erp_keys
    )
    external = _External(erp_actor_type, connection_id, [k for k in erp_keys if k not in found])
    ids = tuple(dict.fromkeys(found[k] for k in erp_keys if k in found))
    if not ids:  # nothing to resync: no task
        return _answer(request, _plugin_response(None, [], external), select)
    resync = ResyncRequest(connection_id, ids, no_blank_values)
    return await _run(request, name, resync, select, external)


async def _all_of_type(
    request: web.Request,
    name: str,
    connection: ConnectionSettings,
    erp_actor_type: str,
    no_blank_values: bool,
    select: list[list[str]] | None,
) -> web.Response:
    """Empty ExternalKeys: every record linked to an actor of that type on the connection."""
    limit = request.app[SETTINGS].server.sync_max_keys
    ids = await keys_store.linked_of_type(
        request.app[POOL], connection.id, erp_actor_type, limit + 1
    )
    if len(ids) > limit:
        raise _too_many(
            name, len(ids), limit, f"records (every linked {erp_actor_type} was asked for)"
        )
    if not ids:  # nothing to resync: no task
        text = f"No {erp_actor_type} is linked on connection {connection.id}: nothing to resync"
        return _answer(request, plugin_response(True, "OkWithInfo", text, text), select)
    resync = ResyncRequest(connection.id, tuple(ids), no_blank_values)
    return await _run(request, name, resync, select, _External(erp_actor_type, connection.id, []))


def _external_keys(args: dict[str, Any], max_keys: int) -> list[str]:
    """ExternalKeys: an array of non-empty texts (JSON numbers are taken as their text),
    duplicates dropped, the first occurrence keeping its place; missing or empty: every linked
    actor of the type."""
    raw = args.get("externalkeys")
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "ExternalKeys must be an array of strings")
    if len(raw) > max_keys:
        raise ApiError(413, f"ExternalKeys has {len(raw)} keys; the maximum is {max_keys}")
    keys: dict[str, None] = {}
    for index, item in enumerate(raw):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or not item:
            raise ApiError(400, f"ExternalKeys[{index}] must be a non-empty string")
        if len(item) > MAX_EXTERNAL_KEY_LENGTH:
            raise ApiError(
                400, f"ExternalKeys[{index}] is longer than {MAX_EXTERNAL_KEY_LENGTH} characters"
            )
        if "\x00" in item:
            raise ApiError(400, f"ExternalKeys[{index}] must not contain NUL characters")
        keys[item] = None
    return list(keys)


def _actor_type_name(args: dict[str, Any]) -> str | None:
    """ErpActorType as text: SuperOffice's enum number (CRMScript passes 1 for Customer) is
    taken as its name, as the link endpoints do."""
    raw = args.get("erpactortype")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(as_int(raw, "ErpActorType"))
    if isinstance(raw, str):
        number = integer_text(raw)
        names = [m.value for m in sdk.ErpActorType]
        if number is not None and 0 <= number < len(names):
            return names[number]
    return text_argument({**args, "erpactortype": raw}, "ErpActorType")


def _actor_type(connection: ConnectionSettings, value: str | None) -> str:
    """The connection's ERP actor type ``value`` names (exact, else the one case-insensitive
    match). Missing: 400; not one of the connection's: 404 listing them (the request is
    well-formed, the name unknown here, like an unknown ErpConnectionId)."""
    configured = [m.erp for m in connection.actor_types]
    if not value:
        raise ApiError(400, "ErpActorType is required: an ERP actor type of the connection")
    if value in configured:
        return value
    folded = [t for t in configured if t.casefold() == value.casefold()]
    if len(folded) == 1:
        return folded[0]
    listed = ", ".join(configured) or "none"
    raise ApiError(
        404,
        f"ErpActorType {value[:60]!r} is not an actor type of connection {connection.id} "
        f"({connection.name}); its actor types: {listed}",
        "SoNotFoundException",
    )


async def _run(
    request: web.Request,
    name: str,
    resync: ResyncRequest,
    select: list[list[str]] | None,
    external: _External | None = None,
) -> web.Response:
    """Create and publish the task exactly as ForceResyncBatchTask does, then wait for it."""
    settings = request.app[SETTINGS]
    intake, waiter = request.app[TASK_INTAKE], request.app[TASK_WAITER]
    key = request.headers.get(idempotency.HEADER)
    principal = request[PRINCIPAL].user if key is not None else ""
    with contextlib.ExitStack() as stack:
        async with intake.create(resync, principal=principal, key=key, name=name) as task:
            # Watched before the publish: a task that ends at once still wakes us.
            event = stack.enter_context(waiter.watch(task.task_id))
            if task.publish is not None:
                await publish_resync(request, task.publish, task.task_id, task.message_id)
        row = await waiter.wait(task.task_id, event, settings.server.sync_timeout)
    if row is None:
        body = _timed_out(task.task_id, settings.server.sync_timeout)
    else:
        explained = await reports.failures(request.app[POOL], task.task_id, MAX_EXPLAINED + 1)
        body = _plugin_response(row, explained, external)
    headers = {
        "X-Batch-Task-Id": str(task.task_id),
        "Location": f"{BATCH}/GetBatchTaskInfo?id={task.task_id}",
    }
    return _answer(request, body, select, headers)


def _answer(
    request: web.Request,
    body: dict[str, Any],
    select: list[list[str]] | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    data = project(body, select) if select else body
    return respond(request, data, root="PluginResponse", headers=headers)


def plugin_response(
    is_ok: bool, status: str, user: str, tech: str, error_code: str = ""
) -> dict[str, Any]:
    """SuperOffice's PluginResponse carrier (``Changes``, ``TableRight``: not reported)."""
    return {
        "IsOk": is_ok,
        "UserExplanation": user[:254],
        "TechExplanation": _bounded(tech, MAX_EXPLANATION),
        "ErrorCode": error_code,
        "Changes": None,
        "Status": status,
        "TableRight": None,
        "FieldProperties": {},
    }


def _timed_out(task_id: int, timeout: float) -> dict[str, Any]:
    return plugin_response(
        False,
        "Error",
        f"The resync did not finish within {timeout:g} seconds; it goes on as batch task "
        f"{task_id}.",
        f"Task {task_id} is not finished after {timeout:g} s (server.sync_timeout) and keeps "
        f"running; follow it with GetBatchTaskInfo (Id {task_id}): "
        f"{BATCH}/GetBatchTaskInfo?id={task_id}",
        TIMEOUT,
    )


def _plugin_response(
    task: asyncpg.Record | None, explained: Sequence[asyncpg.Record], external: _External | None
) -> dict[str, Any]:
    """Describe a final task (None: nothing was started, every ERP key was unknown)."""
    lines: list[str] = []
    user: list[str] = []
    if external is not None and external.unknown:
        n = len(external.unknown)
        user.append(
            f"{n} ERP key{'' if n == 1 else 's'} not linked: "
            + ", ".join(repr(k) for k in external.unknown[:5])
            + (" …" if n > 5 else "")
        )
        lines += [
            _bounded(
                f"ExternalKey {k!r}: no {external.erp_actor_type} with this key is linked on "
                f"connection {external.connection_id}",
                MAX_LINE,
            )
            for k in external.unknown[:MAX_EXPLAINED]
        ]
        if n > MAX_EXPLAINED:
            lines.append(f"… and {n - MAX_EXPLAINED} more unknown ERP keys")
    if task is None:
        return plugin_response(
            False,
            "Error",
            "Nothing resynced; " + "; ".join(user),
            "\n".join(lines),
            UNKNOWN_EXTERNAL_KEYS,
        )
    task_id, state = task["id"], task["state"]
    response = task["response"] or ""
    for row in explained[:MAX_EXPLAINED]:
        where = "" if row["connection_id"] is None else f" on connection {row['connection_id']}"
        line = f"key {row['internal_key_id']}{where}: {row['status']}: {row['error']}"
        lines.append(_bounded(line, MAX_LINE))
    if len(explained) > MAX_EXPLAINED:
        lines.append("… more in the task's failures (GET /api/v1/erpsync/tasks/{id}/failures)")
    tech = f"Task {task_id} {state}: {response}"
    if lines:
        tech += "\n" + "\n".join(lines)
    user_text = "; ".join([response, *user])
    if state == "Succeeded":
        info = bool(lines) or bool(task["unknown_keys"])
        return plugin_response(True, "OkWithInfo" if info else "Ok", user_text, tech)
    if task["stopped_at"] is not None:
        code = STOPPED
    elif task["unknown_keys"] and not task["total_records"]:
        code = UNKNOWN_INTERNAL_KEYS
    else:
        code = FAILED
    return plugin_response(False, "Error", user_text, tech, code)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
