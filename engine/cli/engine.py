"""``erpsync engine status|start|stop|interval`` and ``erpsync sync-all``: the continuous sync's
control, through the API (GetEngineStatus, ChangeEngineStatus, ChangeEngineInterval, SyncAll,
ForceSyncAll)."""

from __future__ import annotations

import contextlib
from typing import Any

import click
from rich.table import Table

from engine.cli.client import api_from, api_options, run
from engine.cli.common import CliError
from engine.cli.output import console, echo_json, when

ERPSYNC = "/api/v1/Agents/ErpSync"


@click.group("engine")
def engine() -> None:
    """The continuous sync engine: status, start, stop, interval."""


def _print_status(status: dict[str, Any]) -> None:
    out = console()
    state = "running" if status["IsRunning"] else "stopped"
    out.print(f"engine {state}, interval {status['Interval']}: {status['StatusMessage']}")
    table = Table(box=None, pad_edge=False)
    columns = ("id", "name", "active", "watermark", "last run", "outcome", "queued", "lag")
    for column in (*columns, "next run"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=40)
    for c in status.get("Connections") or []:
        marks = ", ".join(f"{w['ActorType']}@{w['Since']}" for w in c["Watermarks"])
        lag = "" if c["LagSeconds"] is None else f"{c['LagSeconds']:.1f}s"
        outcome = c["LastOutcome"] or ""
        if c["LastError"]:
            outcome += f" ({c['LastError']})"
        table.add_row(
            str(c["ConnectionId"]),
            c["Name"],
            "yes" if c.get("Active", True) else "NO",
            marks or "-",
            when(c["LastRun"]),
            outcome,
            str(c["LastQueued"]),
            lag,
            when(c["NextRun"]),
        )
    out.print(table)


def _status_command(body: dict[str, Any] | None, operation: str, kw: dict[str, Any]) -> None:
    as_json = kw.pop("as_json")
    api = api_from(kw)

    async def call() -> Any:
        if operation == "ChangeEngineInterval":
            await api.json("POST", f"{ERPSYNC}/{operation}", json=body)
            operation_after = "GetEngineStatus"
        else:
            return await api.json("POST", f"{ERPSYNC}/{operation}", json=body)
        return await api.json("POST", f"{ERPSYNC}/{operation_after}")

    status = run(api, call)
    if as_json:
        echo_json(status)
    else:
        _print_status(status)


@engine.command("status")
@api_options
def engine_status(**kw: Any) -> None:
    """Running or stopped, the interval, and per connection its watermark, last run, lag and
    next run."""
    _status_command(None, "GetEngineStatus", kw)


@engine.command("start")
@api_options
def engine_start(**kw: Any) -> None:
    """Start the continuous sync (every active connection runs at once, then once per interval)."""
    _status_command({"Run": True}, "ChangeEngineStatus", kw)


@engine.command("stop")
@api_options
def engine_stop(**kw: Any) -> None:
    """Stop the continuous sync (runs under way finish; no new ones start)."""
    _status_command({"Run": False}, "ChangeEngineStatus", kw)


@engine.command("interval")
@click.argument("interval")
@api_options
def engine_interval(interval: str, **kw: Any) -> None:
    """Set the interval: seconds (30) or a TimeSpan (00:00:30)."""
    value: Any = interval
    with contextlib.suppress(ValueError):
        value = float(interval)
    _status_command({"Interval": value}, "ChangeEngineInterval", kw)


@click.command("sync-all")
@click.option(
    "--force",
    is_flag=True,
    help="ForceSyncAll: one pass now even while the engine is stopped (automatic sync stays off).",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Forget the watermarks: every active connection's run (now, once) reads every record.",
)
@api_options
def sync_all(force: bool, from_start: bool, **kw: Any) -> None:
    """Run every active connection's incremental sync now (SyncAll); --force runs it even while the
    engine is stopped (ForceSyncAll); --from-start reads every record."""
    as_json = kw.pop("as_json")
    api = api_from(kw)
    if from_start:
        name, path = "sync from the start", "/api/v1/erpsync/engine/sync-from-start"
    else:
        name = "ForceSyncAll" if force else "SyncAll"
        path = f"{ERPSYNC}/{name}"
    answer = run(api, lambda: api.json("POST", path))
    if as_json:
        echo_json(answer)
    if not answer["IsOk"]:
        hint = {
            "SyncNotEnabled": "[sync] enabled = true in the workers' configuration",
            "NoLiveWorker": "start erpsync worker (or erpsync serve) with [sync] enabled = true",
        }.get(answer.get("ErrorCode", ""), "erpsync engine start, or erpsync sync-all --force")
        raise CliError(f"{name}: {answer['UserExplanation']}", hint=hint)
    if not as_json:
        click.echo(f"{name}: {answer['UserExplanation']} {answer['TechExplanation']}")
