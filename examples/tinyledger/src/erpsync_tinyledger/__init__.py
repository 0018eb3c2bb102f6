"""erpsync connector for TinyLedger, a small ERP that keeps its books in one SQLite file.

TinyLedger has ``customers`` and ``persons`` tables keyed by an integer ``no``, a ``modified``
stamp taken from a ledger-wide clock (so stamps of different records compare), and a
``settings`` table holding the ledger's API token. :class:`Ledger` is the vendor's own admin
tool; :class:`TinyLedgerConnector` is what erpsync uses.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors import (
    Actor,
    ActorFailure,
    ActorTypesInput,
    ActorTypesResult,
    BaseConnector,
    ConfigurationError,
    CreateActorInput,
    CreateActorResult,
    FieldAccess,
    FieldMetadata,
    FieldsInput,
    FieldsResult,
    FieldType,
    FieldValue,
    GetActorsInput,
    GetActorsResult,
    PermanentError,
    SaveActorsInput,
    SaveActorsResult,
    TestConnectionInput,
    TestConnectionResult,
    TransientError,
)

__all__ = ["Ledger", "TinyLedgerConfig", "TinyLedgerConnector"]

T = TypeVar("T")

# Actor type -> (table, fields). Field keys are the column names.
TABLES: dict[str, tuple[str, list[FieldMetadata]]] = {
    "Customer": (
        "customers",
        [
            FieldMetadata("name", "Name", FieldType.Text, 80, FieldAccess.Mandatory),
            FieldMetadata("email", "E-mail", FieldType.Text, 120),
            FieldMetadata("phone", "Phone", FieldType.Text, 40),
            FieldMetadata("balance", "Balance", FieldType.Double),
        ],
    ),
    "Person": (
        "persons",
        [
            FieldMetadata("first_name", "First name", FieldType.Text, 60),
            FieldMetadata("last_name", "Last name", FieldType.Text, 60),
            FieldMetadata("email", "E-mail", FieldType.Text, 120),
        ],
    ),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    no INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', email TEXT, phone TEXT, balance REAL,
    modified INTEGER NOT NULL, erpsync_ref TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS persons (
    no INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT,
    modified INTEGER NOT NULL, erpsync_ref TEXT UNIQUE);
INSERT OR IGNORE INTO settings VALUES ('clock', '0');
"""


def _text(value: Any) -> FieldValue:
    return None if value is None else str(value)


