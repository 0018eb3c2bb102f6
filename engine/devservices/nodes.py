"""Private RabbitMQ nodes and PostgreSQL clusters on their own ports.

Fault tests start, stop, kill and restart throwaway ones (temporary directories, free ports); they
never touch the shared services on the standard ports. :mod:`engine.devservices.services` keeps
one of each under the project's ``.run/`` as the default services of ``make run``/``make test``.
Recipes: ../shared/docs/test-infrastructure.md (Debian packages). As root, PostgreSQL runs as the
``postgres`` user (initdb refuses root) and Debian's ``rabbitmq-server`` drops to ``rabbitmq``, so
their directories belong to those users; otherwise both run as the current user.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from engine.devservices.ports import free_port

PG_BIN = (
    Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
    if list(Path("/usr/lib/postgresql").glob("*/bin"))
    else Path("/usr/lib/postgresql/15/bin")
)
# Debian's wrappers in /usr/sbin switch to the rabbitmq user and refuse anyone but root/rabbitmq;
# the scripts behind them run as whoever calls them.
RABBITMQ_LIB_BIN = Path("/usr/lib/rabbitmq/bin")


def is_root() -> bool:
    return os.geteuid() == 0


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host, port, timeout=0.2) == up:
            return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'} within {timeout}s")


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()


def _rabbit_command(name: str) -> str:
    if is_root() or not (RABBITMQ_LIB_BIN / name).exists():
        return shutil.which(name) or f"/usr/sbin/{name}"
    return str(RABBITMQ_LIB_BIN / name)


@dataclass
class RabbitNode:
    """A private RabbitMQ node. ``start()``/``stop()`` the whole node; ``kill()`` for a crash."""

    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    name: str = field(default_factory=lambda: f"faults{uuid.uuid4().hex[:8]}@localhost")
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erpsync-rmq-")))
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

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

    def running(self) -> bool:
        """The node's process is alive (its AMQP port may still be coming up)."""
        return _pid_alive(self.base / "pid")

    def start(self, timeout: float = 90) -> None:
        (self.base / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.base / "log").mkdir(parents=True, exist_ok=True)
        (self.base / "plugins").write_text("[].")
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        if is_root():
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], check=True)
        pid_file = self.base / "pid"
        if pid_file.exists() and not _pid_alive(pid_file):
            # A crash leaves its pid file; `rabbitmqctl wait` must not read the dead pid.
            pid_file.unlink()
        subprocess.run(
            [_rabbit_command("rabbitmq-server"), "-detached"],
            env=self._env(),
            check=True,
            capture_output=True,
        )
        waited = subprocess.run(
            [
                _rabbit_command("rabbitmqctl"),
                "-n",
                self.name,
                "wait",
                str(pid_file),
                "--timeout",
                str(int(timeout)),
            ],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
        if waited.returncode != 0:
            raise RuntimeError(
                f"RabbitMQ node {self.name} did not start (rabbitmqctl wait exited "
                f"{waited.returncode}): {waited.stdout[-500:]} {waited.stderr[-500:]}\n"
                f"--- node log, last lines:\n{self.log_tail()}"
            )
        _wait_port(self.host, self.port, up=True, timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the node's own log (what a failed start or restart says)."""
        logs = sorted((self.base / "log").glob("*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace")[-chars:] if logs else "(no log)"

    def ctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [_rabbit_command("rabbitmqctl"), "-n", self.name, *args],
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
        _wait_port(self.host, self.port, up=False, timeout=30)

    def start_app(self) -> None:
        self.ctl("start_app")
        _wait_port(self.host, self.port, up=True, timeout=60)

    def kill(self) -> None:
        """SIGKILL the node (a crash), and wait until its process is gone."""
        pid_file = self.base / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        _wait_port(self.host, self.port, up=False, timeout=30)
        deadline = time.monotonic() + 30
        while _pid_alive(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)

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
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _as_postgres(self, command: str, timeout: float = 60) -> str:
        argv = ["su", "postgres", "-c", command] if is_root() else ["sh", "-c", command]
        result = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)
        return result.stdout

    def running(self) -> bool:
        return _pid_alive(self.data / "postmaster.pid")

    def init(self) -> None:
        if is_root():
            subprocess.run(["chown", "postgres", str(self.base)], check=True)
        self._as_postgres(f"{PG_BIN}/initdb -D {self.data} -A trust -U postgres")

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        listen = "localhost" if self.host == "localhost" else self.host
        options = shlex.quote(f"-p {self.port} -k {self.base} -c listen_addresses={listen}")
        self._as_postgres(
            f"{PG_BIN}/pg_ctl -D {self.data} -o {options} -l {self.base}/log -w start"
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` over the cluster's Unix socket as ``postgres``."""
        return self._as_postgres(
            f"{PG_BIN}/psql -h {self.base} -p {self.port} -U postgres -d {database} -Atqc "
            + shlex.quote(sql)
        )

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` is a crash-like stop."""
        self._as_postgres(f"{PG_BIN}/pg_ctl -D {self.data} -m {mode} -w stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
