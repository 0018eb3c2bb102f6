"""The default PostgreSQL and RabbitMQ of `make run` and `make test`.

A configured service that answers is used as it is. When nothing answers on a local URL
(127.0.0.1/localhost), a private PostgreSQL cluster or RabbitMQ node is started on that host and
port, its data kept under the project's ``.run/`` (git-ignored) and reused by the next run.

When ``.run/`` is not reachable for the ``postgres``/``rabbitmq`` users (a repository under a home
directory they cannot enter), the data lives in ``/var/lib/erpsync-devservices/`` and ``.run/``
holds a symlink to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from engine.devservices import packages
from engine.devservices.nodes import PostgresCluster, RabbitNode, answers, is_root
from engine.devservices.ports import free_port

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
OUTSIDE = Path("/var/lib/erpsync-devservices")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    """Where a service is expected, from its URL."""

    host: str
    port: int
    user: str
    path: str  # database name or virtual host
    password: str = field(default="", repr=False)

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS


def database_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    return _endpoint(parts, 5432, "postgres", unquote(parts.path.lstrip("/")) or "postgres")


def broker_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    return _endpoint(parts, 5672, "guest", unquote(parts.path[1:]) if len(parts.path) > 1 else "/")


def _endpoint(parts: SplitResult, port: int, user: str, path: str) -> Endpoint:
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or port,
        user=unquote(parts.username or user),
        path=path,
        password=unquote(parts.password or ""),
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:10]


class DevServices:
    """The private services kept in one ``.run/`` folder."""

    def __init__(self, run_dir: Path, say: Say) -> None:
        self.run_dir = run_dir.absolute()
        self.say = say

    # -- where the data lives ------------------------------------------------------------------

    def _entry(self, kind: str, endpoint: Endpoint) -> Path:
        return self.run_dir / f"{kind}-{endpoint.host}-{endpoint.port}"

    def _reachable_by(self, user: str) -> bool:
        probe = ["su", "-s", "/bin/sh", user, "-c", f"test -x '{self.run_dir}'"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def _prepare(self, entry: Path, user: str) -> Path:
        """The data folder for ``entry``, created where ``user`` can reach it."""
        if entry.exists():
            return entry.resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not is_root() or self._reachable_by(user):
            entry.mkdir()
            return entry
        OUTSIDE.mkdir(mode=0o755, parents=True, exist_ok=True)
        target = OUTSIDE / f"{_digest(self.run_dir)}-{entry.name}"
        target.mkdir(exist_ok=True)
        entry.symlink_to(target)
        return target

    def _show(self, entry: Path) -> str:
        try:
            shown = str(entry.relative_to(Path.cwd()))
        except ValueError:
            shown = str(entry)
        return shown + (f" -> {entry.resolve()}" if entry.is_symlink() else "")

    @staticmethod
    def _rabbit(base: Path, host: str, port: int) -> RabbitNode:
        return RabbitNode(
            port=port,
            dist_port=free_port(),
            name=f"erpsync{port}-{_digest(base.resolve())}@localhost",
            base=base.resolve(),
            host=host,
        )

    def _entries(self, kind: str) -> Iterator[tuple[Path, str, int]]:
        if not self.run_dir.is_dir():
            return
        for entry in sorted(self.run_dir.glob(f"{kind}-*")):
            host, _, port = entry.name.removeprefix(f"{kind}-").rpartition("-")
            if host and port.isdigit():
                yield entry, host, int(port)

    # -- up ------------------------------------------------------------------------------------

    def _standard(self, what: str, endpoint: Endpoint, entry: Path, running: bool) -> bool:
        """Say what answers on the endpoint, or why nothing is started; False: start ours."""
        where = f"{what} on {endpoint.host}:{endpoint.port}"
        if answers(endpoint.host, endpoint.port):
            if running:
                self.say(f"{where}: reusing the private one in {self._show(entry)}")
            else:
                self.say(f"{where}: answers, using it")
            return True
        if not endpoint.local:
            self.say(f"{where}: does not answer and is not local; not starting a private one")
            return True
        return False

    def _started(self, what: str, endpoint: Endpoint, entry: Path, new: bool) -> None:
        how = "started a new private one" if new else "started the private one again"
        self.say(
            f"{what} on {endpoint.host}:{endpoint.port}: {how} in {self._show(entry)} "
            "(make services-stop stops it)"
        )

    def postgres_up(self, endpoint: Endpoint) -> None:
        entry = self._entry("postgres", endpoint)
        ours = PostgresCluster(port=endpoint.port, base=entry.resolve(), host=endpoint.host)
        if self._standard("PostgreSQL", endpoint, entry, entry.exists() and ours.running()):
            return
        packages.ensure(["postgresql"], self.say)
        if self._standard("PostgreSQL", endpoint, entry, False):  # the package started one
            return
        cluster = PostgresCluster(
            port=endpoint.port, base=self._prepare(entry, "postgres"), host=endpoint.host
        )
        new = not cluster.data.exists()
        cluster.start()
        if endpoint.user != "postgres":  # trust authentication: the role only has to exist
            role = endpoint.user.replace("'", "''")
            cluster.psql(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
                f"THEN CREATE ROLE {_quote_ident(endpoint.user)} LOGIN SUPERUSER; END IF; END $$"
            )
        self._started("PostgreSQL", endpoint, entry, new)

    def rabbitmq_up(self, endpoint: Endpoint) -> None:
        entry = self._entry("rabbitmq", endpoint)
        running = entry.exists() and self._rabbit(entry, endpoint.host, endpoint.port).running()
        if self._standard("RabbitMQ", endpoint, entry, running):
            return
        packages.ensure(["rabbitmq-server"], self.say)
        if self._standard("RabbitMQ", endpoint, entry, False):
            return
        base = self._prepare(entry, "rabbitmq")
        new = not (base / "mnesia").exists()
        node = self._rabbit(base, endpoint.host, endpoint.port)
        node.start()
        if endpoint.path != "/":
            with contextlib.suppress(subprocess.CalledProcessError):  # exists already
                node.ctl("add_vhost", endpoint.path)
        if endpoint.user != "guest":
            with contextlib.suppress(subprocess.CalledProcessError):
                node.ctl("add_user", endpoint.user, endpoint.password)
        if endpoint.path != "/" or endpoint.user != "guest":
            node.ctl("set_permissions", "-p", endpoint.path, endpoint.user, ".*", ".*", ".*")
        self._started("RabbitMQ", endpoint, entry, new)

    # -- down, status --------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every private service of this folder (their data stays for the next run)."""
        found = False
        for entry, host, port in self._entries("postgres"):
            cluster = PostgresCluster(port=port, base=entry.resolve(), host=host)
            if cluster.running():
                cluster.stop()
                self.say(f"PostgreSQL on {host}:{port}: stopped ({self._show(entry)})")
                found = True
        for entry, host, port in self._entries("rabbitmq"):
            node = self._rabbit(entry, host, port)
            if node.running():
                node.stop()
                self.say(f"RabbitMQ on {host}:{port}: stopped ({self._show(entry)})")
                found = True
        if not found:
            self.say(f"no private service is running in {self._show(self.run_dir)}")

    def status(self) -> list[str]:
        lines = []
        for kind, what in (("postgres", "PostgreSQL"), ("rabbitmq", "RabbitMQ")):
            for entry, host, port in self._entries(kind):
                if kind == "postgres":
                    running = PostgresCluster(port=port, base=entry.resolve(), host=host).running()
                else:
                    running = self._rabbit(entry, host, port).running()
                state = "running" if running else "stopped"
                lines.append(f"{what} on {host}:{port}: {state} ({self._show(entry)})")
        return lines
