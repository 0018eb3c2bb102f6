"""``rest``: JSON over HTTP to an ERP's REST API.

One aiohttp ``ClientSession`` per connection (opened in ``open()``, closed in ``aclose()``).
Per actor type the config gives path templates for reading many actors by key, saving a batch
and creating one actor, and the JSON names of the key, last-modified and field properties:

* get-many: ``GET {base_url}{get_many}`` where ``{keys}`` is the comma-separated, URL-encoded
  keys (at most ``max_keys_per_request`` per request); the answer is a JSON array of records,
  or an object holding it under ``items_field``.
* save: ``{save_method} {base_url}{save}`` with ``{items_field: [records]}`` (or a bare array);
  the answer lists the saved records under ``items_field`` and per-record failures under
  ``errors_field`` as ``{key_field: ..., "message": ...}``.
* create: ``POST {base_url}{create}`` with one record and the idempotency key in a header;
  the answer is the created record.
* changed since (optional): ``GET {base_url}{changed_since}`` with ``{since}`` and ``{limit}``.

Values travel as JSON typed by each field's ``type`` (Integer -> number, Checkbox -> boolean,
...) and come back to the engine as text. Errors follow the taxonomy: connection failures,
timeouts, 408, 429 and 5xx are transient (``Retry-After`` honoured, capped), 401/403 are
configuration errors, other statuses permanent. Responses are read up to
``max_response_bytes`` and never trusted: malformed bodies are permanent errors, records with
keys that were not asked for are ignored.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
import yarl
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.contract import (
    ActorFailure,
    ActorTypesInput,
    ActorTypesResult,
    BaseConnector,
    ChangedSinceInput,
    ChangedSinceResult,
    ConfigurationError,
    ConnectorError,
    CreateActorInput,
    CreateActorResult,
    FieldsInput,
    FieldsResult,
    GetActorsInput,
    GetActorsResult,
    PermanentError,
    SaveActorsInput,
    SaveActorsResult,
    TestConnectionInput,
    TestConnectionResult,
    TransientError,
)
from connectors.model import Actor, FieldAccess, FieldMetadata, FieldType, FieldValue

_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_ERROR_BODY_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 200


# -- configuration ------------------------------------------------------------------------------


class BearerAuth(BaseModel):
    """``Authorization: Bearer <token>``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(BaseModel):
    """HTTP Basic authentication."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(BaseModel):
    """An API key in a request header."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["api_key"]
    header: str = "X-Api-Key"
    key: SecretStr


def nest_flat_keys(cls: type[BaseModel], data: Any) -> Any:
    """Accept ``auth__token = ...`` for ``auth.token``: that is how an environment variable such
    as ``ERPSYNC_CONNECTION_2__AUTH__TOKEN`` reaches nested settings (a ``before`` validator)."""
    if not isinstance(data, dict) or not any("__" in str(k) for k in data):
        return data
    nested: dict[str, Any] = {k: v for k, v in data.items() if "__" not in str(k)}
    for key, value in data.items():
        if "__" not in str(key):
            continue
        *path, last = str(key).split("__")
        target = nested
        for part in path:
            inner = target.get(part)
            target[part] = dict(inner) if isinstance(inner, dict) else {}
            target = target[part]
        target[last] = value
    return nested


class RestField(BaseModel):
    """One field of an actor type: its JSON property and metadata."""

    model_config = ConfigDict(extra="forbid")

    json_name: str | None = Field(None, description="JSON property; defaults to the field key.")
    type: FieldType = FieldType.Text
    display_name: str = ""
    max_length: int = Field(0, ge=0)
    access: FieldAccess = FieldAccess.Normal


class RestActorType(BaseModel):
    """How one actor type maps onto the API."""

    model_config = ConfigDict(extra="forbid")

    get_many: str = Field(description="Path template reading actors by key, with '{keys}'.")
    save: str = Field(description="Path of the batch update.")
    save_method: Literal["POST", "PUT", "PATCH"] = "POST"
    create: str | None = Field(None, description="Path creating one actor; None: cannot create.")
    changed_since: str | None = Field(
        None, description="Path template listing changed actors, with '{since}' and '{limit}'."
    )
    key_field: str = "id"
    modified_field: str | None = "updated_at"
    items_field: str | None = Field("items", description="Property holding arrays; None: bare.")
    errors_field: str = "errors"
    max_keys_per_request: int = Field(100, ge=1, le=10_000)
    fields: dict[str, RestField]

    @field_validator("fields", mode="before")
    @classmethod
    def _field_list(cls, value: Any) -> Any:
        return {str(k): {} for k in value} if isinstance(value, list) else value

    @field_validator("get_many", "save", "create", "changed_since")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("paths start with '/' (they are appended to base_url)")
        return value

    @field_validator("get_many")
    @classmethod
    def _keys(cls, value: str) -> str:
        if "{keys}" not in value:
            raise ValueError("the get_many template must contain '{keys}'")
        return value


