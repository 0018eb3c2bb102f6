"""The operator commands' HTTP client: where the API is, who we are, and its errors as hints.

The operator commands (``resync``, ``tasks``, ``synclog``) talk to a running service over its
HTTP API (ForceResyncBatchTask, the Batch agent and the read-only ``/api/v1/erpsync`` endpoints),
so they work from any machine that reaches the API and need no database or broker credentials.
The API URL comes from ``--url``, ``ERPSYNC_URL`` or the configuration's ``[server]``; the user
from ``--user`` or ``ERPSYNC_USER``; the password from ``ERPSYNC_PASSWORD``,
``--password-stdin`` or a prompt. Passwords are never echoed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
import orjson

from engine.cli.common import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    CliError,
    config_path_option,
)
from engine.cli.output import echo_json
from engine.settings import ConfigError, load_settings

T = TypeVar("T")

ERPSYNC = "/api/v1/Agents/ErpSync"
RESYNC = f"{ERPSYNC}/ForceResyncBatchTask"
TASK_INFO = "/api/v1/Agents/Batch/GetBatchTaskInfo"
STOP = "/api/v1/Agents/Batch/StopBatchJob"
RETRY_FAILED = "/api/v1/Agents/ErpSync/RetryFailed"
DASHBOARD = "/api/v1/erpsync"


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

    async def request(
        self, method: str, path: str, *, total_timeout: float = 30, **kw: Any
    ) -> Reply:
        auth = aiohttp.BasicAuth(self.user, self.password)
        timeout = aiohttp.ClientTimeout(total=total_timeout)
        try:
            async with (
                aiohttp.ClientSession(self.url, auth=auth, timeout=timeout) as http,
                http.request(method, path, **kw) as response,
            ):
                return Reply(response.status, dict(response.headers), await response.read())
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise CliError(
                f"cannot reach the erpsync API at {self.url} ({type(exc).__name__})",
                EXIT_UNAVAILABLE,
                hint="start it with `erpsync serve`, or point --url / ERPSYNC_URL at it",
            ) from exc

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        reply = await self.request(method, path, **kw)
        if reply.status >= 400:
            raise self.error(reply.status, reply.body)
        return orjson.loads(reply.body) if reply.body else None

    def error(self, status: int, body: bytes) -> CliError:
        """The error for a refused request: the API's message and a hint for the status."""
        if status == 401:
            return CliError(
                f"the API at {self.url} refused the credentials of user {self.user!r}",
                hint="set --user / ERPSYNC_USER and ERPSYNC_PASSWORD (or --password-stdin)",
            )
        return CliError(_error_message(status, body), hint=_hint(status))


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
        raise CliError(
            f"invalid configuration\n{exc}",
            EXIT_CONFIG,
            hint="fix the file or pass --url / ERPSYNC_URL",
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
    raise CliError("no password", hint="set ERPSYNC_PASSWORD or pass --password-stdin")


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every operator command takes: where the API is, who we are, the output."""
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
        config_path_option(
            "Configuration file, read for the API address when --url is not given.",
            show_default=False,
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def api_from(kw: dict[str, Any]) -> Api:
    """Build the client from the shared options (removing them from ``kw``)."""
    url, config_path = kw.pop("url"), kw.pop("config_path")
    url = url or _default_url(config_path)
    user = kw.pop("user")
    if not user:
        raise CliError("no user name", hint="pass --user or set ERPSYNC_USER")
    return Api(url.rstrip("/"), user, _password(kw.pop("password_stdin")), kw.pop("debug"))


def run(api: Api, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one call against the API: Ctrl-C exits 130; tracebacks only with ``--debug``."""
    try:
        return asyncio.run(factory())
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except CliError as exc:
        if api.debug and exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise
    except Exception as exc:
        if api.debug:
            raise
        raise CliError(
            f"unexpected error: {type(exc).__name__}: {exc}", hint="rerun with --debug"
        ) from exc


def get_listing(kw: dict[str, Any], path: str, query: dict[str, str], empty: str) -> list[Any]:
    """GET a list from the API; print it as JSON (``--json``) or ``empty`` when there is none.

    Returns the rows still to be shown as a table (none once printed).
    """
    as_json = kw.pop("as_json")
    api = api_from(kw)
    rows: list[Any] = run(api, lambda: api.json("GET", path, params=query))
    if as_json:
        echo_json(rows)
        return []
    if not rows:
        click.echo(empty)
    return rows
