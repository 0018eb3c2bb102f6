"""How the operator commands print: rich tables on a terminal, JSON for scripts."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text


def console() -> Console:
    """Standard output; off a terminal lines stay long rather than wrapping at 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)


def echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def state_text(state: str) -> Text:
    """A task state, coloured."""
    style = {"Succeeded": "green", "Failed": "red", "Started": "blue"}.get(state, "")
    return Text(state, style=style)


def when(iso: str | None) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS``."""
    return "" if not iso else iso.replace("T", " ")[:19]


def print_task(detail: dict[str, Any]) -> None:
    """One task's detail: state, progress, outcomes per target and first failures."""
    task, stats = detail["Task"], detail["Task"]["Statistics"]
    out = console()
    out.print(
        Text.assemble(
            (f"Task {task['Id']}", "bold"),
            "  ",
            state_text(task["State"]),
            f"  {task['Description']}",
        )
    )
    total = "?" if stats["TotalRecords"] is None else stats["TotalRecords"]
    left = stats["Chunks"] - stats["ChunksDone"]
    running = f", {left} still to run" if task["State"] == "Started" and left > 0 else ""
    out.print(  # records count when read from the source; push units to the targets follow
        f"progress {task['ProgressPercent']}% ({stats['DoneRecords']} of {total} records read, "
        f"{stats['ChunksDone']} of {stats['Chunks']} chunks and push units done{running}); "
        f"created {when(task['Created'])}, finished {when(stats['Finished']) or '-'}",
        highlight=False,
    )
    if task["Response"]:
        out.print(f"response: {task['Response']}", highlight=False)
    targets = Table(title="Outcomes per target", title_justify="left", box=None, pad_edge=False)
    for column in ("connection", "records", "updated", "unchanged", "created", "failed", "other"):
        targets.add_column(column, justify="left" if column in ("connection", "other") else "right")
    targets.add_column("fields changed", justify="right")
    known = ("updated", "unchanged", "created", "failed")
    for target in detail["Targets"]:
        outcomes = target["Outcomes"]
        cid = target["ConnectionId"]
        other = ", ".join(f"{k}: {v}" for k, v in outcomes.items() if k not in known)
        targets.add_row(
            target["Name"] if cid is None else f"{cid} {target['Name']}",
            str(target["Records"]),
            *(str(outcomes.get(k, 0)) for k in known),
            other,
            str(target["FieldsChanged"]),
        )
    out.print(targets)
    if detail["Failures"]:
        failures = Table(title="First failures", title_justify="left", box=None, pad_edge=False)
        for column in ("key", "connection", "status", "reason"):
            failures.add_column(column)
        for f in detail["Failures"]:
            failures.add_row(
                str(f["InternalKeyId"]),
                "" if f["ConnectionId"] is None else f"{f['ConnectionId']} {f['ConnectionName']}",
                f["Status"],
                f["Error"] or "",
            )
        out.print(failures)