class RestConfig(BaseModel):
    """Settings of a ``rest`` connection."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="Scheme, host, port and optional path prefix.")
    auth: Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")] | None = None
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers (kept secret: they often carry keys)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for a whole request.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to get a connection.")
    read_timeout: float = Field(15.0, gt=0, description="Seconds between bytes of a response.")
    max_connections: int = Field(10, ge=1, le=1000)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_retry_after: float = Field(60.0, ge=0, description="Cap on an honoured Retry-After.")
    idempotency_header: str = "Idempotency-Key"
    test_path: str | None = Field(None, description="GET path for test_connection.")
    actor_types: dict[str, RestActorType]

    _nest_flat_keys = model_validator(mode="before")(nest_flat_keys)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("put credentials in 'auth', not in base_url")
        if parts.query or parts.fragment:
            raise ValueError("base_url takes no query or fragment")
        return value.rstrip("/")


# -- value conversion ---------------------------------------------------------------------------


def _to_text(value: Any) -> FieldValue:
    """JSON value -> the engine's text form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _to_json(value: FieldValue, kind: FieldType) -> Any:
    """Engine text -> JSON typed by the field; ValueError when it does not parse."""
    if value is None:
        return None
    if kind is FieldType.Integer:
        return int(value) if value.strip() else None
    if kind is FieldType.Double:
        number = float(value) if value.strip() else None
        if number is not None and not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if kind is FieldType.Checkbox:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no", ""):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return value


def _retry_after(header: str | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), clamped to ``[0, cap]``."""
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _clean(text: str) -> str:
    """A short, printable excerpt of text that came from the ERP."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    excerpt = " ".join(printable.split())
    if len(excerpt) > _MESSAGE_LIMIT:
        excerpt = excerpt[:_MESSAGE_LIMIT] + "…"
    return excerpt


# -- the connector ------------------------------------------------------------------------------


