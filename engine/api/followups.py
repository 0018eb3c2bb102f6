"""After a task: RetryFailed (an erpsync extension of the ErpSync agent) and webhook deliveries.

``POST /api/v1/Agents/ErpSync/RetryFailed {"Id": 42}`` queues a new task of exactly the records
that failed in task 42: a record that failed on one target is pushed to that target only (the
command's ``TargetKeys``), one that failed on the source or CRM side runs whole again. With an
``Idempotency-Key`` a retried call answers the first call's task (:meth:`TaskIntake.claim
<engine.api.intake.TaskIntake.claim>`, as ForceResyncBatchTask). A target connection set inactive
(ToggleErpConnectionActive) is left out of the retry (:func:`active_plan`); when that leaves
nothing to push, the call is 409 and nothing is created.
``GET /api/v1/erpsync/webhook-deliveries`` lists the webhook deliveries of task.finished events;
``POST /api/v1/erpsync/webhook-deliveries/{id}/resend`` makes a given-up one due again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web

from engine.api import idempotency
from engine.api.appkeys import ACTIVE_CONNECTIONS, POOL, PUBLISHER, SETTINGS, TASK_INTAKE
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.bodies import int_argument, integer_text
from engine.api.errors import ApiError
from engine.api.render import respond
from engine.api.routes import agent_arguments, require_active_source
from engine.messaging.broker import PublishFailed
from engine.messaging.commands import new_message_id, resync_body
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.store import Executor, events, tasks

log = structlog.get_logger(__name__)

RETRY_FAILED = "/api/v1/Agents/ErpSync/RetryFailed"
DELIVERIES = "/api/v1/erpsync/webhook-deliveries"
TASK_INFO = "/api/v1/Agents/Batch/GetBatchTaskInfo"
MAX_DELIVERIES = 1000

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """The keys of a RetryFailed task and, per target, the keys that failed only there."""

    internal_key_ids: tuple[int, ...]
    target_keys: dict[int, tuple[int, ...]] | None


def retry_plan(failed: Sequence[tuple[int, int | None]], targets: Collection[int]) -> RetryPlan:
    """Plan the retry of ``failed`` (internal key, connection) outcomes.

    A failure on a ``targets`` connection is retried on that target only; any other failure (the
    source, the CRM, a connection no longer configured) retries the record on every target.
    """
    whole = {key for key, cid in failed if cid not in targets}
    per_target: dict[int, set[int]] = {}
    for key, cid in failed:
        if cid is not None and cid in targets and key not in whole:
            per_target.setdefault(cid, set()).add(key)
    keys = tuple(sorted({key for key, _ in failed}))
    if not per_target:
        return RetryPlan(keys, None)
    return RetryPlan(keys, {t: tuple(sorted(k)) for t, k in sorted(per_target.items())})


def active_plan(
    plan: RetryPlan, source: int, erps: Collection[int], inactive: Collection[int]
) -> tuple[RetryPlan | None, tuple[int, ...]]:
    """``plan`` without what would go to an ``inactive`` connection; and the inactive
    connections among the ones the retry would push to (``erps``: the configured ERP ids).

    A record that failed on inactive targets only is left out (its outcome stays failed in the
    task retried, for a later RetryFailed). One that runs whole still pushes to the active
    targets; from an ERP it writes the CRM too, so it is kept even with every other ERP
    inactive. ``None`` when nothing is left to push.
    """
    per_target = plan.target_keys or {}
    named = {key for keys in per_target.values() for key in keys}
    whole = [key for key in plan.internal_key_ids if key not in named]
    everywhere = [t for t in erps if t != source]
    aimed = set(per_target) | (set(everywhere) if whole else set())
    left_out = tuple(sorted(aimed & set(inactive)))
    if not left_out:
        return plan, ()
    kept_targets = {t: keys for t, keys in per_target.items() if t not in inactive}
    kept = {key for keys in kept_targets.values() for key in keys}
    if source != 0 or any(t not in inactive for t in everywhere):
        kept.update(whole)
    if not kept:
        return None, left_out
    return RetryPlan(tuple(sorted(kept)), kept_targets or None), left_out


@dataclass(frozen=True, slots=True)
class RetryCommand:
    """The command of a RetryFailed task: task ``retry_of``'s failed records, from its source,
    under its correlation id (``left_out``: the inactive connections not pushed to, named in
    the task's description)."""

    source: int
    plan: RetryPlan
    correlation_id: str | None
    retry_of: int
    left_out: str = ""


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """RetryFailed of one task, as its task is created (keyed or not: :class:`~engine.api.
    intake.Keyed`)."""

    command: RetryCommand

    def fingerprint(self) -> bytes:
        """The task retried is the request: the failed records of a finished task do not
        change, and nothing else in the body counts."""
        return idempotency.digest({"RetryFailedOf": self.command.retry_of})

    async def insert(self, conn: Executor, message_id: str) -> int:
        command = self.command
        plan = command.plan
        request_json: dict[str, Any] = {
            "ErpConnectionId": command.source,
            "InternalKeyIds": list(plan.internal_key_ids),
        }
        if plan.target_keys is not None:
            request_json["TargetKeys"] = {str(t): list(k) for t, k in plan.target_keys.items()}
        request_json["RetryOf"] = command.retry_of
        return await tasks.create(
            conn,
            source_connection_id=command.source,
            request=request_json,
            message_id=message_id,
            correlation_id=command.correlation_id,
            target_keys=plan.target_keys,
            description=f"Retry of the failed records of task {command.retry_of}"
            + (
                f"; not pushed to inactive {command.left_out} (RetryFailed task "
                f"{command.retry_of} again once active)"
                if command.left_out
                else ""
            ),
        )

    def restored(self, task: asyncpg.Record) -> RetryCommand:
        request = task["request"]
        targets = request.get("TargetKeys")
        plan = RetryPlan(
            tuple(request["InternalKeyIds"]),
            None if targets is None else {int(t): tuple(k) for t, k in targets.items()},
        )
        return RetryCommand(
            task["source_connection_id"], plan, task["correlation_id"], request["RetryOf"]
        )


@routes.post(RETRY_FAILED)
async def retry_failed(request: web.Request) -> web.Response:
    """Queue a task of the failed records of task ``Id``; answers the new task's id."""
    settings = request.app[SETTINGS]
    args, _ = await agent_arguments(request)  # $select is validated; no effect on an int
    if "id" not in args and "id" in request.query:
        args["id"] = request.query["id"]
    task_id = int_argument(args, "Id")
    pool = request.app[POOL]
    task = await tasks.get(pool, task_id) if 0 < task_id < 2**63 else None
    if task is None:
        raise ApiError(404, f"BatchTask id {task_id} not found", "SoNotFoundException")
    source = task["source_connection_id"]
    require_connection(request[PRINCIPAL], source, "resync from")
    await require_active_source(request, source)
    if task["state"] not in tasks.TERMINAL_STATES:
        raise ApiError(
            409,
            f"BatchTask {task_id} is {task['state']}; retry its failed records once it has "
            "finished",
            "ConflictException",
        )
    failed = await tasks.failed_records(pool, task_id)
    if not failed:
        raise ApiError(422, f"BatchTask {task_id} has no failed records; there is nothing to retry")
    erps = [c.id for c in settings.connections]
    plan = retry_plan(failed, {c for c in erps if c != source})
    inactive = await request.app[ACTIVE_CONNECTIONS].inactive()
    narrowed, left_out = active_plan(plan, source, erps, inactive)
    named = _connections(request, left_out)
    if narrowed is None:
        raise ApiError(
            409,
            f"The failed records of task {task_id} would be pushed to inactive {named} only: "
            "a retry would push nothing. Activate first (ToggleErpConnectionActive, erpsync "
            "connectors activate)",
            "ConflictException",
        )
    retry = RetryRequest(
        RetryCommand(source, narrowed, task["correlation_id"], task_id, named if left_out else "")
    )
    key = request.headers.get(idempotency.HEADER)
    if key is None:
        message_id = new_message_id()
        new_id = await retry.insert(pool, message_id)
        await _publish(request, retry.command, new_id, message_id)
    else:
        intake = request.app[TASK_INTAKE]
        async with intake.claim(retry, principal=request[PRINCIPAL].user, key=key) as created:
            if created.publish is not None:
                await _publish(request, created.publish, created.task_id, created.message_id)
        new_id = created.task_id
    headers = {"X-Batch-Task-Id": str(new_id), "Location": f"{TASK_INFO}?id={new_id}"}
    return respond(request, new_id, root="int", headers=headers)


def _connections(request: web.Request, ids: Sequence[int]) -> str:
    """``connection 2 (ERP two)``, ``connections 1 (ERP one) and 2 (ERP two)``."""
    settings = request.app[SETTINGS]
    named = []
    for cid in ids:
        conn = settings.connection(cid)
        named.append(f"{cid} ({conn.name})" if conn is not None else str(cid))
    if len(named) < 2:
        return "connection " + "".join(named)
    return "connections " + ", ".join(named[:-1]) + " and " + named[-1]


async def _publish(
    request: web.Request, command: RetryCommand, task_id: int, message_id: str
) -> None:
    """Publish the retry task's command; 503 (the task Failed "Not queued") when refused."""
    plan = command.plan
    body = resync_body(
        command.source,
        plan.internal_key_ids,
        task_id=task_id,
        correlation_id=command.correlation_id,
        target_keys=plan.target_keys,
    )
    try:
        await request.app[PUBLISHER].publish(RESYNC_ROUTING_KEY, body, message_id=message_id)
    except PublishFailed as exc:
        log.warning("retry not queued", task_id=task_id, retry_of=command.retry_of, error=str(exc))
        await tasks.fail_unqueued(
            request.app[POOL], task_id, "Not queued: the message broker is unavailable"
        )
        raise ApiError(
            503,
            "The retry could not be queued because the message broker is unavailable; "
            "nothing was started. Retry later.",
            headers={"Retry-After": "5"},
        ) from None
    log.info(
        "failed records queued again",
        task_id=task_id,
        retry_of=command.retry_of,
        keys=len(plan.internal_key_ids),
        per_target={t: len(k) for t, k in (plan.target_keys or {}).items()},
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def _delivery_json(r: Any) -> dict[str, Any]:
    """A ``webhook_deliveries`` row as the API shows it."""
    settled = r["delivered_at"] or r["gave_up_at"]
    return {
        "Id": r["id"],
        "TaskId": r["task_id"],
        "Webhook": r["webhook"],
        "Attempts": r["attempts"],
        "LastStatus": r["last_status"],
        "LastError": r["last_error"],
        "State": "delivered"
        if r["delivered_at"]
        else ("given_up" if r["gave_up_at"] else "pending"),
        "NextAttempt": None if settled else _iso(r["next_attempt_at"]),
        "Delivered": _iso(r["delivered_at"]),
        "GaveUp": _iso(r["gave_up_at"]),
        "Created": _iso(r["created_at"]),
    }


@routes.get(DELIVERIES)
async def webhook_deliveries(request: web.Request) -> web.Response:
    """Webhook deliveries, newest first: attempts, last status and error, next attempt."""
    raw_task, raw_limit = request.query.get("task_id", ""), request.query.get("limit", "100")
    task_id = integer_text(raw_task) if raw_task else None
    limit = integer_text(raw_limit)
    if raw_task and (task_id is None or not 0 < task_id < 2**63):
        raise ApiError(400, "Query parameter 'task_id' must be a task id")
    if limit is None or not 1 <= limit <= MAX_DELIVERIES:
        raise ApiError(400, f"Query parameter 'limit' must be between 1 and {MAX_DELIVERIES}")
    principal = request[PRINCIPAL]
    pool = request.app[POOL]
    if task_id is not None:
        task = await tasks.get(pool, task_id)
        if task is None:
            raise ApiError(404, f"BatchTask id {task_id} not found", "SoNotFoundException")
        require_connection(principal, task["source_connection_id"], "read the tasks of")
    rows = await events.list_deliveries(pool, task_id, limit, principal.connections)
    body = [_delivery_json(r) for r in rows]
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@routes.post(DELIVERIES + "/{id}/resend")
async def resend_delivery(request: web.Request) -> web.Response:
    """Make a given-up webhook delivery due again (``max_attempts`` more POSTs); answers it."""
    raw = request.match_info["id"]
    delivery_id = integer_text(raw)
    if delivery_id is None or not 0 < delivery_id < 2**63:
        raise ApiError(400, f"Webhook delivery id {raw[:40]!r} is not an id")
    pool = request.app[POOL]
    principal = request[PRINCIPAL]
    unknown = ApiError(404, f"Webhook delivery {delivery_id} not found", "SoNotFoundException")
    delivery = await events.get_delivery(pool, delivery_id)
    if delivery is None:
        raise unknown
    task = await tasks.get(pool, delivery["task_id"])
    if task is not None:
        require_connection(principal, task["source_connection_id"], "resend the events of")
    elif principal.connections is not None:
        raise unknown  # as the listing, which hides the deliveries of deleted tasks from it
    webhook = delivery["webhook"]
    if delivery["gave_up_at"] is None:
        state = "delivered" if delivery["delivered_at"] else "still pending"
        raise ApiError(
            409,
            f"Webhook delivery {delivery_id} is {state}; only a given-up one is resent",
            "ConflictException",
        )
    if webhook not in {h.name for h in request.app[SETTINGS].notifications.webhooks}:
        raise ApiError(
            409,
            f"Webhook {webhook!r} is no longer configured; delivery {delivery_id} would stay "
            "pending",
            "ConflictException",
        )
    resent = await events.resend_delivery(pool, delivery_id)
    if resent is None:  # resent by someone else meanwhile
        raise ApiError(
            409, f"Webhook delivery {delivery_id} is no longer given up", "ConflictException"
        )
    log.info(
        "webhook delivery resent",
        delivery_id=delivery_id,
        task_id=delivery["task_id"],
        webhook=webhook,
    )
    return web.Response(body=orjson.dumps(_delivery_json(resent)), content_type="application/json")
