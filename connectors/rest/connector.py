"""The ``rest`` connector: one aiohttp session per connection, errors mapped to the taxonomy
(see :mod:`connectors.rest`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

import connectors as sdk
from connectors import httpkit
from connectors.rest.config import ApiKeyAuth, BasicAuth, BearerAuth, RestActorType, RestConfig

# -- the connector ------------------------------------------------------------------------------


class RestConnector(sdk.BaseConnector[RestConfig]):
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
            raise sdk.ConfigurationError("connector is not open")
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
                    raw = await self._read(
                        response, min(httpkit.ERROR_BODY_LIMIT, self._limit), what
                    )
                    raise self._status_error(what, response, raw)
                raw = await self._read(response, self._limit, what)
        except sdk.ConnectorError:
            raise
        except TimeoutError:
            raise sdk.TransientError(f"{what}: timed out") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise sdk.TransientError(
                f"{what}: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        except aiohttp.ClientError as exc:
            raise sdk.PermanentError(
                f"{what}: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        return httpkit.json_body(raw, what)

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {self._redact(httpkit.clean(str(exc)))}"

    @property
    def _limit(self) -> int:
        return self.config.max_response_bytes

    async def _read(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """Read at most ``limit`` bytes, whatever Content-Length claims."""
        declared = response.content_length
        if declared is not None and declared > limit and response.status < 300:
            raise sdk.PermanentError(f"{what}: response of {declared} bytes exceeds {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                if response.status >= 300:
                    chunks.append(chunk[: limit - (size - len(chunk))])
                    break
                raise sdk.PermanentError(f"{what}: response exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(
        self, what: str, response: aiohttp.ClientResponse, raw: bytes
    ) -> sdk.ConnectorError:
        detail = self._detail(raw)
        message = f"{what}: HTTP {response.status}" + (f": {detail}" if detail else "")
        status = response.status
        if status in httpkit.TRANSIENT_STATUSES or status >= 500:
            retry = httpkit.retry_after(
                response.headers.get("Retry-After"), self.config.max_retry_after
            )
            return sdk.TransientError(message, retry_after=retry)
        if status in (401, 403):
            return sdk.ConfigurationError(message + " (check the credentials in 'auth')")
        return sdk.PermanentError(message)

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
                    return self._redact(httpkit.clean(value))
        return ""

    # -- helpers --------------------------------------------------------------------------------

    def _type(self, actor_type: str) -> RestActorType:
        try:
            return self.config.actor_types[actor_type]
        except KeyError:
            raise sdk.PermanentError(f"unsupported actor type {actor_type!r}") from None

    def _items(self, spec: RestActorType, body: Any, what: str) -> list[dict[str, Any]]:
        if body is None:
            return []
        if spec.items_field:
            items = body.get(spec.items_field) if isinstance(body, dict) else None
        else:
            items = body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            where = f"under {spec.items_field!r}" if spec.items_field else "at the top level"
            raise sdk.PermanentError(f"{what}: expected an array of objects {where}")
        return items

    def _actor(
        self, actor_type: str, spec: RestActorType, record: Mapping[str, Any], keys: Sequence[str]
    ) -> sdk.Actor:
        return sdk.Actor(
            actor_type=actor_type,
            key=httpkit.to_text(record.get(spec.key_field)) or "",
            fields={k: httpkit.to_text(record.get(spec.fields[k].json_name or k)) for k in keys},
            last_modified=(
                httpkit.to_text(record.get(spec.modified_field)) if spec.modified_field else None
            ),
        )

    def _field_keys(
        self, spec: RestActorType, actor_type: str, wanted: Sequence[str] | None
    ) -> list[str]:
        keys = list(spec.fields) if wanted is None else list(wanted)
        unknown = [k for k in keys if k not in spec.fields]
        if unknown:
            raise sdk.PermanentError(f"unknown fields for {actor_type}: {unknown}")
        return keys

    def _record(self, spec: RestActorType, fields: Mapping[str, sdk.FieldValue]) -> dict[str, Any]:
        """Engine values -> a JSON record; ValueError names the first bad field."""
        record: dict[str, Any] = {}
        for key, value in fields.items():
            field = spec.fields.get(key)
            if field is None:
                raise ValueError(f"unknown field {key!r}")
            try:
                record[field.json_name or key] = httpkit.to_json(value, field.type)
            except ValueError:
                raise ValueError(f"field {key!r}: {value!r} is not a valid {field.type}") from None
        return record

    # -- operations -----------------------------------------------------------------------------

    async def test_connection(self, request: sdk.TestConnectionInput) -> sdk.TestConnectionResult:
        """GET ``test_path``, or read no actors of the first actor type."""
        return await httpkit.tested(self._probe(), f"{self.config.base_url} answers")

    async def _probe(self) -> None:
        if self.config.test_path:
            await self._request("test connection", "GET", self.config.test_path)
            return
        first = next(iter(self.config.actor_types), None)
        if first is not None:
            await self.get_actors(sdk.GetActorsInput(first, ["-"], []))

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        spec = self._type(request.actor_type)
        return sdk.FieldsResult(
            fields=[
                sdk.FieldMetadata(
                    key=key,
                    display_name=field.display_name or key,
                    type=field.type,
                    max_length=field.max_length,
                    access=field.access,
                )
                for key, field in spec.fields.items()
            ]
        )

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        spec = self._type(request.actor_type)
        keys = self._field_keys(spec, request.actor_type, request.field_keys)
        wanted = list(dict.fromkeys(request.keys))
        found: dict[str, sdk.Actor] = {}
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
        return sdk.GetActorsResult(actors=[found[k] for k in wanted if k in found])

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        """One request per ``max_keys_per_request`` actors; each request is the ERP's batch."""
        spec = self._type(request.actor_type)
        failures: list[sdk.ActorFailure] = []
        records: list[dict[str, Any]] = []
        for actor in request.actors:
            try:
                record = self._record(spec, actor.fields)
            except ValueError as exc:
                failures.append(sdk.ActorFailure(actor.key, str(exc)))
                continue
            records.append({spec.key_field: actor.key, **record})
        saved: list[sdk.Actor] = []
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
                    saved.append(
                        sdk.Actor(request.actor_type, actor.key, fields, actor.last_modified)
                    )
            errors = body.get(spec.errors_field) if isinstance(body, dict) else None
            for error in errors if isinstance(errors, list) else []:
                key = (
                    httpkit.to_text(error.get(spec.key_field)) if isinstance(error, dict) else None
                )
                if key in sent and key not in answered:
                    answered.add(key)
                    message = error.get("message") if isinstance(error, dict) else None
                    text = (
                        self._redact(httpkit.clean(message))
                        if isinstance(message, str)
                        else "rejected"
                    )
                    failures.append(sdk.ActorFailure(key, text))
            failures += [
                sdk.ActorFailure(key, "not saved by the ERP") for key in sent if key not in answered
            ]
        return sdk.SaveActorsResult(saved=saved, failures=failures)

    async def create_actor(self, request: sdk.CreateActorInput) -> sdk.CreateActorResult:
        actor = request.actor
        spec = self._type(actor.actor_type)
        if spec.create is None:
            raise sdk.PermanentError(f"creating {actor.actor_type} is not configured")
        try:
            record = self._record(spec, actor.fields)
        except ValueError as exc:
            raise sdk.PermanentError(str(exc)) from None
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
            raise sdk.PermanentError(f"{what}: expected the created object")
        created = self._actor(actor.actor_type, spec, body, list(spec.fields))
        if not created.key:
            raise sdk.PermanentError(f"{what}: the answer has no {spec.key_field!r}")
        return sdk.CreateActorResult(actor=created)

    async def get_actors_changed_since(
        self, request: sdk.ChangedSinceInput
    ) -> sdk.ChangedSinceResult:
        """Actors changed on or after ``since`` (needs the ``changed_since`` path)."""
        spec = self._type(request.actor_type)
        if spec.changed_since is None:
            raise sdk.ConfigurationError(f"no 'changed_since' path for {request.actor_type}")
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
        return httpkit.changes_page(actors, request.cursor, limit)