class RestConnector(BaseConnector[RestConfig]):
    """Connector over a JSON REST API (see the module documentation for the conventions)."""

    name = "rest"
    config_model = RestConfig

    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Open the connection's HTTP session (a pooled connector, timeouts, auth headers)."""
        config = self.config
        headers = {"Accept": "application/json"}
        headers.update({k: v.get_secret_value() for k, v in config.headers.items()})
        if isinstance(config.auth, BearerAuth):
            headers["Authorization"] = f"Bearer {config.auth.token.get_secret_value()}"
        elif isinstance(config.auth, ApiKeyAuth):
            headers[config.auth.header] = config.auth.key.get_secret_value()
        elif isinstance(config.auth, BasicAuth):
            pair = f"{config.auth.username}:{config.auth.password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=config.timeout,
                connect=config.connect_timeout,
                sock_read=config.read_timeout,
            ),
            connector=aiohttp.TCPConnector(limit=config.max_connections),
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ConfigurationError("connector is not open")
        return self._session

    # -- HTTP -----------------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        auth = self.config.auth
        found = [v.get_secret_value() for v in self.config.headers.values()]
        if isinstance(auth, BearerAuth):
            found.append(auth.token.get_secret_value())
        elif isinstance(auth, ApiKeyAuth):
            found.append(auth.key.get_secret_value())
        elif isinstance(auth, BasicAuth):
            found.append(auth.password.get_secret_value())
        return found

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return its parsed JSON; raise the taxonomy's errors."""
        url = yarl.URL(self.config.base_url + path, encoded=True)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        send_headers = dict(headers or {})
        if data is not None:
            send_headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=data, headers=send_headers, allow_redirects=False
            ) as response:
                if response.status >= 300:
                    raw = await self._read(response, min(_ERROR_BODY_LIMIT, self._limit), what)
                    raise self._status_error(what, response, raw)
                raw = await self._read(response, self._limit, what)
        except ConnectorError:
            raise
        except TimeoutError:
            raise TransientError(f"{what}: timed out") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransientError(
                f"{what}: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        except aiohttp.ClientError as exc:
            raise PermanentError(
                f"{what}: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise PermanentError(f"{what}: the response is not JSON") from None

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {self._redact(_clean(str(exc)))}"

    @property
    def _limit(self) -> int:
        return self.config.max_response_bytes

    async def _read(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """Read at most ``limit`` bytes, whatever Content-Length claims."""
        declared = response.content_length
        if declared is not None and declared > limit and response.status < 300:
            raise PermanentError(f"{what}: response of {declared} bytes exceeds {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                if response.status >= 300:
                    chunks.append(chunk[: limit - (size - len(chunk))])
                    break
                raise PermanentError(f"{what}: response exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(
        self, what: str, response: aiohttp.ClientResponse, raw: bytes
    ) -> ConnectorError:
        detail = self._detail(raw)
        message = f"{what}: HTTP {response.status}" + (f": {detail}" if detail else "")
        status = response.status
        if status in _TRANSIENT_STATUSES or status >= 500:
            retry = _retry_after(response.headers.get("Retry-After"), self.config.max_retry_after)
            return TransientError(message, retry_after=retry)
        if status in (401, 403):
            return ConfigurationError(message + " (check the credentials in 'auth')")
        return PermanentError(message)

    def _detail(self, raw: bytes) -> str:
        """The ERP's error message, if it sent a JSON one; never the whole body."""
        try:
            body = json.loads(raw)
        except ValueError:
            return ""
        if isinstance(body, dict):
            for key in ("message", "error", "detail", "title"):
                value = body.get(key)
                if isinstance(value, str):
                    return self._redact(_clean(value))
        return ""

    # -- helpers --------------------------------------------------------------------------------

    def _type(self, actor_type: str) -> RestActorType:
        try:
            return self.config.actor_types[actor_type]
        except KeyError:
            raise PermanentError(f"unsupported actor type {actor_type!r}") from None

    def _items(self, spec: RestActorType, body: Any, what: str) -> list[dict[str, Any]]:
        if body is None:
            return []
        if spec.items_field:
            items = body.get(spec.items_field) if isinstance(body, dict) else None
        else:
            items = body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            where = f"under {spec.items_field!r}" if spec.items_field else "at the top level"
            raise PermanentError(f"{what}: expected an array of objects {where}")
        return items

    def _actor(
        self, actor_type: str, spec: RestActorType, record: Mapping[str, Any], keys: Sequence[str]
    ) -> Actor:
        return Actor(
            actor_type=actor_type,
            key=_to_text(record.get(spec.key_field)) or "",
            fields={k: _to_text(record.get(spec.fields[k].json_name or k)) for k in keys},
            last_modified=(
                _to_text(record.get(spec.modified_field)) if spec.modified_field else None
            ),
        )

    def _field_keys(
        self, spec: RestActorType, actor_type: str, wanted: Sequence[str] | None
    ) -> list[str]:
        keys = list(spec.fields) if wanted is None else list(wanted)
        unknown = [k for k in keys if k not in spec.fields]
        if unknown:
            raise PermanentError(f"unknown fields for {actor_type}: {unknown}")
        return keys

    def _record(self, spec: RestActorType, fields: Mapping[str, FieldValue]) -> dict[str, Any]:
        """Engine values -> a JSON record; ValueError names the first bad field."""
        record: dict[str, Any] = {}
        for key, value in fields.items():
            field = spec.fields.get(key)
            if field is None:
                raise ValueError(f"unknown field {key!r}")
            try:
                record[field.json_name or key] = _to_json(value, field.type)
            except ValueError:
                raise ValueError(f"field {key!r}: {value!r} is not a valid {field.type}") from None
        return record

    # -- operations -----------------------------------------------------------------------------

    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult:
        """GET ``test_path``, or read no actors of the first actor type."""
        try:
            if self.config.test_path:
                await self._request("test connection", "GET", self.config.test_path)
            else:
                first = next(iter(self.config.actor_types), None)
                if first is not None:
                    await self.get_actors(GetActorsInput(first, ["-"], []))
        except ConnectorError as exc:
            return TestConnectionResult(ok=False, message=f"{exc.kind}: {exc.message}")
        return TestConnectionResult(ok=True, message=f"{self.config.base_url} answers")

    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        return ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: FieldsInput) -> FieldsResult:
        spec = self._type(request.actor_type)
        return FieldsResult(
            fields=[
                FieldMetadata(
                    key=key,
                    display_name=field.display_name or key,
                    type=field.type,
                    max_length=field.max_length,
                    access=field.access,
                )
                for key, field in spec.fields.items()
            ]
        )

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        spec = self._type(request.actor_type)
        keys = self._field_keys(spec, request.actor_type, request.field_keys)
        wanted = list(dict.fromkeys(request.keys))
        found: dict[str, Actor] = {}
        step = spec.max_keys_per_request
        for start in range(0, len(wanted), step):
            batch = wanted[start : start + step]
            path = spec.get_many.replace("{keys}", ",".join(quote(k, safe="") for k in batch))
            what = f"get {request.actor_type}"
            body = await self._request(what, "GET", path)
            asked = set(batch)
            for record in self._items(spec, body, what):
                actor = self._actor(request.actor_type, spec, record, keys)
                if actor.key in asked:  # never trust the ERP to answer only what we asked
                    found[actor.key] = actor
        return GetActorsResult(actors=[found[k] for k in wanted if k in found])

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        """One request per ``max_keys_per_request`` actors; each request is the ERP's batch."""
        spec = self._type(request.actor_type)
        failures: list[ActorFailure] = []
        records: list[dict[str, Any]] = []
        for actor in request.actors:
            try:
                record = self._record(spec, actor.fields)
            except ValueError as exc:
                failures.append(ActorFailure(actor.key, str(exc)))
                continue
            records.append({spec.key_field: actor.key, **record})
        saved: list[Actor] = []
        originals = {a.key: a for a in request.actors}
        step = spec.max_keys_per_request
        for start in range(0, len(records), step):
            batch = records[start : start + step]
            what = f"save {request.actor_type}"
            payload: Any = {spec.items_field: batch} if spec.items_field else batch
            body = await self._request(what, spec.save_method, spec.save, body=payload)
            sent = {str(r[spec.key_field]): r for r in batch}
            answered: set[str] = set()
            for item in self._items(spec, body, what):
                actor = self._actor(request.actor_type, spec, item, [])
                if actor.key in sent and actor.key not in answered:
                    answered.add(actor.key)
                    fields = dict(originals[actor.key].fields)
                    saved.append(Actor(request.actor_type, actor.key, fields, actor.last_modified))
            errors = body.get(spec.errors_field) if isinstance(body, dict) else None
            for error in errors if isinstance(errors, list) else []:
                key = _to_text(error.get(spec.key_field)) if isinstance(error, dict) else None
                if key in sent and key not in answered:
                    answered.add(key)
                    message = error.get("message") if isinstance(error, dict) else None
                    text = self._redact(_clean(message)) if isinstance(message, str) else "rejected"
                    failures.append(ActorFailure(key, text))
            failures += [
                ActorFailure(key, "not saved by the ERP") for key in sent if key not in answered
            ]
        return SaveActorsResult(saved=saved, failures=failures)

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        actor = request.actor
        spec = self._type(actor.actor_type)
        if spec.create is None:
            raise PermanentError(f"creating {actor.actor_type} is not configured")
        try:
            record = self._record(spec, actor.fields)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        if actor.key:
            record[spec.key_field] = actor.key
        headers = (
            {self.config.idempotency_header: request.idempotency_key}
            if request.idempotency_key
            else {}
        )
        what = f"create {actor.actor_type}"
        body = await self._request(what, "POST", spec.create, body=record, headers=headers)
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: expected the created object")
        created = self._actor(actor.actor_type, spec, body, list(spec.fields))
        if not created.key:
            raise PermanentError(f"{what}: the answer has no {spec.key_field!r}")
        return CreateActorResult(actor=created)

    async def get_actors_changed_since(self, request: ChangedSinceInput) -> ChangedSinceResult:
        """Actors changed on or after ``since`` (needs the ``changed_since`` path)."""
        spec = self._type(request.actor_type)
        if spec.changed_since is None:
            raise ConfigurationError(f"no 'changed_since' path for {request.actor_type}")
        keys = self._field_keys(spec, request.actor_type, request.field_keys)
        since = request.cursor or request.since or ""
        limit = request.limit or 1000
        extra = 2 if request.cursor else 1  # one to detect a next page, one for the cursor's
        path = spec.changed_since.replace("{since}", quote(since, safe="")).replace(
            "{limit}", str(limit + extra)
        )
        what = f"changes of {request.actor_type}"
        items = self._items(spec, await self._request(what, "GET", path), what)
        actors = [self._actor(request.actor_type, spec, item, keys) for item in items]
        if request.cursor:  # the cursor is the last stamp returned: skip what was on that page
            actors = [a for a in actors if a.last_modified != request.cursor]
        more = len(actors) > limit
        actors = actors[:limit]
        cursor = actors[-1].last_modified if more and actors else None
        return ChangedSinceResult(actors=actors, next_cursor=cursor)
