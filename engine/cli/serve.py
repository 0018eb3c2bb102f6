"""``erpsync serve``, ``api`` and ``worker``: run the service."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    CliError,
    config_option,
    run,
    settings_from,
)
from engine.settings import Settings

port_option = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen on this port instead of the configured one (0: any free port).",
)


@click.command()
@config_option
@port_option
def serve(config_path: Path, port: int | None) -> None:
    """Run the front door and the engine in one process."""
    _serve(config_path, api=True, engine=True, port=port)


@click.command()
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


@click.command()
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
    from engine.runtime.preflight import ServiceUnavailable, check_services

    settings = settings_from(config_path)
    configure(settings.logging)
    try:
        run(lambda: check_services(settings))
    except ServiceUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
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
            raise CliError("--processes needs a fixed port (not 0)", EXIT_CONFIG)
        from engine.runtime.processes import run_forked

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
    from engine.runtime.eventloop import new_event_loop

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
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except OSError as exc:  # e.g. the port is taken
        raise CliError(
            f"cannot listen on {host}:{port}: {exc.strerror}. "
            "Pick another with --port (0 = any free port)",
            EXIT_UNAVAILABLE,
        ) from None
