"""Operators' commands: ``resync``, ``tasks list|show``, ``synclog`` and ``config-reference``.

They talk to a running service over its HTTP API (ForceResyncBatchTask, the Batch agent and the
read-only ``/api/v1/erpsync`` endpoints), so they work from any machine that reaches the API and
need no database or broker credentials. The API URL comes from ``--url``, ``ERPSYNC_URL`` or the
configuration's ``[server]``; the user from ``--user`` or ``ERPSYNC_USER``; the password from
``ERPSYNC_PASSWORD``, ``--password-stdin`` or a prompt. Passwords are never echoed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from engine.settings import DEFAULT_CONFIG, ConfigError, load_settings

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3
EXIT_TASK_FAILED = 4
EXIT_INTERRUPTED = 130
TERMINAL = ("Succeeded", "Failed", "SucceededManualCleanup")
RESYNC = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
TASK_INFO = "/api/v1/Agents/Batch/GetBatchTaskInfo"
DASHBOARD = "/api/v1/erpsync"
POLL_INTERVAL = 0.5
PLAIN_INTERVAL = 10.0


class OpsError(click.ClickException):
    """One clear line, a hint, an exit code; a traceback only with ``--debug``."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"erpsync: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


@dataclass(frozen=True)
class Reply:
    """A response read in full."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Api:
    """Where the API is and who we are."""

    url: str
    user: str
    password: str
    debug: bool

    async def request(self, method: str, path: str, **kw: Any) -> Reply:
        auth = aiohttp.BasicAuth(self.user, self.password)
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with (
                aiohttp.ClientSession(self.url, auth=auth, timeout=timeout) as http,
                http.request(method, path, **kw) as response,
            ):
                return Reply(response.status, dict(response.headers), await response.read())
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise OpsError(
                f"cannot reach the erpsync API at {self.url} ({type(exc).__name__})",
                "start it with `erpsync serve`, or point --url / ERPSYNC_URL at it",
                EXIT_UNAVAILABLE,
            ) from exc

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        reply = await self.request(method, path, **kw)
        if reply.status >= 400:
            raise _response_error(self, reply.status, reply.body)
        return orjson.loads(reply.body) if reply.body else None


def _error_message(status: int, body: bytes) -> str:
    try:
        message = orjson.loads(body).get("ErrorMessage")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return f"{status}: {message or body[:200].decode(errors='replace') or 'no details'}"


def _hint(status: int) -> str:
    if status == 404:
        return "list tasks with `erpsync tasks list`"
    if status == 503:
        return "the service cannot reach RabbitMQ or PostgreSQL; check /health/ready"
    if status == 413:
        return "send fewer ids per call (server.max_internal_key_ids), or use --all"
    if status == 400:
        return "check the arguments (see --help)"
    return ""


def _default_url(config_path: Path) -> str:
    if not config_path.exists():
        return "http://127.0.0.1:8080"
    try:
        server = load_settings(config_path).server
    except ConfigError as exc:
        raise OpsError(
            f"invalid configuration\n{exc}", "fix the file or pass --url / ERPSYNC_URL", 2
        ) from None
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host  # noqa: S104
    return f"http://{host}:{server.port}"


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    env = os.environ.get("ERPSYNC_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    raise OpsError("no password", "set ERPSYNC_PASSWORD or pass --password-stdin")


def _api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--url",
            envvar="ERPSYNC_URL",
            help="API base URL [$ERPSYNC_URL, else the configuration's [server]].",
        ),
        click.option("--user", envvar="ERPSYNC_USER", default="", help="User [$ERPSYNC_USER]."),
        click.option(
            "--password-stdin",
            is_flag=True,
            help="Read the password from standard input [else $ERPSYNC_PASSWORD or a prompt].",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=lambda: os.environ.get("ERPSYNC_CONFIG", str(DEFAULT_CONFIG)),
            help="Configuration file, read for the API address when --url is not given.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _api(kw: dict[str, Any]) -> Api:
    """Build the client from the shared options (removing them from ``kw``)."""
    url, config_path = kw.pop("url"), kw.pop("config_path")
    url = url or _default_url(config_path)
    user = kw.pop("user")
    if not user:
        raise OpsError("no user name", "pass --user or set ERPSYNC_USER")
    return Api(url.rstrip("/"), user, _password(kw.pop("password_stdin")), kw.pop("debug"))


def _run(api: Api, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(factory())
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except OpsError as exc:
        if api.debug and exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise
    except Exception as exc:
        if api.debug:
            raise
        raise OpsError(
            f"unexpected error: {type(exc).__name__}: {exc}", "rerun with --debug"
        ) from exc


def _console() -> Console:
    # Off a terminal keep lines long rather than wrapping tables at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


# ---- resync ---------------------------------------------------------------------------------


def _parse_keys(text: str, origin: str) -> list[int]:
    keys = []
    for token in text.replace(",", " ").replace(";", " ").split():
        try:
            value = int(token)
        except ValueError:
            raise OpsError(f"{origin}: {token[:30]!r} is not an internal key id") from None
        if value <= 0:
            raise OpsError(f"{origin}: internal key ids are positive, got {value}")
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
@click.option("--follow", is_flag=True, help="Show progress until the task ends.")
@_api_options
def resync(
    source: int,
    keys: str | None,
    keys_file: Any,
    all_keys: bool,
    follow: bool,
    **kw: Any,
) -> None:
    """Start a force resync through the API (and follow it).

    Exit code with --follow: 0 when the task Succeeded, 4 when it Failed.
    """
    as_json = kw.pop("as_json")
    if [keys is not None, keys_file is not None, all_keys].count(True) != 1:
        raise click.UsageError("give exactly one of --keys, --keys-file or --all")
    if keys is not None:
        ids = _parse_keys(keys, "--keys")
    elif keys_file is not None:
        ids = _parse_keys(keys_file.read(), getattr(keys_file, "name", "--keys-file"))
    else:
        ids = []
    if not all_keys and not ids:
        raise OpsError("no internal key ids given", "use --all to resync every linked record")
    api = _api(kw)
    _run(api, lambda: _resync(api, source, ids, follow, as_json))


async def _resync(api: Api, source: int, ids: list[int], follow: bool, as_json: bool) -> None:
    response = await api.request(
        "POST", RESYNC, json={"ErpConnectionId": source, "InternalKeyIds": ids}
    )
    if response.status != 204:
        raise _response_error(api, response.status, response.body)
    task_id = int(response.headers["X-Batch-Task-Id"])
    what = f"{len(ids)} record{'s' if len(ids) != 1 else ''}" if ids else "every linked record"
    queued = f"queued task {task_id} ({what} from connection {source})"
    if not follow:
        if as_json:
            _echo_json({"Id": task_id})
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
        _echo_json(detail)
    else:
        _print_task(detail)
    if info["State"] != "Succeeded":
        raise SystemExit(EXIT_TASK_FAILED)


def _response_error(api: Api, status: int, body: bytes) -> OpsError:
    if status == 401:
        return OpsError(
            f"the API at {api.url} refused the credentials of user {api.user!r}",
            "set --user / ERPSYNC_USER and ERPSYNC_PASSWORD (or --password-stdin)",
        )
    return OpsError(_error_message(status, body), _hint(status))


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


# ---- tasks and the sync log -----------------------------------------------------------------


def _state_text(state: str) -> Text:
    style = {"Succeeded": "green", "Failed": "red", "Started": "blue"}.get(state, "")
    return Text(state, style=style)


def _when(iso: str | None) -> str:
    return "" if not iso else iso.replace("T", " ")[:19]


def _print_task(detail: dict[str, Any]) -> None:
    task, stats = detail["Task"], detail["Task"]["Statistics"]
    console = _console()
    console.print(
        Text.assemble(
            (f"Task {task['Id']}", "bold"),
            "  ",
            _state_text(task["State"]),
            f"  {task['Description']}",
        )
    )
    total = "?" if stats["TotalRecords"] is None else stats["TotalRecords"]
    console.print(
        f"progress {task['ProgressPercent']}% ({stats['DoneRecords']} of {total} records, "
        f"chunks {stats['ChunksDone']} of {stats['Chunks']}); created {_when(task['Created'])}, "
        f"finished {_when(stats['Finished']) or '-'}",
        highlight=False,
    )
    if task["Response"]:
        console.print(f"response: {task['Response']}", highlight=False)
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
    console.print(targets)
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
        console.print(failures)


@click.group("tasks")
def tasks() -> None:
    """Batch tasks: list them, show one."""


@tasks.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["New", "Started", "Succeeded", "Failed", "SucceededManualCleanup"]),
    help="Only tasks in this state (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_api_options
def tasks_list(states: Sequence[str], limit: int, **kw: Any) -> None:
    """Recent batch tasks, newest first."""
    as_json = kw.pop("as_json")
    api = _api(kw)
    query = {"limit": str(limit)}
    if states:
        query["state"] = ",".join(states)
    rows = _run(api, lambda: api.json("GET", f"{DASHBOARD}/tasks", params=query))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no batch tasks")
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
            _state_text(t["State"]),
            f"{t['ProgressPercent']}%",
            f"{stats['DoneRecords']}/{total}",
            str(stats["Failed"]),
            _when(t["Created"]),
            t["Response"] or t["ProgressDescription"],
        )
    _console().print(table)


@tasks.command("show")
@click.argument("task_id", type=int)
@_api_options
def tasks_show(task_id: int, **kw: Any) -> None:
    """One task: its state, outcomes per target and its first failures."""
    as_json = kw.pop("as_json")
    api = _api(kw)
    detail = _run(api, lambda: api.json("GET", f"{DASHBOARD}/tasks/{task_id}"))
    if as_json:
        _echo_json(detail)
    else:
        _print_task(detail)


@click.command("synclog")
@click.option("--task", "task_id", type=int, help="Only changes made by this task.")
@click.option("--key", "key_id", type=int, help="Only changes of this internal key.")
@click.option("--connection", "connection_id", type=int, help="Only changes on this connection.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before", "before_id", type=int, help="Only changes older than this log id.")
@_api_options
def synclog(
    task_id: int | None,
    key_id: int | None,
    connection_id: int | None,
    limit: int,
    before_id: int | None,
    **kw: Any,
) -> None:
    """Field values the engine changed (old -> new), newest first.

    Page back with --before (the Id of the oldest change shown; see --json).
    """
    as_json = kw.pop("as_json")
    api = _api(kw)
    query = {"limit": str(limit)}
    filters = (
        ("task", task_id),
        ("key", key_id),
        ("connection", connection_id),
        ("before", before_id),
    )
    for name, value in filters:
        if value is not None:
            query[name] = str(value)
    rows = _run(api, lambda: api.json("GET", f"{DASHBOARD}/synclog", params=query))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no field changes")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("when", "task", "key", "connection", "field", "change"):
        table.add_column(column, justify="right" if column in ("task", "key") else "left")
    for r in rows:
        target = "CRM" if r["Direction"] == "to_crm" else "ERP"
        field = f"{r['ErpActorType']}.{r['ErpField']} ({r['CrmField']}) -> {target}"
        change = Text.assemble(
            (str(r["OldValue"]) if r["OldValue"] is not None else "(empty)", "dim"),
            " -> ",
            (str(r["NewValue"]) if r["NewValue"] is not None else "(empty)", "bold"),
        )
        table.add_row(
            _when(r["At"]),
            str(r["TaskId"] or ""),
            str(r["InternalKeyId"]),
            f"{r['ConnectionId']} {r['ConnectionName']}",
            field,
            change,
        )
    _console().print(table)


# ---- configuration reference ------------------------------------------------------------------

# Descriptions for settings fields whose model carries none (the models are shared code).
FIELD_DOCS = {
    "server.host": "Address the HTTP server binds to.",
    "server.port": "HTTP port (0 = any free port).",
    "database.url": "PostgreSQL URL of erpsync's own database (a secret: may hold a password).",
    "database.pool_min_size": "Connections the pool keeps open.",
    "database.pool_max_size": "Most connections the pool opens.",
    "database.connect_timeout": "Seconds to wait for a database connection.",
    "broker.url": "RabbitMQ URL (a secret: holds the password).",
    "broker.connect_timeout": "Seconds to wait for the broker connection.",
    "logging.level": "Lowest level logged.",
    "logging.format": "console, json, or auto (console on a terminal, JSON otherwise).",
    "auth.users": "Users allowed to call the API (Basic auth, or a dashboard session).",
    "auth.users[].name": "User name.",
    "auth.users[].password_hash": "Salted hash from `erpsync hash-password` (never the password).",
    "crm": (
        "Connection 0, the CRM every value flows through: the keys of a `connections` entry "
        "with `id = 0` and no `actor_types`."
    ),
    "connections": "The ERP connections (ids 1 and up).",
    "connections[].id": "Connection id (1 and up; 0 is the CRM); ErpConnectionId in requests.",
    "connections[].name": "Display name.",
    "connections[].settings": (
        "The connector's own settings (validated by its config model; secrets may come from "
        "ERPSYNC_CONNECTION_<ID>__<KEY>)."
    ),
    "connections[].actor_types": "ERP actor types synced on this connection and their mappings.",
    "connections[].actor_types[].erp": "The ERP actor type (Customer, Supplier, Person, ...).",
    "connections[].actor_types[].crm": "The CRM actor type it mirrors (Contact, Person, ...).",
    "connections[].actor_types[].fields": "ERP field key -> mapping.",
    "connections[].actor_types[].fields.<erp field>.crm": "The CRM field key.",
    "connections[].actor_types[].fields.<erp field>.direction": (
        "to_erp (CRM -> ERP), to_crm (ERP -> CRM), both, or none."
    ),
}


@dataclass(frozen=True)
class SettingDoc:
    """One documented configuration key."""

    key: str
    type: str
    default: str
    env: str
    description: str


def _type_name(annotation: Any) -> str:
    import enum
    import typing

    from pydantic import SecretStr

    origin = typing.get_origin(annotation)
    if annotation is SecretStr:
        return "secret string"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "table"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any, key: str) -> str:
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    from engine.settings import redact_url

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        value = redact_url(value.get_secret_value())
    if hasattr(value, "value"):
        value = value.value
    return "" if value in ({}, []) else f"`{value}`"


def settings_reference() -> list[SettingDoc]:
    """Every key of the configuration, walked from the pydantic models."""
    import typing

    from pydantic import BaseModel

    from engine.settings import _SECTIONS, _SHORT_ENV, Settings

    short = {f"{section}.{key}": name for name, (section, key) in _SHORT_ENV.items()}
    out: list[SettingDoc] = []

    def model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, ""
        item = args[0] if origin is list and args else args[1] if origin is dict else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, "[]" if origin is list else ".<erp field>"
        return None, ""

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            nested, suffix = model_of(field.annotation)
            description = field.description or FIELD_DOCS.get(key, "")
            if key == "crm":
                out.append(SettingDoc(key, "table", "required", "", description))
                continue  # the same keys as an entry of connections
            if nested is not None and prefix == "" and suffix == "":
                walk(nested, key)  # a section: [server], [database], ...
                continue
            section = key.split(".", 1)[0]
            env = ""
            if section in _SECTIONS and key.count(".") == 1:
                env = f"ERPSYNC_{key.replace('.', '__').upper()}"
                if key in short:
                    env = f"{short[key]}, {env}"
            out.append(
                SettingDoc(
                    key, _type_name(field.annotation), _default(field, key), env, description
                )
            )
            if nested is not None:
                walk(nested, key + suffix)

    walk(Settings, "")
    return out


def configuration_markdown() -> str:
    """docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `erpsync config-reference > docs/configuration.md`; "
        "a test keeps it in sync. -->",
        "",
        "erpsync reads one TOML file (`--config`, `$ERPSYNC_CONFIG`, default "
        "`config/erpsync.toml`) and then environment variables, which win. Any scalar of the "
        "`server`, `database`, `broker`, `engine` and `logging` sections can be set as "
        "`ERPSYNC_<SECTION>__<KEY>`; the common ones also have the short names listed. A "
        "connection's connector setting (a password, say) can be set as "
        "`ERPSYNC_CONNECTION_<ID>__<KEY>` (`<ID>` 0 is the CRM). `crm` takes the same keys as "
        "an entry of `connections`, with `id = 0` and no `actor_types`. Validate a file with "
        "`erpsync check-config`.",
        "",
        "The operator commands (`erpsync resync`, `tasks`, `synclog`) read only `[server]` "
        "from it, to find the API; they also take `--url`/`ERPSYNC_URL`, "
        "`--user`/`ERPSYNC_USER` and `ERPSYNC_PASSWORD`/`--password-stdin`.",
        "",
        "| key | type | default | environment | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for doc in settings_reference():
        env = ", ".join(f"`{e.strip()}`" for e in doc.env.split(",")) if doc.env else ""
        lines.append(f"| `{doc.key}` | {doc.type} | {doc.default} | {env} | {doc.description} |")
    return "\n".join(lines) + "\n"


@click.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown) generated from the settings models."""
    click.echo(configuration_markdown(), nl=False)
