"""``erpsync resync``: start a force resync through the API, and follow its progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from engine.cli.client import (
    DASHBOARD,
    ERPSYNC,
    RESYNC,
    TASK_INFO,
    Api,
    api_from,
    api_options,
    run,
)
from engine.cli.common import EXIT_TASK_FAILED, CliError
from engine.cli.output import echo_json, print_task

TERMINAL = ("Succeeded", "Failed", "SucceededManualCleanup")
POLL_INTERVAL = 0.5
PLAIN_INTERVAL = 10.0
SYNC_HTTP_TIMEOUT = 3600.0
"""The synchronous calls answer by the server's ``server.sync_timeout``; this only bounds a
server that never answers."""


def _parse_keys(text: str, origin: str) -> list[int]:
    keys = []
    for token in text.replace(",", " ").replace(";", " ").split():
        try:
            value = int(token)
        except ValueError:
            raise CliError(f"{origin}: {token[:30]!r} is not an internal key id") from None
        if value <= 0:
            raise CliError(f"{origin}: internal key ids are positive, got {value}")
        keys.append(value)
    return keys


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rec/s", style="cyan")


@click.command("resync")
@click.option("--from", "source", type=int, required=True, help="Source connection id (0 = CRM).")
@click.option("--keys", help="Comma-separated internal key ids.")
@click.option(
    "--keys-file",
    type=click.File("r"),
    help="File of internal key ids (whitespace/comma separated; '-' = stdin).",
)
@click.option("--all", "all_keys", is_flag=True, help="Every record linked to the source.")
@click.option(
    "--external",
    help="Comma-separated ERP keys on the --from connection (with --actor-type) instead of "
    "internal keys; ERP keys not linked are reported per key. Synchronous.",
)
@click.option(
    "--actor-type",
    help="The ERP actor type of the --external keys (e.g. Customer); with --all instead, every "
    "record linked to an actor of that type on the --from connection (ForceResyncExternal "
    "without keys). Synchronous.",
)
@click.option(
    "--no-blank-values",
    is_flag=True,
    help="A blank source value (empty or null) never overwrites a non-blank target value. "
    "Synchronous.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Synchronous: ForceResync, answered when the task has ended (at most "
    "server.sync_max_keys records; the server answers by server.sync_timeout).",
)
@click.option("--follow", is_flag=True, help="Show progress until the task ends.")
@api_options
def resync(
    source: int,
    keys: str | None,
    keys_file: Any,
    all_keys: bool,
    external: str | None,
    actor_type: str | None,
    no_blank_values: bool,
    wait: bool,
    follow: bool,
    **kw: Any,
) -> None:
    """Start a force resync through the API (and follow it), or run one and wait for it.

    Exit code with --follow: 0 when the task Succeeded, 4 when it Failed (also when every
    given key was unknown: nothing was resynced). --wait, --external and --no-blank-values use
    the synchronous calls (ForceResync, ForceResyncNoBlankValues, ForceResyncExternal,
    ForceResyncExternalNoBlankValues): exit 0 when IsOk, 4 otherwise (a timeout included).
    """
    as_json = kw.pop("as_json")
    if external is not None or (actor_type is not None and all_keys):
        if external is not None and (keys is not None or keys_file is not None or all_keys):
            raise click.UsageError("--external takes ERP keys: not with --keys/--keys-file/--all")
        if not actor_type:
            raise click.UsageError("--external needs --actor-type (the ERP actor type)")
        if follow:
            raise click.UsageError("--external is synchronous: --follow does not apply")
        erp_keys = [k.strip() for k in (external or "").split(",") if k.strip()]
        if external is not None and not erp_keys:
            raise CliError("no ERP keys given in --external")
        name = "ForceResyncExternal" + ("NoBlankValues" if no_blank_values else "")
        body: dict[str, Any] = {
            "ErpConnectionId": source,
            "ErpActorType": actor_type,
            "ExternalKeys": erp_keys,
        }
        api = api_from(kw)
        run(api, lambda: _synchronous(api, name, body, as_json))
        return
    if actor_type is not None:
        raise click.UsageError("--actor-type goes with --external or --all")
    if [keys is not None, keys_file is not None, all_keys].count(True) != 1:
        raise click.UsageError("give exactly one of --keys, --keys-file or --all")
    if follow and (wait or no_blank_values):
        raise click.UsageError("--wait and --no-blank-values are synchronous: not with --follow")
    if keys is not None:
        ids = _parse_keys(keys, "--keys")
    elif keys_file is not None:
        ids = _parse_keys(keys_file.read(), getattr(keys_file, "name", "--keys-file"))
    else:
        ids = []
    if not all_keys and not ids:
        raise CliError("no internal key ids given", hint="use --all to resync every linked record")
    api = api_from(kw)
    if wait or no_blank_values:
        name = "ForceResync" + ("NoBlankValues" if no_blank_values else "")
        body = {"ErpConnectionId": source, "InternalKeyIds": ids}
        run(api, lambda: _synchronous(api, name, body, as_json))
        return
    run(api, lambda: _resync(api, source, ids, follow, as_json))


async def _synchronous(api: Api, name: str, body: dict[str, Any], as_json: bool) -> None:
    """POST a synchronous ForceResync* and print its PluginResponse; exit 4 unless IsOk."""
    response = await api.request(
        "POST", f"{ERPSYNC}/{name}", json=body, total_timeout=SYNC_HTTP_TIMEOUT
    )
    if response.status != 200:
        raise api.error(response.status, response.body)
    answer: dict[str, Any] = orjson.loads(response.body)
    task_id = response.headers.get("X-Batch-Task-Id")
    if as_json:
        echo_json({"TaskId": None if task_id is None else int(task_id), **answer})
    else:
        head = f"{name}: {'OK' if answer['IsOk'] else 'NOT OK'}"
        if answer.get("ErrorCode"):
            head += f" ({answer['ErrorCode']})"
        if task_id is not None:
            head += f", task {task_id}"
        click.echo(head)
        click.echo(answer.get("TechExplanation") or answer.get("UserExplanation") or "")
    if not answer["IsOk"]:
        raise SystemExit(EXIT_TASK_FAILED)


async def _resync(api: Api, source: int, ids: list[int], follow: bool, as_json: bool) -> None:
    response = await api.request(
        "POST", RESYNC, json={"ErpConnectionId": source, "InternalKeyIds": ids}
    )
    if response.status != 204:
        raise api.error(response.status, response.body)
    task_id = int(response.headers["X-Batch-Task-Id"])
    what = f"{len(ids)} record{'s' if len(ids) != 1 else ''}" if ids else "every linked record"
    queued = f"queued task {task_id} ({what} from connection {source})"
    if not follow:
        if as_json:
            echo_json({"Id": task_id})
        else:
            click.echo(queued)
        return
    if not as_json:
        click.echo(queued, err=True)
    try:
        info = await _follow(api, task_id, show=not as_json)
    except asyncio.CancelledError:  # Ctrl-C: stop watching, the task itself goes on
        click.echo(
            f"stopped following; task {task_id} goes on (erpsync tasks show {task_id})", err=True
        )
        raise
    detail = await api.json("GET", f"{DASHBOARD}/tasks/{task_id}")
    if as_json:
        echo_json(detail)
    else:
        print_task(detail)
    if info["State"] != "Succeeded":
        raise SystemExit(EXIT_TASK_FAILED)


async def _follow(api: Api, task_id: int, *, show: bool) -> dict[str, Any]:
    """Poll the task until it ends, showing progress on standard error.

    On a terminal: a live bar (records done/total, rate, ETA, failures). Elsewhere (logs, CI):
    a plain line when the state changes and at most every ``PLAIN_INTERVAL`` seconds.
    """
    console = Console(stderr=True)
    live = show and console.is_interactive
    progress = Progress(
        TextColumn("[bold]task {task.fields[id]}[/] {task.fields[state]:<9}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.fields[total_text]} records"),
        _RateColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]}"),
        console=console,
        disable=not live,
    )
    printed: tuple[str, float] = ("", 0.0)
    with progress:
        bar = progress.add_task("", total=None, id=task_id, state="New", total_text="?", failed="")
        while True:
            info: dict[str, Any] = await api.json("POST", TASK_INFO, json={"Id": task_id})
            stats = info["Statistics"]
            total, failed, state = stats["TotalRecords"], stats["Failed"], info["State"]
            total_text = "?" if total is None else f"{total:,}"
            progress.update(
                bar,
                completed=stats["DoneRecords"],
                total=total,
                state=state,
                total_text=total_text,
                failed=f"[red]{failed} failed[/]" if failed else "",
            )
            now = time.monotonic()
            if show and not live and (state != printed[0] or now - printed[1] >= PLAIN_INTERVAL):
                click.echo(
                    f"task {task_id}: {state}, {stats['DoneRecords']:,}/{total_text} records, "
                    f"{failed} failed",
                    err=True,
                )
                printed = (state, now)
            if state in TERMINAL:
                return info
            await asyncio.sleep(POLL_INTERVAL)
