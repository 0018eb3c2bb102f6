"""``tryton``: parties of a Tryton ERP (``trytond`` with the ``party`` module) over JSON-RPC.

Every actor type of a connection is a view of ``party.party`` (Tryton keeps organisations and
people in the same model), identified by the party's id. A field key is one of:

* a contact mechanism type (``phone``, ``mobile``, ``fax``, ``email``, ``website``): the value
  of the party's first contact mechanism of that type (by Tryton's order); writing creates,
  updates or (for blank) deletes that mechanism;
* an address field (``street``, ``postal_code``, ``city``): the party's first address;
  writing updates it, or creates one when the party has none;
* any other scalar field of ``party.party`` (``name``, ``code``, ...), described by Tryton's
  ``fields_get``.

Reads are batched (``search_read`` with dotted names, so a party, its addresses and contact
mechanisms come in one call); a save is one ``write`` of the changed fields of every actor of
the batch (one Tryton transaction, so all or nothing) after a read of the sub-record ids, and a
per-actor ``write`` only when the batch is refused, to tell which actor was wrong.
``write_date`` (or ``create_date`` when never written) is ``last_modified``. Creates store the
engine's idempotency key as a party identifier (``erpsync:<key>``), so a retried create finds
the party it made instead of making another.

The login session is kept and renewed once when Tryton answers 401 (expired or revoked).
Errors: a refused login, an unknown database and access errors are configuration errors;
Tryton's validation errors (``UserError``) are permanent; connection failures, timeouts, 429,
5xx, concurrency exceptions and a locked database are transient.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

import connectors as sdk
from connectors import httpkit

PARTY = "party.party"
ADDRESS = "party.address"
MECHANISM = "party.contact_mechanism"
CONTACT_TYPES = ("phone", "mobile", "fax", "email", "website")
ADDRESS_FIELDS = ("street", "postal_code", "city")
DEFAULT_FIELDS = ("name", "phone", "email", "street", "postal_code", "city")
IDEMPOTENCY_PREFIX = "erpsync:"

_TYPES = {
    "char": sdk.FieldType.Text,
    "text": sdk.FieldType.Text,
    "selection": sdk.FieldType.Text,
    "integer": sdk.FieldType.Integer,
    "biginteger": sdk.FieldType.Integer,
    "float": sdk.FieldType.Double,
    "numeric": sdk.FieldType.Double,
    "boolean": sdk.FieldType.Checkbox,
    "date": sdk.FieldType.Date,
}


# -- configuration ------------------------------------------------------------------------------


class TrytonActorType(BaseModel):
    """One actor type: which party fields it offers."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS), min_length=1)

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("field keys must be unique")
        if "id" in value:
            raise ValueError("'id' is the actor's key, not a field")
        return value


class TrytonConfig(BaseModel):
    """Settings of a ``tryton`` connection."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Scheme, host and port of trytond, e.g. http://127.0.0.1:8000.")
    database: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr
    timeout: float = Field(30.0, gt=0, description="Seconds for a whole request.")
    connect_timeout: float = Field(5.0, gt=0)
    max_connections: int = Field(10, ge=1, le=1000)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_retry_after: float = Field(60.0, ge=0, description="Cap on an honoured Retry-After.")
    idempotent_create: bool = Field(
        True, description="Store the idempotency key as a party identifier and look it up."
    )
    actor_types: dict[str, TrytonActorType] = Field(
        default_factory=lambda: {"Customer": TrytonActorType()}
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return httpkit.http_url(value, "url", "'username' and 'password'").rstrip("/")

    @field_validator("actor_types")
    @classmethod
    def _names(cls, value: dict[str, TrytonActorType]) -> dict[str, TrytonActorType]:
        unknown = [name for name in value if name not in set(sdk.ErpActorType)]
        if unknown:
            raise ValueError(f"not ErpActorType names: {unknown}")
        if not value:
            raise ValueError("at least one actor type")
        return value


# -- values -------------------------------------------------------------------------------------


def _stamp(value: Any) -> str | None:
    """A Tryton datetime -> ``last_modified`` text (ISO 8601, microseconds: sorts as text)."""
    when = _decode(value)
    return when.isoformat(timespec="microseconds") if isinstance(when, dt.datetime) else None


def _decode(value: Any) -> Any:
    """Tryton's JSON objects (``{"__class__": ...}``) -> Python values."""
    if not isinstance(value, dict) or "__class__" not in value:
        return value
    kind = value["__class__"]
    try:
        if kind == "datetime":
            return dt.datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
            )
        if kind == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if kind == "Decimal":
            return decimal.Decimal(value["decimal"])
    except (KeyError, TypeError, ValueError, decimal.InvalidOperation):
        raise sdk.PermanentError(f"Tryton sent a malformed {kind}") from None
    return value


