"""``erpsync tasks list|show|stop|retry-failed|deliveries``: batch tasks, through the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import orjson
from rich.table import Table

from engine.cli.client import (
    DASHBOARD,
    RETRY_FAILED,
    STOP,
    TASK_INFO,
    api_from,
    api_options,
    get_listing,
    run,
)
from engine.cli.output import console, echo_json, print_task, state_text, when


@click.group("tasks")
def tasks() -> None:
    """Batch tasks: list them, show one, stop one, retry its failed records."""


@tasks.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["New", "Started", "Succeeded", "Failed", "SucceededManualCleanup"]),
    help="Only tasks in this state (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--correlation-id", help="Only tasks of commands with this CorrelationId.")
@click.option("--message-id", help="Only the task of the command message with this id.")
@api_options
def tasks_list(
    states: Sequence[str],
    limit: int,
    correlation_id: str | None,
    message_id: str | None,
    **kw: Any,
) -> None:
    """Recent batch tasks, newest first."""
    query = {"limit": str(limit)}
    if states:
        query["state"] = ",".join(states)
    if correlation_id:
        query["correlation_id"] = correlation_id
    if message_id:
        query["message_id"] = message_id
    rows = get_listing(kw, f"{DASHBOARD}/tasks", query, "no batch tasks")
    if not rows:
        return
    table = Table(box=None, pad_edge=False)
    for column, justify in (
        ("id", "right"),
        ("state", "left"),
        ("progress", "right"),
        ("records", "right"),
        ("failed", "right"),
        ("created", "left"),
        ("response", "left"),
    ):
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            max_width=80 if column == "response" else None,
        )
    for t in rows:
        stats = t["Statistics"]
        total = "?" if stats["TotalRecords"] is None else stats["TotalRecords"]
        table.add_row(
            str(t["Id"]),
            state_text(t["State"]),
            f"{t['ProgressPercent']}%",
            f"{stats['DoneRecords']}/{total}",
            str(stats["Failed"]),
            when(t["Created"]),
            t["Response"] or t["ProgressDescription"],
        )
    console().print(table)


@tasks.command("show")
@click.argument("task_id", type=int)
@api_options
def tasks_show(task_id: int, **kw: Any) -> None:
    """One task: its state, outcomes per target and its first failures."""
    as_json = kw.pop("as_json")
    api = api_from(kw)
    detail = run(api, lambda: api.json("GET", f"{DASHBOARD}/tasks/{task_id}"))
    if as_json:
        echo_json(detail)
    else:
        print_task(detail)


@tasks.command("stop")
@click.argument("task_id", type=int)
@api_options
def tasks_stop(task_id: int, **kw: Any) -> None:
    """Stop a task between chunks (StopBatchJob): chunks not yet started are skipped.

    A chunk already running still commits; a task whose work had all begun ends as it would
    have. Exits 0 also when the task had already ended (it says so).
    """
    as_json = kw.pop("as_json")
    api = api_from(kw)

    async def stop() -> tuple[bool, dict[str, Any]]:
        stopped = await api.json("POST", STOP, json={"Id": task_id})
        return bool(stopped), await api.json("POST", TASK_INFO, json={"Id": task_id})

    stopped, info = run(api, stop)
    if as_json:
        echo_json({"Stopped": stopped, "Task": info})
    elif stopped:
        click.echo(f"stopped task {task_id} ({info['State']}): {info['Response']}")
    else:
        click.echo(f"task {task_id} had already ended ({info['State']}); nothing to stop")


@tasks.command("retry-failed")
@click.argument("task_id", type=int)
@api_options
def tasks_retry_failed(task_id: int, **kw: Any) -> None:
    """Queue a new task of exactly the records that failed in a finished task (RetryFailed).

    A record that failed on one target is pushed to that target only. Exits 1 when the task is
    unknown, not finished, or has no failed records.
    """
    as_json = kw.pop("as_json")
    api = api_from(kw)

    async def retry() -> dict[str, Any]:
        new_id = await api.json("POST", RETRY_FAILED, json={"Id": task_id})
        info: dict[str, Any] = await api.json("POST", TASK_INFO, json={"Id": new_id})
        return info

    info = run(api, retry)
    if as_json:
        echo_json(info)
        return
    request = orjson.loads(info["Request"])
    keys = len(request["InternalKeyIds"])
    per_target = request.get("TargetKeys") or {}
    where = "; ".join(f"{len(k)} on connection {t} only" for t, k in per_target.items())
    click.echo(
        f"queued task {info['Id']}: {keys} failed record{'' if keys == 1 else 's'} of task "
        f"{task_id}" + (f" ({where})" if where else "")
    )


@tasks.command("deliveries")
@click.argument("task_id", type=int, required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--resend",
    "resend_id",
    type=click.IntRange(min=1),
    metavar="ID",
    help="Resend the given-up delivery with this id (the id column): due again, with the "
    "webhook's max_attempts more POSTs.",
)
@api_options
def tasks_deliveries(task_id: int | None, limit: int, resend_id: int | None, **kw: Any) -> None:
    """Webhook deliveries of task.finished events (of one task when given), newest first.

    With --resend ID, resend a given-up delivery instead; exits 1 when it is unknown, not given
    up, or its webhook is no longer configured.
    """
    if resend_id is not None:
        if task_id is not None:
            raise click.UsageError("--resend takes a delivery id; give no TASK_ID with it")
        _resend(resend_id, kw)
        return
    query = {"limit": str(limit)}
    if task_id is not None:
        query["task_id"] = str(task_id)
    rows = get_listing(kw, f"{DASHBOARD}/webhook-deliveries", query, "no webhook deliveries")
    if not rows:
        return
    table = Table(box=None, pad_edge=False)
    for column in (
        "id",
        "task",
        "webhook",
        "state",
        "attempts",
        "last status",
        "next attempt",
        "error",
    ):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for d in rows:
        table.add_row(
            str(d["Id"]),
            str(d["TaskId"]),
            d["Webhook"],
            d["State"],
            str(d["Attempts"]),
            "" if d["LastStatus"] is None else str(d["LastStatus"]),
            when(d["NextAttempt"]) if d["NextAttempt"] else "",
            d["LastError"] or "",
        )
    console().print(table)


def _resend(delivery_id: int, kw: dict[str, Any]) -> None:
    as_json = kw.pop("as_json")
    api = api_from(kw)
    path = f"{DASHBOARD}/webhook-deliveries/{delivery_id}/resend"
    delivery = run(api, lambda: api.json("POST", path))
    if as_json:
        echo_json(delivery)
    else:
        click.echo(
            f"delivery {delivery_id} of task {delivery['TaskId']} to webhook "
            f"{delivery['Webhook']!r} is due again"
        )
