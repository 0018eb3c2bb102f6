"""A real Tryton server for tests, demos and benchmarks: ``trytond`` with the ``party`` module.

:class:`TrytonServer` makes a fresh SQLite database in a temporary directory, initialises it
with ``trytond-admin`` (the admin password comes from a ``TRYTONPASSFILE``), starts ``trytond``
on a free loopback port and stops it (and removes the directory) afterwards::

    with TrytonServer() as server:
        async with server.client() as admin:
            ids = await admin.call("model.party.party.create", [{"name": "Acme"}])

It needs ``pip install 'erpsync[tryton]'`` (``trytond`` and ``trytond_party``). Run it by hand
with ``python -m connectors.testing.tryton_server``: it prints the settings of a ``tryton``
connection and serves until Ctrl-C. :class:`TrytonClient` is a bare JSON-RPC client (one
aiohttp session, one Tryton login), independent of the connector.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from connectors.model import FieldValue
from connectors.tryton import ADDRESS_FIELDS, CONTACT_TYPES, DEFAULT_FIELDS

PARTY_ADMIN_GROUP = "Party Administration"
_START_TIMEOUT = 60.0


class TrytonError(Exception):
    """Tryton answered a JSON-RPC call with an error (or a non-200 status)."""

    def __init__(self, status: int, error: Any) -> None:
        super().__init__(f"HTTP {status}: {str(error)[:300]}")
        self.status = status
        self.error = error


class TrytonClient:
    """A bare JSON-RPC client of one Tryton database, logged in as one user."""

    def __init__(self, url: str, database: str, login: str, password: str) -> None:
        self.endpoint = f"{url}/{database}/"
        self.login = login
        self._password = password
        self._http: aiohttp.ClientSession | None = None
        self._auth = ""
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<TrytonClient {self.endpoint} as {self.login!r}>"

    async def __aenter__(self) -> TrytonClient:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=60)
        )
        try:
            answer = await self.post("common.db.login", [self.login, self._password])
        except BaseException:
            await self._http.close()
            raise
        user_id, session = answer[:2]
        token = f"{self.login}:{user_id}:{session}".encode()
        self._auth = "Session " + base64.b64encode(token).decode()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def post(self, method: str, params: Sequence[Any], auth: str = "") -> Any:
        """One request; the result, or :class:`TrytonError`."""
        assert self._http is not None, "use 'async with'"
        if method == "common.db.login":
            params = [params[0], {"password": params[1]}]
        body = {"id": next(self._ids), "method": method, "params": list(params)}
        headers = {"Authorization": auth} if auth else {}
        async with self._http.post(self.endpoint, json=body, headers=headers) as response:
            if response.status != 200:
                raise TrytonError(response.status, (await response.read())[:300])
            answer = await response.json(content_type=None)
        if answer.get("error") is not None:
            raise TrytonError(200, answer["error"])
        return answer["result"]

    async def call(self, method: str, *params: Any) -> Any:
        """Call a model method (``model.party.party.read`` ...) with an empty context."""
        return await self.post(method, [*params, {}], self._auth)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _script(name: str) -> str:
    """A console script of ``$ERPSYNC_TRYTOND_BIN`` (another trytond's bin directory, to test
    against another version) or of the running interpreter's environment."""
    beside = Path(os.environ.get("ERPSYNC_TRYTOND_BIN") or Path(sys.executable).parent) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: pip install 'erpsync[tryton]'")
    return found


