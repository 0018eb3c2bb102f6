"""``postgres``: actors stored in PostgreSQL tables, one table per actor type.

Each actor type maps to a table with a key column, an optional last-modified column (set by every
write) and field columns. Values are exchanged as text and cast to the column types, which are
read from the catalog when the connector opens. Reads and saves are one statement per batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

import connectors as sdk

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier")
    return value


class TableConfig(BaseModel):
    """Where one actor type lives."""

    model_config = ConfigDict(extra="forbid")

    table: str
    key_column: str = "id"
    modified_column: str | None = "updated_at"
    idempotency_column: str | None = Field(
        None, description="Column with a unique index that stores create idempotency keys."
    )
    fields: dict[str, str] = Field(description="Field key -> column name.")

    @field_validator("table", "key_column", "modified_column", "idempotency_column")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return None if value is None else _ident(value)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = {str(v): str(v) for v in value}
        if isinstance(value, dict):
            for column in value.values():
                _ident(str(column))
        return value


class PostgresConfig(BaseModel):
    """Settings of a ``postgres`` connection."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dsn: SecretStr | None = Field(
        None, description="PostgreSQL URL; defaults to the service's own database."
    )
    schema_name: str = Field("public", alias="schema")
    pool_max_size: int = Field(4, ge=1, le=100)
    actor_types: dict[str, TableConfig]

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return _ident(value)


@dataclass(frozen=True, slots=True)
class _Table:
    qualified: str
    key: str
    key_type: str
    modified: str | None
    modified_expr: str | None
    idempotency: str | None
    columns: dict[str, str]  # field key -> column
    types: dict[str, str]  # column -> SQL type
    max_lengths: dict[str, int]


_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    TimeoutError,
)


def _classify(exc: BaseException) -> sdk.ConnectorError:
    if isinstance(exc, sdk.ConnectorError):
        return exc
    if isinstance(exc, _TRANSIENT):
        return sdk.TransientError(f"database unavailable: {type(exc).__name__}")
    if isinstance(
        exc,
        asyncpg.UndefinedTableError
        | asyncpg.UndefinedColumnError
        | asyncpg.InsufficientPrivilegeError
        | asyncpg.InvalidPasswordError
        | asyncpg.InvalidCatalogNameError,
    ):
        return sdk.ConfigurationError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return sdk.PermanentError(f"{type(exc).__name__}: {exc}")
    return sdk.PermanentError(f"{type(exc).__name__}: {exc}")