class Ledger:
    """TinyLedger's admin tool: create a ledger and read or write it directly."""

    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def create(self, api_token: str) -> Ledger:
        """Create the ledger file (if new) with this API token."""
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('api_token', ?)", (api_token,))
        return self

    @staticmethod
    def tick(conn: sqlite3.Connection) -> int:
        """Advance the ledger-wide clock (inside the caller's transaction)."""
        conn.execute("UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'clock'")
        row = conn.execute("SELECT value FROM settings WHERE key = 'clock'").fetchone()
        return int(row[0])

    def insert(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        """Add a record; return its number as text."""
        table, _ = TABLES[actor_type]
        with closing(self.connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            columns = [*values, "modified"]
            params = [*values.values(), self.tick(conn)]
            cursor = conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                params,
            )
            conn.execute("COMMIT")
            return str(cursor.lastrowid)

    def fetch(self, actor_type: str, key: str) -> dict[str, FieldValue] | None:
        """A record's fields as text, or None."""
        table, fields = TABLES[actor_type]
        with closing(self.connect()) as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE no = ?", (key,)).fetchone()
        return None if row is None else {f.key: _text(row[f.key]) for f in fields}


class TinyLedgerConfig(BaseModel):
    """Settings of a ``tinyledger`` connection."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="The ledger's SQLite file.")
    api_token: SecretStr = Field(description="The ledger's API token.")
    busy_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a locked ledger.")


class TinyLedgerConnector(BaseConnector[TinyLedgerConfig]):
    """Customers and persons of a TinyLedger file."""

    name = "tinyledger"
    config_model = TinyLedgerConfig

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.config.path, self.config.busy_timeout)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a fresh connection in a thread. A cancelled caller does not stop
        the thread, so a transaction always finishes whole (or not at all)."""

        def call() -> T:
            try:
                with closing(self.ledger.connect()) as conn:
                    return work(conn)
            except FileNotFoundError:
                raise ConfigurationError(f"no ledger at {self.config.path}") from None
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise TransientError("the ledger is busy") from None
                raise ConfigurationError(f"the ledger is unusable: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise PermanentError(f"{type(exc).__name__}: {exc}") from None

        return await asyncio.to_thread(call)

    def _table(self, actor_type: str) -> tuple[str, list[FieldMetadata]]:
        try:
            return TABLES[actor_type]
        except KeyError:
            raise PermanentError(f"TinyLedger has no {actor_type!r}") from None

    async def open(self) -> None:
        """Check that the ledger exists and accepts the token."""
        result = await self.test_connection(TestConnectionInput())
        if not result.ok:
            raise ConfigurationError(result.message)

    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult:
        token = self.config.api_token.get_secret_value()

        def check(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT value FROM settings WHERE key = 'api_token'").fetchone()
            return row is not None and row[0] == token

        try:
            accepted = await self._run(check)
        except ConfigurationError as exc:
            return TestConnectionResult(ok=False, message=exc.message)
        if not accepted:
            return TestConnectionResult(ok=False, message="the ledger refuses the api_token")
        return TestConnectionResult(ok=True, message=f"ledger {self.config.path.name}")

    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        return ActorTypesResult(actor_types=list(TABLES))

    async def fields(self, request: FieldsInput) -> FieldsResult:
        return FieldsResult(fields=self._table(request.actor_type)[1])

    def _actor(self, actor_type: str, row: sqlite3.Row, keys: list[str]) -> Actor:
        return Actor(
            actor_type, str(row["no"]), {k: _text(row[k]) for k in keys}, str(row["modified"])
        )

    def _keys(self, actor_type: str, wanted: Any) -> list[str]:
        known = [f.key for f in self._table(actor_type)[1]]
        keys = known if wanted is None else list(wanted)
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise PermanentError(f"unknown {actor_type} fields: {unknown}")
        return keys

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        table, _ = self._table(request.actor_type)
        keys = self._keys(request.actor_type, request.field_keys)
        numbers = [int(k) for k in request.keys if k.isdigit()]  # other keys cannot exist

        def read(conn: sqlite3.Connection) -> list[Actor]:
            marks = ", ".join("?" * len(numbers))
            rows = conn.execute(f"SELECT * FROM {table} WHERE no IN ({marks})", numbers)
            return [self._actor(request.actor_type, row, keys) for row in rows]

        found = {a.key: a for a in await self._run(read)} if numbers else {}
        return GetActorsResult(actors=[found[k] for k in request.keys if k in found])

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        table, fields = self._table(request.actor_type)
        known = {f.key for f in fields}

        def save(conn: sqlite3.Connection) -> SaveActorsResult:
            saved, failures = [], []
            conn.execute("BEGIN IMMEDIATE")  # the whole batch is one transaction
            stamp = self.ledger.tick(conn)
            for actor in request.actors:
                unknown = sorted(set(actor.fields) - known)
                if unknown:
                    failures.append(ActorFailure(actor.key, f"unknown fields {unknown}"))
                    continue
                sets = ", ".join(f"{k} = ?" for k in [*actor.fields, "modified"])
                cursor = conn.execute(
                    f"UPDATE {table} SET {sets} WHERE no = ?",
                    [*actor.fields.values(), stamp, actor.key],
                )
                if cursor.rowcount:
                    saved.append(
                        Actor(request.actor_type, actor.key, dict(actor.fields), str(stamp))
                    )
                else:
                    failures.append(ActorFailure(actor.key, f"no {request.actor_type} {actor.key}"))
            conn.execute("COMMIT")
            return SaveActorsResult(saved=saved, failures=failures)

        return await self._run(save)

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        actor = request.actor
        table, _ = self._table(actor.actor_type)
        keys = self._keys(actor.actor_type, list(actor.fields))
        ref = request.idempotency_key or None

        def create(conn: sqlite3.Connection) -> Actor:
            conn.execute("BEGIN IMMEDIATE")
            columns = [*keys, "modified", "erpsync_ref"]
            params = [*(actor.fields[k] for k in keys), self.ledger.tick(conn), ref]
            # A retried create (same idempotency key) finds the first attempt's record.
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (erpsync_ref) DO NOTHING",
                params,
            )
            where, arg = ("erpsync_ref = ?", ref) if ref else ("rowid = last_insert_rowid()", None)
            row = conn.execute(
                f"SELECT * FROM {table} WHERE {where}",
                [arg] if ref else [],
            ).fetchone()
            conn.execute("COMMIT")
            return self._actor(actor.actor_type, row, [f.key for f in TABLES[actor.actor_type][1]])

        return CreateActorResult(actor=await self._run(create))