def _encode(value: Any) -> Any:
    """Python values -> Tryton's JSON objects."""
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, decimal.Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    return value


def _to_text(value: Any) -> sdk.FieldValue:
    value = _decode(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _to_tryton(value: sdk.FieldValue, kind: str) -> Any:
    """Engine text -> the value Tryton expects for a field of ``kind``; ValueError if bad."""
    if value is None:
        return False if kind == "boolean" else None
    if kind in ("integer", "biginteger"):
        return int(value) if value.strip() else None
    if kind == "float":
        return float(value) if value.strip() else None
    if kind == "numeric":
        return decimal.Decimal(value) if value.strip() else None
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered not in ("1", "0", "true", "false", ""):
            raise ValueError(f"{value!r} is not a boolean")
        return lowered in ("1", "true")
    if kind == "date":
        return dt.date.fromisoformat(value) if value.strip() else None
    return value


def _party_id(key: str) -> int | None:
    """A party id from an actor key; None when the key cannot be one."""
    return int(key) if key.isascii() and key.isdigit() and len(key) < 19 else None


# -- connector ----------------------------------------------------------------------------------


class _SessionRefused(Exception):
    """Tryton answered 401 to a call made with a session."""


class TrytonConnector(sdk.BaseConnector[TrytonConfig]):
    """Parties of a Tryton database over JSON-RPC (see the module docstring)."""

    name: ClassVar[str] = "tryton"
    config_model = TrytonConfig

    def __init__(self, config: TrytonConfig, context: Any) -> None:
        super().__init__(config, context)
        self._http: aiohttp.ClientSession | None = None
        self._auth: str | None = None
        self._session_secret: str | None = None
        self._login_lock = asyncio.Lock()
        self._meta_lock = asyncio.Lock()
        self._create_lock = asyncio.Lock()
        self._meta: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._endpoint = f"{config.url}/{quote(config.database, safe='')}/"

    async def open(self) -> None:
        """Create the HTTP session; the login happens on the first call."""
        config = self.config
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=config.timeout, sock_connect=config.connect_timeout
            ),
            connector=aiohttp.TCPConnector(limit=config.max_connections),
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        """Close the HTTP session (the Tryton session expires on its own)."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    # -- JSON-RPC -------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in (self.config.password.get_secret_value(), self._session_secret):
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _post(self, what: str, method: str, params: Sequence[Any], auth: str | None) -> Any:
        """One JSON-RPC request; the result, or the taxonomy's error."""
        if self._http is None:
            raise sdk.ConfigurationError("connector is not open")
        body = json.dumps(
            {"id": next(self._ids), "method": method, "params": list(params)},
            default=_encode,
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        limit = self.config.max_response_bytes
        try:
            async with self._http.post(
                self._endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await httpkit.read_at_most(response, limit)
        except TimeoutError:
            raise sdk.TransientError(f"{what}: timed out") from None
        except aiohttp.ClientError as exc:
            text = f"{what}: {type(exc).__name__}: {self._redact(httpkit.clean(str(exc)))}"
            lost = isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
            raise (sdk.TransientError(text) if lost else sdk.PermanentError(text)) from None
        if status == 401 and auth is not None and method != "common.db.login":
            raise _SessionRefused
        if status != 200:
            raise self._status_error(what, method, status, retry_after)
        if len(raw) > limit:
            raise sdk.PermanentError(f"{what}: response exceeds {limit} bytes")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise sdk.PermanentError(f"{what}: the response is not JSON") from None
        if not isinstance(answer, dict):
            raise sdk.PermanentError(f"{what}: the response is not a JSON-RPC object")
        if answer.get("error") is not None:
            raise self._rpc_error(what, answer["error"])
        return answer.get("result")

    def _status_error(
        self, what: str, method: str, status: int, retry_after: str | None
    ) -> sdk.ConnectorError:
        if status == 401:
            return sdk.ConfigurationError(
                f"{what}: Tryton refused the login of user {self.config.username!r} "
                "(check 'username' and 'password')"
            )
        if status == 403:
            return sdk.ConfigurationError(f"{what}: HTTP 403: {method} is not allowed")
        if status == 404:
            return sdk.ConfigurationError(
                f"{what}: HTTP 404: is {self.config.database!r} a database of this server?"
            )
        if status in httpkit.TRANSIENT_STATUSES or status >= 500:
            seconds = httpkit.retry_after(retry_after, self.config.max_retry_after)
            return sdk.TransientError(f"{what}: HTTP {status}", retry_after=seconds)
        return sdk.PermanentError(f"{what}: HTTP {status}")

    def _rpc_error(self, what: str, error: Any) -> sdk.ConnectorError:
        name = error[0] if isinstance(error, list) and error else error
        args = error[1] if isinstance(error, list) and len(error) > 1 else None
        message = args[0] if isinstance(args, list) and args and isinstance(args[0], str) else ""
        if not isinstance(name, str):
            return sdk.PermanentError(f"{what}: malformed error from Tryton")
        text = f"{what}: {self._redact(httpkit.clean(message or name))}"
        if name == "UserError":
            if message.startswith(("You are not allowed", "Calling method")):
                return sdk.ConfigurationError(
                    text + f" (check the rights of {self.config.username!r})"
                )
            return sdk.PermanentError(text)
        if name == "ConcurrencyException":
            return sdk.TransientError(text)
        if name == "LoginException":
            return sdk.ConfigurationError(f"{what}: Tryton asks for more login parameters")
        if "database is locked" in name or "could not serialize" in name:
            return sdk.TransientError(text)
        return sdk.PermanentError(text)

    async def _login(self, refused: str | None) -> str:
        """The current session's Authorization header; log in when there is none or when
        ``refused`` (the header Tryton just refused) is still the current one."""
        async with self._login_lock:
            if self._auth is not None and self._auth != refused:
                return self._auth
            self._auth = self._session_secret = None
            password = self.config.password.get_secret_value()
            result = await self._post(
                "login", "common.db.login", [self.config.username, {"password": password}], None
            )
            # [user_id, session] (7.0); later versions append more (7.8: the bus URL).
            if not (isinstance(result, list) and len(result) >= 2 and isinstance(result[1], str)):
                raise sdk.ConfigurationError(
                    f"login: Tryton refused the login of user {self.config.username!r}"
                )
            user_id, session = result[:2]
            self._session_secret = session
            token = f"{self.config.username}:{user_id}:{session}".encode()
            self._auth = "Session " + base64.b64encode(token).decode()
            if self.context.logger is not None:
                self.context.logger.info("tryton session opened", renewed=refused is not None)
            return self._auth

    async def call(self, what: str, method: str, *params: Any) -> Any:
        """Call ``method`` with the session; renew the session once if Tryton refuses it."""
        auth = await self._login(None)
        try:
            return await self._post(what, method, [*params, {}], auth)
        except _SessionRefused:
            auth = await self._login(auth)
        try:
            return await self._post(what, method, [*params, {}], auth)
        except _SessionRefused:
            raise sdk.ConfigurationError(
                f"{what}: Tryton refused a fresh session of {self.config.username!r}"
            ) from None

    # -- metadata -------------------------------------------------------------------------------

    async def _fields_of(self, model: str) -> dict[str, Any]:
        """``fields_get`` of a model, asked once per connector."""
        async with self._meta_lock:
            if model not in self._meta:
                got = await self.call(f"fields of {model}", f"model.{model}.fields_get", None)
                if not isinstance(got, dict):
                    raise sdk.PermanentError(f"fields of {model}: unexpected answer")
                self._meta[model] = got
            return self._meta[model]

    def _type(self, actor_type: str) -> TrytonActorType:
        try:
            return self.config.actor_types[actor_type]
        except KeyError:
            raise sdk.PermanentError(f"unsupported actor type {actor_type!r}") from None

    async def _describe(self, actor_type: str) -> dict[str, tuple[str, str, sdk.FieldMetadata]]:
        """Per field key: (where: party/address/contact, Tryton type, metadata)."""
        spec = self._type(actor_type)
        party = await self._fields_of(PARTY)
        address = await self._fields_of(ADDRESS) if set(spec.fields) & set(ADDRESS_FIELDS) else {}
        described: dict[str, tuple[str, str, sdk.FieldMetadata]] = {}
        for key in spec.fields:
            if key in CONTACT_TYPES:
                where, info = "contact", party.get(key) or {"type": "char", "string": key}
                info = {**info, "readonly": False, "required": False}
            elif key in ADDRESS_FIELDS:
                where, info = "address", address.get(key)
            else:
                where, info = "party", party.get(key)
            if not isinstance(info, dict) or info.get("type") not in _TYPES:
                raise sdk.ConfigurationError(
                    f"{actor_type}.{key}: not a scalar field of {PARTY}, a contact mechanism "
                    f"type {CONTACT_TYPES} or an address field {ADDRESS_FIELDS}"
                )
            kind = str(info["type"])
            access = sdk.FieldAccess.Normal
            if info.get("readonly"):
                access = sdk.FieldAccess.ReadOnly
            elif info.get("required"):
                access = sdk.FieldAccess.Mandatory
            size = info.get("size")
            described[key] = (
                where,
                kind,
                sdk.FieldMetadata(
                    key=key,
                    display_name=str(info.get("string") or key),
                    type=_TYPES[kind],
                    max_length=size if isinstance(size, int) and size > 0 else 0,
                    access=access,
                    description=f"{ADDRESS if where == 'address' else PARTY} {where} field",
                ),
            )
        return described

    async def _keys(
        self, actor_type: str, wanted: Sequence[str] | None
    ) -> tuple[dict[str, tuple[str, str, sdk.FieldMetadata]], list[str]]:
        described = await self._describe(actor_type)
        keys = list(described) if wanted is None else list(wanted)
        unknown = [k for k in keys if k not in described]
        if unknown:
            raise sdk.PermanentError(f"unknown fields for {actor_type}: {unknown}")
        return described, keys

    # -- reading --------------------------------------------------------------------------------

    @staticmethod
    def _read_names(described: Mapping[str, tuple[str, str, sdk.FieldMetadata]]) -> list[str]:
        names = ["write_date", "create_date"]
        wheres = {where for where, _, _ in described.values()}
        names += [k for k, (where, _, _) in described.items() if where == "party"]
        if "address" in wheres:
            names += [f"addresses.{k}" for k, (w, _, _) in described.items() if w == "address"]
        if "contact" in wheres:
            names += ["contact_mechanisms.type", "contact_mechanisms.value"]
        return names

    @staticmethod
    def _actor(
        actor_type: str,
        record: Mapping[str, Any],
        described: Mapping[str, tuple[str, str, sdk.FieldMetadata]],
        keys: Sequence[str],
    ) -> sdk.Actor:
        addresses = record.get("addresses.") or [{}]
        first_address = addresses[0] if isinstance(addresses[0], dict) else {}
        mechanisms: dict[str, Any] = {}
        for mechanism in record.get("contact_mechanisms.") or []:
            if isinstance(mechanism, dict):
                mechanisms.setdefault(str(mechanism.get("type")), mechanism.get("value"))
        fields: dict[str, sdk.FieldValue] = {}
        for key in keys:
            where = described[key][0]
            if where == "contact":
                fields[key] = _to_text(mechanisms.get(key))
            elif where == "address":
                fields[key] = _to_text(first_address.get(key))
            else:
                fields[key] = _to_text(record.get(key))
        return sdk.Actor(
            actor_type=actor_type,
            key=str(record.get("id")),
            fields=fields,
            last_modified=_stamp(record.get("write_date")) or _stamp(record.get("create_date")),
        )

    async def _search_read(
        self,
        what: str,
        domain: list[Any],
        names: list[str],
        *,
        limit: int | None = None,
        order: list[list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        got = await self.call(what, f"model.{PARTY}.search_read", domain, 0, limit, order, names)
        if not isinstance(got, list) or not all(isinstance(r, dict) for r in got):
            raise sdk.PermanentError(f"{what}: expected a list of records")
        return got

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        described, keys = await self._keys(request.actor_type, request.field_keys)
        wanted = list(dict.fromkeys(request.keys))
        ids = [i for i in (_party_id(k) for k in wanted) if i is not None]
        if not ids:
            return sdk.GetActorsResult(actors=[])
        sub = {k: described[k] for k in keys}
        records = await self._search_read(
            f"get {request.actor_type}", [["id", "in", ids]], self._read_names(sub)
        )
        asked = set(wanted)
        found = {}
        for record in records:
            actor = self._actor(request.actor_type, record, described, keys)
            if actor.key in asked:
                found[actor.key] = actor
        return sdk.GetActorsResult(actors=[found[k] for k in wanted if k in found])

    async def get_actors_changed_since(
        self, request: sdk.ChangedSinceInput
    ) -> sdk.ChangedSinceResult:
        """Parties whose ``write_date`` (or ``create_date`` if never written) is on or after
        ``since``, oldest first; the cursor is ``<stamp>|<id>`` of the last one returned."""
        described, keys = await self._keys(request.actor_type, request.field_keys)
        limit = request.limit or 1000
        after: tuple[dt.datetime, int] | None = None
        since: dt.datetime | None = None
        try:
            if request.cursor:
                stamp, _, last_id = request.cursor.partition("|")
                after = (dt.datetime.fromisoformat(stamp), int(last_id))
            elif request.since:
                since = dt.datetime.fromisoformat(request.since)
        except ValueError:
            raise sdk.PermanentError(
                "'since' or 'cursor' is not one this connector returned"
            ) from None

        def newer(field: str) -> list[Any]:
            if after is not None:
                return [
                    "OR",
                    [field, ">", after[0]],
                    [[field, "=", after[0]], ["id", ">", after[1]]],
                ]
            return [[field, ">=", since]] if since is not None else []

        names = self._read_names({k: described[k] for k in keys})
        what = f"changes of {request.actor_type}"
        records: list[dict[str, Any]] = []
        # Parties written since (by write_date), then those never written (by create_date).
        for stamp, written in (("write_date", "!="), ("create_date", "=")):
            records += await self._search_read(
                what,
                [["write_date", written, None], newer(stamp)],
                names,
                limit=limit + 1,
                order=[[stamp, "ASC"], ["id", "ASC"]],
            )
        actors = [self._actor(request.actor_type, r, described, keys) for r in records]
        actors.sort(key=lambda a: (a.last_modified or "", int(a.key)))
        page = actors[:limit]
        cursor = None
        if len(actors) > limit and page:
            cursor = f"{page[-1].last_modified}|{page[-1].key}"
        return sdk.ChangedSinceResult(actors=page, next_cursor=cursor)

    # -- writing --------------------------------------------------------------------------------

    def _values(
        self,
        fields: Mapping[str, sdk.FieldValue],
        described: Mapping[str, tuple[str, str, sdk.FieldMetadata]],
    ) -> dict[str, dict[str, Any]]:
        """Engine values -> {where: {field: Tryton value}}; ValueError names a bad field."""
        grouped: dict[str, dict[str, Any]] = {"party": {}, "address": {}, "contact": {}}
        for key, value in fields.items():
            if key not in described:
                raise ValueError(f"unknown field {key!r}")
            where, kind, meta = described[key]
            if meta.access is sdk.FieldAccess.ReadOnly:
                raise ValueError(f"field {key!r} is read-only")
            try:
                grouped[where][key] = _to_tryton(value, kind)
            except (ValueError, ArithmeticError):
                raise ValueError(f"field {key!r}: {value!r} is not a valid {meta.type}") from None
        return grouped

    @staticmethod
    def _party_values(
        grouped: Mapping[str, Mapping[str, Any]], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The ``write``/``create`` values of one party, with one2many operations for its
        first address and contact mechanisms (``current``: the party's sub-records, or None
        for a new party)."""
        values = dict(grouped["party"])
        address = grouped["address"]
        if address:
            ids = list((current or {}).get("addresses") or [])
            if ids:
                values["addresses"] = [["write", [ids[0]], dict(address)]]
            elif any(v not in (None, "") for v in address.values()):
                values["addresses"] = [["create", [dict(address)]]]
        contact = grouped["contact"]
        if contact:
            existing: dict[str, int] = {}
            for mechanism in (current or {}).get("contact_mechanisms.") or []:
                if isinstance(mechanism, dict) and isinstance(mechanism.get("id"), int):
                    existing.setdefault(str(mechanism.get("type")), mechanism["id"])
            operations: list[Any] = []
            for kind, value in contact.items():
                mechanism_id = existing.get(kind)
                if value in (None, ""):
                    if mechanism_id is not None:
                        operations.append(["delete", [mechanism_id]])
                elif mechanism_id is not None:
                    operations.append(["write", [mechanism_id], {"value": value}])
                else:
                    operations.append(["create", [{"type": kind, "value": value}]])
            if operations:
                values["contact_mechanisms"] = operations
        return values

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        """Read the batch's sub-record ids, write every actor's changed fields in one
        ``write`` (one transaction), then read the new stamps."""
        described = await self._describe(request.actor_type)
        what = f"save {request.actor_type}"
        failures: list[sdk.ActorFailure] = []
        pending: dict[int, tuple[sdk.Actor, dict[str, dict[str, Any]]]] = {}
        for actor in request.actors:
            party_id = _party_id(actor.key)
            try:
                grouped = self._values(actor.fields, described)
            except ValueError as exc:
                failures.append(sdk.ActorFailure(actor.key, str(exc)))
                continue
            if party_id is None:
                failures.append(sdk.ActorFailure(actor.key, "no such party"))
            else:
                pending[party_id] = (actor, grouped)
        if not pending:
            return sdk.SaveActorsResult(saved=[], failures=failures)
        names = ["addresses", "contact_mechanisms.type"]
        current = {
            r["id"]: r
            for r in await self._search_read(what, [["id", "in", list(pending)]], names)
            if isinstance(r.get("id"), int)
        }
        writes: list[tuple[int, dict[str, Any]]] = []
        for party_id, (actor, grouped) in pending.items():
            if party_id not in current:
                failures.append(sdk.ActorFailure(actor.key, "no such party"))
                continue
            values = self._party_values(grouped, current[party_id])
            if values:
                writes.append((party_id, values))
        written = {party_id for party_id, _ in writes}
        try:
            await self._write(what, writes)
        except sdk.PermanentError:
            if len(writes) < 2:
                raise
            written = set()
            for party_id, values in writes:  # one by one, to tell which actor was refused
                try:
                    await self._write(what, [(party_id, values)])
                except sdk.PermanentError as exc:
                    failures.append(sdk.ActorFailure(pending[party_id][0].key, exc.message))
                else:
                    written.add(party_id)
        to_write = dict(writes)
        ok = [i for i in pending if i in current and (i not in to_write or i in written)]
        stamps: dict[int, str | None] = {}
        if ok:
            for r in await self._search_read(
                what, [["id", "in", ok]], ["write_date", "create_date"]
            ):
                stamps[r["id"]] = _stamp(r.get("write_date")) or _stamp(r.get("create_date"))
        saved = [
            sdk.Actor(
                request.actor_type, pending[i][0].key, dict(pending[i][0].fields), stamps.get(i)
            )
            for i in ok
        ]
        return sdk.SaveActorsResult(saved=saved, failures=failures)

    async def _write(self, what: str, writes: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        if writes:
            args: list[Any] = []
            for party_id, values in writes:
                args += [[party_id], values]
            await self.call(what, f"model.{PARTY}.write", *args)

    async def create_actor(self, request: sdk.CreateActorInput) -> sdk.CreateActorResult:
        actor = request.actor
        described = await self._describe(actor.actor_type)
        what = f"create {actor.actor_type}"
        try:
            grouped = self._values(actor.fields, described)
        except ValueError as exc:
            raise sdk.PermanentError(f"{what}: {exc}") from None
        marker = IDEMPOTENCY_PREFIX + request.idempotency_key
        idempotent = self.config.idempotent_create and bool(request.idempotency_key)
        # One create at a time per connector: the lookup and the create are then atomic here,
        # and Tryton on SQLite (no SQL sequences) hands concurrent creates the same party code.
        async with self._create_lock:
            found = []
            if idempotent:
                domain = [["identifiers.code", "=", marker]]
                found = await self._search_read(what, domain, ["id"], limit=1)
            if found:
                party_id = found[0]["id"]
            else:
                values = self._party_values(grouped, None)
                if idempotent:
                    values["identifiers"] = [["create", [{"code": marker}]]]
                created = await self.call(what, f"model.{PARTY}.create", [values])
                if not (isinstance(created, list) and len(created) == 1):
                    raise sdk.PermanentError(f"{what}: expected the new party's id")
                party_id = created[0]
        keys = list(described)
        records = await self._search_read(
            what, [["id", "=", party_id]], self._read_names(described)
        )
        if not records:
            raise sdk.PermanentError(f"{what}: the new party {party_id} cannot be read")
        return sdk.CreateActorResult(
            actor=self._actor(actor.actor_type, records[0], described, keys)
        )

    # -- the rest -------------------------------------------------------------------------------

    async def test_connection(self, request: sdk.TestConnectionInput) -> sdk.TestConnectionResult:
        """Log in and describe every actor type."""
        answers = f"{self.config.url} database {self.config.database!r} answers"
        return await httpkit.tested(self._describe_all(), answers)

    async def _describe_all(self) -> None:
        for actor_type in self.config.actor_types:
            await self._describe(actor_type)

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        described = await self._describe(request.actor_type)
        return sdk.FieldsResult(fields=[meta for _, _, meta in described.values()])