class PostgresConnector(sdk.BaseConnector[PostgresConfig]):
    """Connector over PostgreSQL tables."""

    name = "postgres"
    config_model = PostgresConfig

    _pool: asyncpg.Pool | None = None
    _tables: dict[str, _Table]

    async def open(self) -> None:
        dsn = self.config.dsn.get_secret_value() if self.config.dsn else None
        dsn = dsn or self.context.service_database_url
        if not dsn:
            raise sdk.ConfigurationError(
                "no 'dsn' configured and no service database to default to"
            )
        try:
            self._pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=self.config.pool_max_size
            )
            async with self._pool.acquire() as conn:
                self._tables = {
                    name: await self._describe(conn, table)
                    for name, table in self.config.actor_types.items()
                }
        except Exception as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise _classify(exc) from exc

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _describe(self, conn: Any, table: TableConfig) -> _Table:
        rows = await conn.fetch(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type,
                   CASE WHEN a.atttypmod > 4 AND t.typname IN ('varchar', 'bpchar')
                        THEN a.atttypmod - 4 ELSE 0 END AS max_length
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
            """,
            f"{self.config.schema_name}.{table.table}",
        )
        if not rows:
            raise sdk.ConfigurationError(f"table {self.config.schema_name}.{table.table} not found")
        types = {r["attname"]: r["type"] for r in rows}
        wanted = [table.key_column, *table.fields.values()]
        if table.modified_column:
            wanted.append(table.modified_column)
        if table.idempotency_column:
            wanted.append(table.idempotency_column)
        missing = [c for c in wanted if c not in types]
        if missing:
            raise sdk.ConfigurationError(
                f"table {self.config.schema_name}.{table.table} lacks columns {missing}"
            )
        modified_expr = None
        if table.modified_column:
            mtype = types[table.modified_column]
            if mtype.startswith(("bigint", "integer", "numeric")):
                modified_expr = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
            else:
                modified_expr = "clock_timestamp()"
        return _Table(
            qualified=f'"{self.config.schema_name}"."{table.table}"',
            key=table.key_column,
            key_type=types[table.key_column],
            modified=table.modified_column,
            modified_expr=modified_expr,
            idempotency=table.idempotency_column,
            columns=dict(table.fields),
            types=types,
            max_lengths={r["attname"]: r["max_length"] for r in rows},
        )

    def _table(self, actor_type: str) -> _Table:
        try:
            return self._tables[actor_type]
        except (KeyError, AttributeError):
            raise sdk.PermanentError(f"unsupported actor type {actor_type!r}") from None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise sdk.ConfigurationError("connector is not open")
        return self._pool

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        """Run a query; errors become the connector error taxonomy's."""
        try:
            return list(await self.pool.fetch(sql, *params))
        except Exception as exc:
            raise _classify(exc) from exc

    async def test_connection(self, request: sdk.TestConnectionInput) -> sdk.TestConnectionResult:
        try:
            version = await self.pool.fetchval("SHOW server_version")
        except Exception as exc:
            return sdk.TestConnectionResult(ok=False, message=str(_classify(exc)))
        return sdk.TestConnectionResult(ok=True, message=f"PostgreSQL {version}")

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        table = self._table(request.actor_type)
        return sdk.FieldsResult(
            fields=[
                sdk.FieldMetadata(
                    key=key,
                    display_name=key,
                    type=_field_type(table.types[column]),
                    max_length=table.max_lengths.get(column, 0),
                )
                for key, column in table.columns.items()
            ]
        )

    def _select_list(self, table: _Table, keys: Sequence[str]) -> str:
        cols = [f'"{table.key}"::text', f'"{table.modified}"::text' if table.modified else "NULL"]
        for key in keys:
            column = table.columns[key]
            if table.types[column] == "boolean":  # the SDK's Checkbox text is "1"/"0"
                cols.append(f"CASE WHEN \"{column}\" THEN '1' WHEN NOT \"{column}\" THEN '0' END")
            else:
                cols.append(f'"{column}"::text')
        return ", ".join(cols)

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        table = self._table(request.actor_type)
        keys = _field_keys(table, request.actor_type, request.field_keys)
        sql = (
            f"SELECT {self._select_list(table, keys)} FROM {table.qualified} "
            f'WHERE "{table.key}" = ANY($1::text[]::{table.key_type}[])'
        )
        rows = await self._fetch(sql, list(request.keys))
        return sdk.GetActorsResult(actors=[_actor(request.actor_type, row, keys) for row in rows])

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        table = self._table(request.actor_type)
        if not request.actors:
            return sdk.SaveActorsResult(saved=[])
        try:
            return await self._save(table, request.actor_type, request.actors)
        except asyncpg.DataError:
            # One bad value fails the whole statement: isolate it by saving one at a time.
            saved: list[sdk.Actor] = []
            failures: list[sdk.ActorFailure] = []
            for actor in request.actors:
                try:
                    result = await self._save(table, request.actor_type, [actor])
                except asyncpg.DataError as exc:
                    failures.append(sdk.ActorFailure(actor.key, f"{type(exc).__name__}: {exc}"))
                except Exception as exc:
                    raise _classify(exc) from exc
                else:
                    saved.extend(result.saved)
                    failures.extend(result.failures)
            return sdk.SaveActorsResult(saved=saved, failures=failures)
        except Exception as exc:
            raise _classify(exc) from exc

    async def _save(
        self, table: _Table, actor_type: str, actors: Sequence[sdk.Actor]
    ) -> sdk.SaveActorsResult:
        field_keys = sorted({k for a in actors for k in a.fields})
        unknown = [k for k in field_keys if k not in table.columns]
        if unknown:
            return sdk.SaveActorsResult(
                saved=[],
                failures=[sdk.ActorFailure(a.key, f"unknown fields {unknown}") for a in actors],
            )
        # unnest($1 keys, $2.. values, $n.. present flags): one statement per batch.
        params: list[list[Any]] = [[a.key for a in actors]]
        sets, cols = [], ["k"]
        for i, key in enumerate(field_keys):
            column = table.columns[key]
            params.append([a.fields.get(key) for a in actors])
            params.append([key in a.fields for a in actors])
            cols += [f"v{i}", f"p{i}"]
            sets.append(
                f'"{column}" = CASE WHEN v.p{i} THEN v.v{i}::{table.types[column]} '
                f'ELSE t."{column}" END'
            )
        if table.modified_expr:
            sets.append(f'"{table.modified}" = {table.modified_expr}')
        if not sets:
            return sdk.SaveActorsResult(saved=[])
        arrays = ", ".join(
            f"${n + 1}::{'text' if n == 0 or n % 2 == 1 else 'bool'}[]" for n in range(len(params))
        )
        sql = (
            f"UPDATE {table.qualified} AS t SET {', '.join(sets)} "
            f"FROM unnest({arrays}) AS v({', '.join(cols)}) "
            f'WHERE t."{table.key}" = v.k::{table.key_type} '
            f'RETURNING t."{table.key}"::text, '
            + (f't."{table.modified}"::text' if table.modified else "NULL")
        )
        rows = await self.pool.fetch(sql, *params)
        stamps = {row[0]: row[1] for row in rows}
        saved = [
            sdk.Actor(actor_type, a.key, dict(a.fields), stamps[a.key])
            for a in actors
            if a.key in stamps
        ]
        failures = [
            sdk.ActorFailure(a.key, f"no {actor_type} with key {a.key!r}")
            for a in actors
            if a.key not in stamps
        ]
        return sdk.SaveActorsResult(saved=saved, failures=failures)

    async def create_actor(self, request: sdk.CreateActorInput) -> sdk.CreateActorResult:
        actor = request.actor
        table = self._table(actor.actor_type)
        unknown = [k for k in actor.fields if k not in table.columns]
        if unknown:
            raise sdk.PermanentError(f"unknown fields for {actor.actor_type}: {unknown}")
        columns = [table.columns[k] for k in actor.fields]
        values: list[Any] = list(actor.fields.values())
        exprs = [f"${i + 1}::text::{table.types[c]}" for i, c in enumerate(columns)]
        if actor.key:
            columns.append(table.key)
            values.append(actor.key)
            exprs.append(f"${len(values)}::text::{table.key_type}")
        if table.modified_expr and table.modified:
            columns.append(table.modified)
            exprs.append(table.modified_expr)
        conflict = ""
        if table.idempotency and request.idempotency_key:
            columns.append(table.idempotency)
            values.append(request.idempotency_key)
            exprs.append(f"${len(values)}")
            # A retried create finds the row the first attempt made instead of adding another.
            conflict = (
                f'ON CONFLICT ("{table.idempotency}") DO UPDATE '
                f'SET "{table.idempotency}" = EXCLUDED."{table.idempotency}"'
            )
        quoted = ", ".join(f'"{c}"' for c in columns)
        sql = (
            f"INSERT INTO {table.qualified} ({quoted}) VALUES ({', '.join(exprs)}) {conflict} "
            f"RETURNING {self._select_list(table, list(table.columns))}"
        )
        rows = await self._fetch(sql, *values)
        row = rows[0]
        return sdk.CreateActorResult(actor=_actor(actor.actor_type, row, list(table.columns)))

    async def get_actors_changed_since(
        self, request: sdk.ChangedSinceInput
    ) -> sdk.ChangedSinceResult:
        """Rows whose modified column is on or after ``since``, oldest first, paged by a
        cursor over (modified, key), and before the *horizon*: the start of the oldest
        transaction still open in this database (another session's).

        A row is stamped when it is written but seen only when its transaction commits, so
        without the horizon a row stamped before one already returned could commit afterwards
        and fall behind the caller's watermark, never to be read. A timestamp column
        (``clock_timestamp()``, ``now()`` in a trigger) or epoch microseconds cannot be stamped
        earlier than its transaction's start; other column types get no horizon. The role needs
        ``pg_read_all_stats`` (or to be the writers' role) to see other roles' transactions.
        """
        table = self._table(request.actor_type)
        if not table.modified:
            raise sdk.ConfigurationError(f"{request.actor_type} has no modified_column to page on")
        keys = _field_keys(table, request.actor_type, request.field_keys)
        mtype = table.types[table.modified]
        order = f'"{table.modified}", "{table.key}"::text'
        params: list[Any] = []
        if request.cursor:
            try:
                stamp, after = json.loads(request.cursor)
            except (ValueError, TypeError):
                raise sdk.PermanentError("not a cursor this connector returned") from None
            params = [stamp, after]
            where = f"({order}) > ($1::text::{mtype}, $2::text)"
        elif request.since:
            params = [request.since]
            where = f'"{table.modified}" >= $1::text::{mtype}'
        else:
            where = "TRUE"
        limit = request.limit or 1000
        horizon = _horizon(mtype)
        select = self._select_list(table, keys)
        if horizon:
            # One row even when nothing matches, to tell the horizon (the row's key is NULL).
            sql = (
                f"{_OPEN_TRANSACTIONS}SELECT {select}, h.erpsync_horizon FROM h "
                f"LEFT JOIN {table.qualified} ON ({where}) AND "
                f'(h.erpsync_horizon IS NULL OR "{table.modified}" < {horizon}) '
                f"ORDER BY {order} LIMIT {int(limit) + 1}"
            )
        else:
            sql = (
                f"SELECT {select} FROM {table.qualified} "
                f"WHERE {where} ORDER BY {order} LIMIT {int(limit) + 1}"
            )
        rows = await self._fetch(sql, *params)
        held = rows[0][-1] if horizon and rows else None
        rows = [row for row in rows if row[0] is not None]
        actors = [_actor(request.actor_type, row, keys) for row in rows[:limit]]
        cursor = (
            json.dumps([actors[-1].last_modified, actors[-1].key])
            if len(rows) > limit and actors
            else None
        )
        return sdk.ChangedSinceResult(actors=actors, next_cursor=cursor, horizon=held)

    def changed_since_horizon_safe(self, actor_type: str) -> bool:
        """True for a timestamp or epoch-microsecond modified column (held back to the
        horizon); other types are not bounded by it."""
        table = self._table(actor_type)
        return table.modified is not None and _horizon(table.types[table.modified]) is not None


_OPEN_TRANSACTIONS = """WITH h AS (
    SELECT min(xact_start) AS erpsync_horizon FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend' AND xact_start IS NOT NULL) """


def _horizon(modified_type: str) -> str | None:
    """The horizon ``h.erpsync_horizon`` in the modified column's terms; None for a type it
    does not bound."""
    if modified_type.startswith("timestamp"):  # with or without time zone, any precision
        return f"h.erpsync_horizon::{modified_type}"
    if modified_type.startswith(("bigint", "numeric")):
        return "(extract(epoch FROM h.erpsync_horizon) * 1000000)::bigint"
    return None


def _field_keys(table: _Table, actor_type: str, wanted: Sequence[str] | None) -> list[str]:
    """The requested field keys (all when None); unknown ones are a permanent error."""
    keys = list(wanted) if wanted is not None else list(table.columns)
    unknown = [k for k in keys if k not in table.columns]
    if unknown:
        raise sdk.PermanentError(f"unknown fields for {actor_type}: {unknown}")
    return keys


def _actor(actor_type: str, row: asyncpg.Record, keys: Sequence[str]) -> sdk.Actor:
    """An actor from a row selected with :meth:`PostgresConnector._select_list`."""
    return sdk.Actor(
        actor_type=actor_type,
        key=row[0],
        fields={k: row[i + 2] for i, k in enumerate(keys)},
        last_modified=row[1],
    )


def _field_type(sql_type: str) -> sdk.FieldType:
    if sql_type in ("integer", "bigint", "smallint"):
        return sdk.FieldType.Integer
    if sql_type.startswith(("numeric", "double", "real")):
        return sdk.FieldType.Double
    if sql_type == "boolean":
        return sdk.FieldType.Checkbox
    if sql_type.startswith(("date", "timestamp")):
        return sdk.FieldType.Date
    return sdk.FieldType.Text
