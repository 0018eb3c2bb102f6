"""Throwaway RabbitMQ nodes and PostgreSQL clusters on their own ports, for fault tests.

Fault tests stop, kill and restart these; they never touch the shared services on the standard
ports. Recipes from ../shared/docs/test-infrastructure.md (Debian packages, run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = (
    Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
    if Path("/usr/lib/postgresql").exists()
    else Path("/usr/lib/postgresql/15/bin")
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            listening = s.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'} within {timeout}s")


@dataclass
class RabbitNode:
    """A private RabbitMQ node. ``start()``/``stop()`` the whole node; ``kill()`` for a crash."""

    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    name: str = field(default_factory=lambda: f"faults{uuid.uuid4().hex[:8]}@localhost")
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erpsync-rmq-")))

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins"),
            # The machine's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672; use our own.
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
        }

    def start(self, timeout: float = 90) -> None:
        (self.base / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.base / "log").mkdir(parents=True, exist_ok=True)
        (self.base / "plugins").write_text("[].")
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], check=True)
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self._env(), check=True, capture_output=True
        )
        subprocess.run(
            [
                "rabbitmqctl",
                "-n",
                self.name,
                "wait",
                str(self.base / "pid"),
                "--timeout",
                str(int(timeout)),
            ],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=timeout + 10,
        )
        _wait_port(self.port, up=True, timeout=timeout)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self._env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout

    def stop_app(self) -> None:
        """Outage with the Erlang node kept (fast to restart with ``start_app``)."""
        self.ctl("stop_app")
        _wait_port(self.port, up=False, timeout=30)

    def start_app(self) -> None:
        self.ctl("start_app")
        _wait_port(self.port, up=True, timeout=60)

    def kill(self) -> None:
        """SIGKILL the node (a crash)."""
        pid_file = self.base / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        _wait_port(self.port, up=False, timeout=30)

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.kill()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster (trust auth, user postgres)."""

    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erpsync-pg-")))

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, command: str, timeout: float = 60) -> None:
        subprocess.run(
            ["su", "postgres", "-c", command], check=True, capture_output=True, timeout=timeout
        )

    def init(self) -> None:
        subprocess.run(["chown", "postgres", str(self.base)], check=True)
        self._as_postgres(f"{PG_BIN}/initdb -D {self.data} -A trust -U postgres")

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        self._as_postgres(
            f"{PG_BIN}/pg_ctl -D {self.data} -o '-p {self.port} -k {self.base} "
            f"-c listen_addresses=127.0.0.1' -l {self.base}/log -w start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` is a crash-like stop."""
        self._as_postgres(f"{PG_BIN}/pg_ctl -D {self.data} -m {mode} -w stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
