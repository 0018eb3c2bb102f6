"""System packages that `make run` and `make test` need, installed with apt-get when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def _command(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None or Path("/usr/sbin", name).exists()


def _postgres_server() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


# Debian package -> "is it installed?"
CHECKS: dict[str, Callable[[], bool]] = {
    "postgresql": _postgres_server,
    "rabbitmq-server": _command("rabbitmq-server"),
    "amqp-tools": _command("amqp-publish"),  # tests publish with a second AMQP client
    # The dashboard test drives Debian's Chromium (/usr/bin/chromium), never a downloaded build.
    "chromium": lambda: Path("/usr/bin/chromium").exists(),
    "wrk": _command("wrk"),  # load generator of the benchmarks
}
SETS = {
    # `make run` needs the servers only when it starts private ones (services.py asks for them).
    "test": ("postgresql", "rabbitmq-server", "amqp-tools", "chromium", "wrk"),
}


class MissingPackages(Exception):
    """Packages are missing and this process may not install them; the message says how."""


def missing(packages: Iterable[str]) -> list[str]:
    return [name for name in packages if not CHECKS[name]()]


def install_command(packages: Iterable[str]) -> str:
    names = " ".join(packages)
    return f"apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {names}"


def ensure(packages: Iterable[str], say: Callable[[str], None]) -> None:
    """Install what is missing with apt-get (as root), or raise :class:`MissingPackages`."""
    absent = missing(packages)
    if not absent:
        return
    if os.geteuid() != 0:
        raise MissingPackages(
            f"missing system packages: {' '.join(absent)}. "
            f"Run as root: sudo sh -c '{install_command(absent)}'"
        )
    say(f"installing system packages: {' '.join(absent)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *absent]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
            raise MissingPackages(f"`{' '.join(argv)}` failed (exit {result.returncode})")
    still = missing(absent)
    if still:
        raise MissingPackages(f"installed, but still not found: {' '.join(still)}")
