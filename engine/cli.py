"""The ``erpsync`` command line."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from engine import cli_ops
from engine.cli_connectors import connectors
from engine.keyregistry.command import keys_group
from engine.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings

T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3

config_option: Callable[[Callable[..., None]], Callable[..., None]] = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("ERPSYNC_CONFIG", str(DEFAULT_CONFIG)),
    show_default="$ERPSYNC_CONFIG or config/erpsync.toml",
    help="TOML configuration file.",
)


class Failure(click.ClickException):
    """A one-line error with an exit code, printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"erpsync: {self.format_message()}", err=True)


def _settings(config_path: Path) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise Failure(f"invalid configuration\n{exc}", EXIT_CONFIG) from None


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="erpsync")
def main() -> None:
    """erpsync: SuperOffice-compatible ERP force-resync service."""


port_option = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen on this port instead of the configured one (0: any free port).",
)


@main.command()
@config_option
@port_option
def serve(config_path: Path, port: int | None) -> None:
    """Run the front door and the engine in one process."""
    _serve(config_path, api=True, engine=True, port=port)


@main.command()
@config_option
@port_option
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Front door processes sharing the port (SO_REUSEPORT); each has its own pool and "
    "broker connection. Needs a fixed port. Default: server.processes (1).",
)
def api(config_path: Path, port: int | None, processes: int | None) -> None:
    """Run the HTTP front door only (no engine)."""
    _serve(config_path, api=True, engine=False, port=port, processes=processes)


@main.command()
@config_option
@port_option
def worker(config_path: Path, port: int | None) -> None:
    """Run the engine only; /health/live and /health/ready on worker.port (default 8081).

    Run as many as you like; on one host give each its own --port (or worker.port = 0).
    """
    _serve(config_path, api=False, engine=True, port=port)


def _serve(
    config_path: Path, *, api: bool, engine: bool, port: int | None, processes: int | None = 1
) -> None:
    from engine.observability.logging import configure
    from engine.preflight import ServiceUnavailable, check_services

    settings = _settings(config_path)
    configure(settings.logging)
    try:
        _run(lambda: check_services(settings))
    except ServiceUnavailable as exc:
        raise Failure(str(exc), EXIT_UNAVAILABLE) from None
    if api:
        host, listen_port = settings.server.host, settings.server.port
        # HTTP requests get the server's timeout; in-flight chunks drain in parallel.
        http_timeout = settings.server.shutdown_timeout
    else:
        host = settings.worker.host or settings.server.host
        listen_port = settings.worker.port
        http_timeout = min(settings.server.shutdown_timeout, 2.0)  # health probes only
    bind_port = listen_port if port is None else port
    processes = settings.server.processes if processes is None else processes
    if processes > 1:
        if bind_port == 0:
            raise Failure("--processes needs a fixed port (not 0)", EXIT_CONFIG)
        from engine.processes import run_forked

        def child() -> None:
            try:
                _run_app(
                    settings, host, bind_port, http_timeout, api=api, engine=engine, shared=True
                )
            except click.ClickException as exc:
                exc.show()
                sys.exit(exc.exit_code)

        sys.exit(run_forked(processes, child))
    _run_app(settings, host, bind_port, http_timeout, api=api, engine=engine, shared=False)


def _run_app(
    settings: Settings,
    host: str,
    port: int,
    http_timeout: float,
    *,
    api: bool,
    engine: bool,
    shared: bool,
) -> None:
    from aiohttp import web

    from engine.app import StartupError, create_app, freeze_heap_after_startup
    from engine.eventloop import new_event_loop

    app = create_app(settings, api=api, engine=engine)
    if settings.server.gc_freeze:
        freeze_heap_after_startup(app)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            shutdown_timeout=http_timeout,
            print=lambda msg: click.echo(msg, err=True),
            access_log=None,
            loop=new_event_loop(settings.server.uvloop),
            reuse_port=shared or None,
        )
    except StartupError as exc:
        raise Failure(str(exc), EXIT_UNAVAILABLE) from None
    except OSError as exc:  # e.g. the port is taken
        raise Failure(
            f"cannot listen on {host}:{port}: {exc.strerror}. "
            "Pick another with --port (0 = any free port)",
            EXIT_UNAVAILABLE,
        ) from None


@main.command()
@config_option
def migrate(config_path: Path) -> None:
    """Create the database if needed and apply pending migrations."""
    from engine.preflight import ServiceUnavailable, run_migrations

    settings = _settings(config_path)
    try:
        applied = _run(lambda: run_migrations(settings))
    except ServiceUnavailable as exc:
        raise Failure(str(exc), EXIT_UNAVAILABLE) from None
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database schema is up to date")


@main.group()
def demo() -> None:
    """Demo data in the local PostgreSQL."""


@demo.command("seed")
@config_option
@click.option("--reset", is_flag=True, help="Drop the demo data (and all keys/tasks) first.")
def demo_seed(config_path: Path, reset: bool) -> None:
    """Create and fill the demo CRM and ERP schemas when empty (idempotent)."""
    from engine.preflight import ServiceUnavailable, seed_demo

    settings = _settings(config_path)
    try:
        report = _run(lambda: seed_demo(settings, reset=reset))
    except ServiceUnavailable as exc:
        raise Failure(str(exc), EXIT_UNAVAILABLE) from None
    except RuntimeError as exc:
        raise Failure(str(exc)) from None
    verb = "seeded" if report.created else "already present"
    click.echo(
        f"demo data {verb}: {report.companies} companies, {report.persons} persons, "
        f"{report.internal_keys} internal keys, {report.links} links"
    )


@main.command("hash-password")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def hash_password_cmd(password_stdin: bool) -> None:
    """Print a password hash for [[auth.users]] password_hash."""
    from engine.api.passwords import hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise Failure("passwords differ")
    if not password:
        raise Failure("empty password")
    click.echo(hash_password(password))


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration file and exit."""
    settings = _settings(config_path)
    click.echo(
        f"{config_path}: ok ({len(settings.connections)} ERP connections, "
        f"{len(settings.auth.users)} users)"
    )


from engine.cli_dlq import dlq  # noqa: E402  (cli_dlq imports helpers from this module)

main.add_command(connectors)
main.add_command(dlq)
main.add_command(cli_ops.resync)
main.add_command(cli_ops.tasks)
main.add_command(cli_ops.synclog)
main.add_command(cli_ops.config_reference)
main.add_command(keys_group(config_option, _settings, Failure))

if __name__ == "__main__":  # pragma: no cover
    main()