class TrytonServer:
    """``trytond`` on a fresh SQLite database (see the module docstring)."""

    def __init__(
        self, database: str = "erpsync", *, port: int = 0, modules: Sequence[str] = ("party",)
    ) -> None:
        self.database = database
        self.modules = tuple(modules)
        self.admin_password = secrets.token_urlsafe(16)
        self.fixed_port = port
        self.port = port
        self.passwords: dict[str, str] = {"admin": self.admin_password}
        self.dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<TrytonServer {self.url} database={self.database!r}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "trytond.log"

    def __enter__(self) -> TrytonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        assert self.dir is not None
        return {**os.environ, "TRYTONPASSFILE": str(self.dir / "admin-password")}

    def start(self) -> None:
        """Initialise the database and start the server; raise with its log if it fails."""
        self.dir = Path(tempfile.mkdtemp(prefix="erpsync-tryton-"))
        try:
            (self.dir / "admin-password").write_text(self.admin_password + "\n")
            (self.dir / "admin-password").chmod(0o600)
            (self.dir / f"{self.database}.sqlite").touch()
            self.port = self.fixed_port or _free_port()
            self._write_config()
            admin = subprocess.run(  # noqa: S603 - our own scripts and arguments
                [
                    _script("trytond-admin"),
                    "-c",
                    str(self.dir / "trytond.conf"),
                    "-d",
                    self.database,
                    "--all",
                    "--activate-dependencies",
                    "--email",
                    "admin@example.invalid",
                    *itertools.chain.from_iterable(("-u", m) for m in self.modules),
                ],
                env=self._env(),
                capture_output=True,
                timeout=300,
                check=False,
            )
            if admin.returncode:
                raise RuntimeError(f"trytond-admin failed: {admin.stderr.decode()[-2000:]}")
            self._serve()
        except BaseException:
            self.stop()
            raise

    def _write_config(self) -> None:
        assert self.dir is not None
        (self.dir / "trytond.conf").write_text(
            "[database]\n"
            "uri = sqlite://\n"
            f"path = {self.dir}\n"
            "[web]\n"
            f"listen = 127.0.0.1:{self.port}\n"
        )

    def _serve(self) -> None:
        assert self.dir is not None
        for _ in range(3):  # the free port may be taken before trytond binds it
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(  # noqa: S603 - our own script and arguments
                    [_script("trytond"), "-c", str(self.dir / "trytond.conf"), "-d", self.database],
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready():
                return
            self._terminate()
            if self.fixed_port:
                break
            self.port = _free_port()
            self._write_config()
        raise RuntimeError(f"trytond did not start: {self.log_path.read_text()[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        body = json.dumps({"id": 0, "method": "common.server.version", "params": []}).encode()
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 of our own
                self.url + "/", data=body, headers={"Content-Type": "application/json"}
            )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(request, timeout=2) as response,  # noqa: S310
            ):
                if response.status == 200:
                    return True
            time.sleep(0.1)
        return False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server and remove its directory (database, config, password file)."""
        self._terminate()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- helpers --------------------------------------------------------------------------------

    def client(self, login: str = "admin", password: str | None = None) -> TrytonClient:
        """A bare JSON-RPC client (``async with``), by default as the admin; the password
        defaults to the one :meth:`create_user` made."""
        return TrytonClient(self.url, self.database, login, password or self.passwords[login])

    async def create_user(self, login: str, groups: Sequence[str] = (PARTY_ADMIN_GROUP,)) -> str:
        """Create a user in the given groups (by name); return its new random password (also
        kept in :attr:`passwords`)."""
        password = self.passwords[login] = secrets.token_urlsafe(16)
        async with self.client() as admin:
            found = await admin.call(
                "model.res.group.search_read", [["name", "in", list(groups)]], 0, None, None, []
            )
            group_ids = [g["id"] for g in found]
            if len(group_ids) != len(groups):
                raise RuntimeError(f"groups not found: {groups}")
            await admin.call(
                "model.res.user.create",
                [
                    {
                        "login": login,
                        "name": login,
                        "password": password,
                        "groups": [["add", group_ids]],
                    }
                ],
            )
        return password

    def _sqlite(self) -> sqlite3.Connection:
        assert self.dir is not None
        return sqlite3.connect(self.dir / f"{self.database}.sqlite", timeout=30)

    def _sessions_of(self, login: str, statement: str) -> int:
        connection = self._sqlite()
        try:
            with connection:
                cursor = connection.execute(
                    statement + " WHERE create_uid = (SELECT id FROM res_user WHERE login = ?)",
                    (login,),
                )
                return cursor.rowcount
        finally:
            connection.close()

    def expire_sessions(self, login: str) -> int:
        """Age the user's sessions beyond Tryton's ``session.max_age`` (30 days)."""
        return self._sessions_of(
            login, "UPDATE ir_session SET create_date = datetime('now', '-40 days')"
        )

    def revoke_sessions(self, login: str) -> int:
        """Delete the user's sessions, as a logout elsewhere or an operator would."""
        return self._sessions_of(login, "DELETE FROM ir_session")


# -- parties, read and written directly -------------------------------------------------------


def party_values(values: Mapping[str, FieldValue]) -> dict[str, Any]:
    """``create`` values of a party with its first address and contact mechanisms."""
    party: dict[str, Any] = {
        k: v for k, v in values.items() if k not in CONTACT_TYPES and k not in ADDRESS_FIELDS
    }
    address = {k: v for k, v in values.items() if k in ADDRESS_FIELDS}
    if address:
        party["addresses"] = [["create", [address]]]
    mechanisms = [
        {"type": k, "value": v} for k, v in values.items() if k in CONTACT_TYPES and v is not None
    ]
    if mechanisms:
        party["contact_mechanisms"] = [["create", mechanisms]]
    return party


async def create_parties(
    admin: TrytonClient, many: Sequence[Mapping[str, FieldValue]]
) -> list[str]:
    """Create parties directly in Tryton; their ids as keys."""
    ids = await admin.call("model.party.party.create", [party_values(v) for v in many])
    return [str(i) for i in ids]


async def read_parties(
    admin: TrytonClient, keys: Sequence[str], fields: Sequence[str] = DEFAULT_FIELDS
) -> dict[str, dict[str, FieldValue]]:
    """Parties read directly from Tryton, as {key: {field: text}} (first address, first
    contact mechanism of each type)."""
    names = [k for k in fields if k not in CONTACT_TYPES and k not in ADDRESS_FIELDS]
    names += [f"addresses.{k}" for k in fields if k in ADDRESS_FIELDS]
    names += ["contact_mechanisms.type", "contact_mechanisms.value"]
    records = await admin.call(
        "model.party.party.search_read",
        [["id", "in", [int(k) for k in keys]]],
        0,
        None,
        None,
        names,
    )
    found = {}
    for record in records:
        address = (record.get("addresses.") or [{}])[0]
        mechanisms: dict[str, Any] = {}
        for mechanism in record.get("contact_mechanisms.") or []:
            mechanisms.setdefault(mechanism["type"], mechanism["value"])
        found[str(record["id"])] = {
            k: mechanisms.get(k)
            if k in CONTACT_TYPES
            else address.get(k)
            if k in ADDRESS_FIELDS
            else record.get(k)
            for k in fields
        }
    return found


def main() -> None:
    """Serve a Tryton database until Ctrl-C, with a user ``erpsync`` for erpsync's connection."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--database", default="erpsync")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a background job ignores) end the loop below and so stop and
    # delete the server through the with-statement.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with TrytonServer(args.database, port=args.port) as server:
        password = asyncio.run(server.create_user("erpsync"))
        # The point of this command: show the throwaway server's credentials to its user.
        print(
            f"Tryton serves {server.url}, database {server.database!r}; Ctrl-C stops it and "
            f"deletes the database.\nerpsync's connection: username 'erpsync', password "
            f"{password}\n  export ERPSYNC_CONNECTION_3__PASSWORD='{password}'",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)


if __name__ == "__main__":
    main()
