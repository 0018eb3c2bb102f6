"""``superoffice``: the CRM side of erpsync over SuperOffice's WebAPI REST (``/api/v1``).

CRM actor types ``Contact``, ``Person``, ``Project`` and ``Sale``. References (SuperOffice's public
docs, repository SuperOfficeDocs/superoffice-docs):

* fields: ``POST /api/v1/Agents/Archive/GetAvailableColumns`` ``{"ProviderName": "contact"}``
  describes every archive column (``ArchiveColumnInfo``: ``Name``, ``DisplayName``,
  ``RestrictionType``, ``RestrictionListName``). A field key is the column name (``orgNr``,
  ``category``) or, for a user-defined field, its ProgId (``SuperOffice:1``, from the column
  ``contactUdef/SuperOffice:1``); list (MDO) fields carry the item id and name their list, whose
  items ``list_items`` reads from ``GET /api/v1/MDOList/{list}``.
* reads: one archive (OData) query per page of keys, ``GET /api/v1/Contact?$select=<mapped
  columns>&$filter=contactId oneOf (1,2,..)&$mode=FULL`` (raw values, not display texts),
  following ``odata.nextLink``; never one GET per record.
* writes: one ``PATCH /api/v1/Contact/{id}`` per changed record with a JSON Patch (RFC 6902) of
  exactly the fields given, so fields erpsync does not map are never touched. A cancelled save
  finishes its PATCHes in the background, so a batch is written whole or (if cancelled before it
  started) not at all.
* ``changed_since``: ``$filter=updatedDate ge '<stamp>'&$orderby=updatedDate,contactId``.
* auth: onsite ``Basic`` or ``SOTicket``; Online ``Bearer`` or ``SOTicket`` with ``SO-AppToken``,
  including the system-user flow: sign ``<system user token>.<yyyyMMddHHmm>`` with the
  application's RSA key (SHA256), exchange it at ``/Login/api/PartnerSystemUser/Authenticate``
  for a JWT, verify the JWT and use its ticket claim. On a 401 the ticket is renewed once and the
  call retried once.
* errors: SuperOffice's error JSON (``ErrorMessage``) on the outcome; 408/429/5xx and lost
  connections are transient (``Retry-After`` honoured, and no request goes out before it ends),
  401/403 configuration errors, other 4xx permanent. Secrets (passwords, tokens, tickets, app
  token, key) never appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import aiohttp
import jwt
import yarl
from aiolimiter import AsyncLimiter
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import connectors as sdk
from connectors import httpkit

TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"

# CRM actor type (also the entity resource) -> (archive provider, id column, updated column)
ENTITIES: dict[str, tuple[str, str, str]] = {
    "Contact": ("contact", "contactId", "updatedDate"),
    "Person": ("person", "personId", "updatedDate"),
    "Project": ("project", "projectId", "updatedDate"),
    "Sale": ("sale", "saleId", "updatedDate"),
}
_TYPES: dict[str, sdk.FieldType] = {
    "string": sdk.FieldType.Text,
    "int": sdk.FieldType.Integer,
    "decimal": sdk.FieldType.Double,
    "double": sdk.FieldType.Double,
    "bool": sdk.FieldType.Checkbox,
    "date": sdk.FieldType.Date,
    "listAny": sdk.FieldType.List,
    "list": sdk.FieldType.List,
}
# Archive columns that are nested entity properties (ContactEntity.PostalAddress.City, ...).
_PATHS = {
    "postAddress/city": "PostalAddress/City",
    "email/emailAddress": "Emails/0/Value",
    "personEmail/emailAddress": "Emails/0/Value",
    "contactPhone/formattedNumber": "Phones/0/Value",
    "personMobilePhone/formattedNumber": "MobilePhones/0/Value",
    "type": "ProjectType/Id",
    "saleTypeId": "SaleType/Id",
    "probPercent": "Probability",
}


# -- configuration ------------------------------------------------------------------------------


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasicAuth(_Auth):
    """Onsite: ``Authorization: Basic`` with a SuperOffice user."""

    type: Literal["basic"]
    username: str
    password: SecretStr


class TicketAuth(_Auth):
    """Onsite or Online: a fixed ``Authorization: SOTicket <ticket>``."""

    type: Literal["ticket"]
    ticket: SecretStr


class BearerAuth(_Auth):
    """Online: an OAuth access token, ``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretStr


class SystemUserAuth(_Auth):
    """Online system-user flow: the signed system user token is exchanged for a ticket."""

    type: Literal["system_user"]
    system_user_token: SecretStr = Field(description="From the administrator's consent.")
    private_key: SecretStr = Field(description="The application's RSA private key (PEM).")
    context_identifier: str = Field(description="The tenant, e.g. Cust12345.")
    login_url: str = Field(
        description="https://{env}.superoffice.com/Login/api/PartnerSystemUser/Authenticate"
    )
    jwt_public_key: str = Field(description="PEM key verifying the returned JWT (RS256).")

    @field_validator("login_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return httpkit.http_url(value, "login_url", "the other auth settings")


CrmType = Literal["Contact", "Person", "Project", "Sale"]


def _all_types() -> dict[CrmType, list[str] | None]:
    return {"Contact": None, "Person": None, "Project": None, "Sale": None}


class SuperOfficeConfig(BaseModel):
    """Settings of a ``superoffice`` connection."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        description="The tenant's WebAPI root: https://sod.superoffice.com/Cust12345 or "
        "http://server/SuperOffice (``/api/v1`` is appended)."
    )
    auth: Annotated[
        BasicAuth | TicketAuth | BearerAuth | SystemUserAuth, Field(discriminator="type")
    ]
    app_token: SecretStr | None = Field(None, description="SO-AppToken (Online client secret).")
    actor_types: dict[CrmType, list[str] | None] = Field(
        default_factory=_all_types,
        description="CRM actor types offered, each with its field keys (None: every column).",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds per request.")
    page_size: int = Field(200, ge=1, le=5000, description="Keys per archive query ($top).")
    write_concurrency: int = Field(8, ge=1, le=100, description="PATCHes in flight per save.")
    rate_limit: float | None = Field(None, gt=0, description="Requests per second (none: any).")
    max_connections: int = Field(20, ge=1, le=1000)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_retry_after: float = Field(60.0, ge=0, description="Cap on an honoured Retry-After.")

    _nest_flat_keys = model_validator(mode="before")(httpkit.nest_flat_keys)

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return httpkit.http_url(value, "base_url", "'auth'").rstrip("/")


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    key: str  # the field key: column name, or the ProgId of a user-defined field
    column: str  # the archive column
    path: str  # the entity property a JSON Patch writes
    meta: sdk.FieldMetadata


def _column(info: Mapping[str, Any]) -> _Column | None:
    """An archive column as a field; None for columns erpsync cannot write."""
    name = str(info.get("Name") or "")
    kind = _TYPES.get(str(info.get("RestrictionType") or ""))
    if not name or kind is None:
        return None
    list_name = str(info.get("RestrictionListName") or "") if kind is sdk.FieldType.List else ""
    if "Udef/" in name:
        key = name.split("Udef/", 1)[1]
        path = f"UserDefinedFields/{key}"
    else:
        key = name
        path = _PATHS.get(name) or (f"{name}/Id" if kind is sdk.FieldType.List else name)
    display = str(info.get("DisplayName") or key)
    meta = sdk.FieldMetadata(key, display, kind, list_name=list_name, description=name)
    return _Column(key, name, path, meta)


def _udf_aliases(found: Mapping[str, _Column], keys: Sequence[str]) -> dict[str, _Column]:
    """User-defined fields asked for by their label rather than their ProgId."""
    by_label = {c.meta.display_name.casefold(): c for c in found.values() if "Udef/" in c.column}
    aliases = {}
    for key in keys:
        column = by_label.get(key.casefold())
        if column is not None:
            meta = dataclasses.replace(column.meta, key=key)
            aliases[key] = dataclasses.replace(column, key=key, meta=meta)
    return aliases


def _text(value: Any, kind: sdk.FieldType) -> sdk.FieldValue:
    """A raw archive value -> erpsync's text form."""
    if value is None or value == "":
        return None
    if kind is sdk.FieldType.List:
        return None if value in (0, "0") else str(value)
    if kind is sdk.FieldType.Checkbox:
        return "1" if value in (True, 1, "1", "true", "True") else "0"
    if kind is sdk.FieldType.Date:
        return str(value)[:10]
    if isinstance(value, float) and value.is_integer() and kind is sdk.FieldType.Double:
        return str(value)
    return str(value)


def _value(value: sdk.FieldValue, kind: sdk.FieldType) -> Any:
    """erpsync text -> the JSON value SuperOffice expects; ValueError when it does not fit."""
    if kind is sdk.FieldType.List:
        return 0 if value is None or not value.strip() else int(value)
    if kind is sdk.FieldType.Text:
        return "" if value is None else value
    if kind is sdk.FieldType.Date and value is not None:
        dt.date.fromisoformat(value.strip()[:10])
        return value.strip()[:10]
    return httpkit.to_json(value, kind)


# -- the connector ------------------------------------------------------------------------------


class SuperOfficeConnector(sdk.BaseConnector[SuperOfficeConfig]):
    """SuperOffice CRM over the WebAPI (see the module documentation)."""

    name = "superoffice"
    config_model = SuperOfficeConfig

    _session: aiohttp.ClientSession | None = None
    _ticket: str | None = None
    _not_before: float = 0.0

    async def open(self) -> None:
        headers = {"Accept": "application/json"}
        if self.config.app_token is not None:
            headers["SO-AppToken"] = self.config.app_token.get_secret_value()
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(limit=self.config.max_connections),
        )
        self._columns: dict[str, dict[str, _Column]] = {}
        self._columns_lock = asyncio.Lock()
        self._auth_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        rate = self.config.rate_limit
        self._limiter = (
            None
            if rate is None
            else AsyncLimiter(rate, 1.0)
            if rate >= 1
            else AsyncLimiter(1, 1 / rate)
        )

    async def aclose(self) -> None:
        if self._session is None:
            return
        if self._background:
            await asyncio.wait(self._background, timeout=self.config.timeout)
        session, self._session = self._session, None
        await session.close()

    # -- secrets and auth -----------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        auth = self.config.auth
        found = [self._ticket or ""]
        if self.config.app_token is not None:
            found.append(self.config.app_token.get_secret_value())
        for value in vars(auth).values():
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        if isinstance(auth, BasicAuth):
            pair = f"{auth.username}:{auth.password.get_secret_value()}"
            found.append(base64.b64encode(pair.encode()).decode())
        return [s for s in found if s]

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    async def _authorization(self) -> str:
        auth = self.config.auth
        if isinstance(auth, BasicAuth):
            pair = f"{auth.username}:{auth.password.get_secret_value()}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        if isinstance(auth, TicketAuth):
            return f"SOTicket {auth.ticket.get_secret_value()}"
        if isinstance(auth, BearerAuth):
            return f"Bearer {auth.token.get_secret_value()}"
        if self._ticket is None:
            await self._renew(None)
        return f"SOTicket {self._ticket}"

    async def _renew(self, stale: str | None) -> None:
        """Exchange the signed system user token for a ticket, once for all waiting calls."""
        async with self._auth_lock:
            if self._ticket is not None and self._ticket != stale:
                return  # another call renewed it meanwhile
            self._ticket = await self._exchange()
            if self.context.logger is not None:
                self.context.logger.info("superoffice_ticket_renewed")

    def _signed_token(self, auth: SystemUserAuth) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")
        payload = f"{auth.system_user_token.get_secret_value()}.{stamp}"
        try:
            key = serialization.load_pem_private_key(
                auth.private_key.get_secret_value().encode(), password=None
            )
        except (ValueError, TypeError):
            raise sdk.ConfigurationError(
                "auth.private_key is not an RSA private key in PEM"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise sdk.ConfigurationError("auth.private_key is not an RSA private key")
        signature = key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{payload}.{base64.b64encode(signature).decode()}"

    async def _exchange(self) -> str:
        auth = self.config.auth
        assert isinstance(auth, SystemUserAuth)
        if self.config.app_token is None:
            raise sdk.ConfigurationError("the system-user flow needs app_token (the client secret)")
        body = {
            "SignedSystemToken": self._signed_token(auth),
            "ApplicationToken": self.config.app_token.get_secret_value(),
            "ContextIdentifier": auth.context_identifier,
            "ReturnTokenType": "JWT",
        }
        answer = await self._send("system user login", "POST", yarl.URL(auth.login_url), body, None)
        if not isinstance(answer, dict) or not answer.get("IsSuccessful"):
            reason = answer.get("ErrorMessage") if isinstance(answer, dict) else None
            detail = (
                self._redact(httpkit.clean(reason)) if isinstance(reason, str) and reason else ""
            )
            raise sdk.ConfigurationError(
                "system user login refused" + (f": {detail}" if detail else "")
            )
        try:
            claims = jwt.decode(
                str(answer.get("Token", "")),
                auth.jwt_public_key,
                algorithms=["RS256"],
                options={"verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise sdk.ConfigurationError(
                f"system user JWT rejected: {type(exc).__name__}"
            ) from None
        ticket = claims.get(TICKET_CLAIM)
        if not isinstance(ticket, str) or not ticket:
            raise sdk.ConfigurationError("system user JWT has no ticket claim")
        return ticket

    # -- HTTP -----------------------------------------------------------------------------------

    async def _api(self, what: str, method: str, path: str, body: Any = None) -> Any:
        """An authenticated WebAPI call; one ticket renewal and one retry on a 401."""
        url = yarl.URL(self.config.base_url + path, encoded=True)
        renewable = isinstance(self.config.auth, SystemUserAuth)
        for attempt in (1, 2):
            authorization = await self._authorization()
            used = self._ticket
            try:
                return await self._send(what, method, url, body, authorization)
            except _Unauthorized as exc:
                if not renewable or attempt == 2:
                    raise sdk.ConfigurationError(f"{exc.message} (check 'auth')") from None
                await self._renew(used)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, what: str, method: str, url: yarl.URL, body: Any, authorization: str | None
    ) -> Any:
        headers = {} if authorization is None else {"Authorization": authorization}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        wait = self._not_before - time.monotonic()
        if wait > 0:  # a Retry-After is still running: no request before it ends
            await asyncio.sleep(wait)
        if self._limiter is not None:
            await self._limiter.acquire()
        if self._session is None:
            raise sdk.ConfigurationError("connector is not open")
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                if response.status >= 300:
                    raw = await httpkit.read_at_most(response, httpkit.ERROR_BODY_LIMIT)
                    raise self._status_error(what, response, raw[: httpkit.ERROR_BODY_LIMIT])
                limit = self.config.max_response_bytes
                raw = await httpkit.read_at_most(response, limit)
                if len(raw) > limit:
                    raise sdk.PermanentError(f"{what}: response exceeds {limit} bytes")
        except sdk.ConnectorError:
            raise
        except TimeoutError:
            raise sdk.TransientError(f"{what}: timed out") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise sdk.TransientError(f"{what}: {type(exc).__name__}") from None
        except aiohttp.ClientError as exc:
            raise sdk.PermanentError(f"{what}: {type(exc).__name__}") from None
        return httpkit.json_body(raw, what)

    def _status_error(
        self, what: str, response: aiohttp.ClientResponse, raw: bytes
    ) -> sdk.ConnectorError:
        status = response.status
        detail = ""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = body.get("ErrorMessage") or body.get("Message")
            if isinstance(message, str):
                detail = self._redact(httpkit.clean(message))
        message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
        if status in httpkit.TRANSIENT_STATUSES:
            retry = httpkit.retry_after(
                response.headers.get("Retry-After"), self.config.max_retry_after
            )
            if retry:
                self._not_before = max(self._not_before, time.monotonic() + retry)
            return sdk.TransientError(message, retry_after=retry)
        if status == 401:
            return _Unauthorized(message)
        if status == 403:
            return sdk.ConfigurationError(message + " (check 'auth' and 'app_token')")
        return sdk.PermanentError(message)

    # -- metadata -------------------------------------------------------------------------------

    def _entity(self, actor_type: str) -> tuple[str, str, str]:
        if actor_type not in self.config.actor_types or actor_type not in ENTITIES:
            raise sdk.PermanentError(f"unsupported actor type {actor_type!r}")
        return ENTITIES[actor_type]

    async def _fields_of(self, actor_type: str) -> dict[str, _Column]:
        """The actor type's fields from GetAvailableColumns (read once per connector)."""
        provider, id_column, updated = self._entity(actor_type)
        async with self._columns_lock:
            if actor_type not in self._columns:
                infos = await self._api(
                    f"columns of {actor_type}",
                    "POST",
                    "/api/v1/Agents/Archive/GetAvailableColumns",
                    {"ProviderName": provider},
                )
                if not isinstance(infos, list):
                    raise sdk.PermanentError(f"columns of {actor_type}: expected an array")
                found: dict[str, _Column] = {}
                for info in infos:
                    column = _column(info) if isinstance(info, dict) else None
                    if column is not None and column.column not in (id_column, updated):
                        found.setdefault(column.key, column)
                wanted = self.config.actor_types[actor_type]  # type: ignore[index]
                if wanted is not None:
                    found.update(_udf_aliases(found, [k for k in wanted if k not in found]))
                    missing = [k for k in wanted if k not in found]
                    if missing:
                        raise sdk.ConfigurationError(
                            f"{actor_type}: SuperOffice has no fields {missing}"
                        )
                    found = {k: found[k] for k in wanted}
                self._columns[actor_type] = found
            return self._columns[actor_type]

    async def _selected(self, actor_type: str, keys: Sequence[str] | None) -> list[_Column]:
        columns = await self._fields_of(actor_type)
        if keys is None:
            return list(columns.values())
        unknown = [k for k in keys if k not in columns]
        if unknown:
            raise sdk.PermanentError(f"unknown fields for {actor_type}: {unknown}")
        return [columns[k] for k in keys]

    # -- reading --------------------------------------------------------------------------------

    async def _query(
        self, actor_type: str, columns: Sequence[_Column], params: dict[str, str]
    ) -> list[sdk.Actor]:
        """Run one archive query (following nextLink) and return its rows as actors."""
        _, id_column, updated = self._entity(actor_type)
        select = ",".join([id_column, updated, *(c.column for c in columns)])
        query = {"$select": select, "$mode": "FULL", **params}
        path: str | None = (
            f"/api/v1/{actor_type}?{urlencode(query, quote_via=quote, safe='$,/:()')}"
        )
        actors: list[sdk.Actor] = []
        while path is not None:
            body = await self._api(f"read {actor_type}", "GET", path)
            rows = body.get("value") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise sdk.PermanentError(f"read {actor_type}: expected an OData 'value' array")
            for row in rows:
                actor = self._actor(actor_type, row, columns, id_column, updated)
                if actor is not None:
                    actors.append(actor)
            path = self._next(body, actor_type)
        return actors

    def _next(self, body: Mapping[str, Any], actor_type: str) -> str | None:
        link = body.get("odata.nextLink")
        if not isinstance(link, str) or not link:
            return None
        base = yarl.URL(self.config.base_url)
        url = yarl.URL(link)
        if url.is_absolute() and url.origin() != base.origin():
            raise sdk.PermanentError(f"read {actor_type}: nextLink leaves {base.origin()}")
        prefix = base.path.rstrip("/")
        rel = url.path[len(prefix) :] if url.path.startswith(prefix) else url.path
        return rel + (f"?{url.raw_query_string}" if url.raw_query_string else "")

    @staticmethod
    def _actor(
        actor_type: str, row: Any, columns: Sequence[_Column], id_column: str, updated: str
    ) -> sdk.Actor | None:
        if not isinstance(row, dict) or not isinstance(row.get("Column"), dict):
            return None
        cells = row["Column"]

        def raw(name: str) -> Any:
            cell = cells.get(name)
            return cell.get("RawValue") if isinstance(cell, dict) else None

        key = raw(id_column) if raw(id_column) is not None else row.get("PrimaryKey")
        if key is None:
            return None
        fields = {c.key: _text(raw(c.column), c.meta.type) for c in columns}
        stamp = raw(updated)
        return sdk.Actor(actor_type, str(key), fields, None if stamp is None else str(stamp))

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        columns = await self._selected(request.actor_type, request.field_keys)
        _, id_column, _ = self._entity(request.actor_type)
        wanted = list(dict.fromkeys(k for k in request.keys if k.isdigit()))
        found: dict[str, sdk.Actor] = {}
        step = self.config.page_size
        for start in range(0, len(wanted), step):
            batch = wanted[start : start + step]
            params = {"$filter": f"{id_column} oneOf ({','.join(batch)})", "$top": str(len(batch))}
            asked = set(batch)
            for actor in await self._query(request.actor_type, columns, params):
                if actor.key in asked:
                    found[actor.key] = actor
        return sdk.GetActorsResult(actors=[found[k] for k in request.keys if k in found])

    async def get_actors_changed_since(
        self, request: sdk.ChangedSinceInput
    ) -> sdk.ChangedSinceResult:
        """Actors updated on or after ``since``, oldest first."""
        columns = await self._selected(request.actor_type, request.field_keys)
        _, id_column, updated = self._entity(request.actor_type)
        limit = request.limit or 1000
        since = request.cursor or request.since
        params = {"$orderby": f"{updated},{id_column}", "$top": str(limit + 2)}
        if since:
            params["$filter"] = f"{updated} ge '{since.replace(chr(39), '')}'"
        actors = await self._query(request.actor_type, columns, params)
        return httpkit.changes_page(actors, request.cursor, limit)

    # -- writing --------------------------------------------------------------------------------

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        columns = await self._fields_of(request.actor_type)
        names = await self._item_names(columns, request.actors)
        failures: list[sdk.ActorFailure] = []
        patches: list[tuple[sdk.Actor, list[dict[str, Any]]]] = []
        for actor in request.actors:
            try:
                patches.append((actor, self._patch(columns, actor, names)))
            except ValueError as exc:
                failures.append(sdk.ActorFailure(actor.key, str(exc)))
        if patches:
            # Shielded: once started, the batch is written whole even if this call is cancelled.
            task = asyncio.ensure_future(self._patch_all(request.actor_type, patches))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            saved, more = await asyncio.shield(task)
            failures += more
        else:
            saved = []
        return sdk.SaveActorsResult(saved=saved, failures=failures)

    async def _item_names(
        self, columns: Mapping[str, _Column], actors: Sequence[sdk.Actor]
    ) -> dict[str, dict[str, str]]:
        """Item name -> id of each list whose items the actors give by name, not by id."""
        lists = {
            column.meta.list_name
            for actor in actors
            for key, value in actor.fields.items()
            if (column := columns.get(key)) is not None
            and column.meta.type is sdk.FieldType.List
            and value
            and not value.strip().isdigit()
        }
        names: dict[str, dict[str, str]] = {}
        for name in sorted(lists):
            items = (await self.list_items(sdk.ListItemsInput(name))).items
            names[name] = {i.text.casefold(): i.key for i in items}
        return names

    @staticmethod
    def _patch(
        columns: Mapping[str, _Column], actor: sdk.Actor, names: Mapping[str, Mapping[str, str]]
    ) -> list[dict[str, Any]]:
        if not actor.key.isdigit():
            raise ValueError(f"no record {actor.key!r}")
        ops = []
        for key, value in actor.fields.items():
            column = columns.get(key)
            if column is None:
                raise ValueError(f"unknown field {key!r}")
            items = names.get(column.meta.list_name)
            if items is not None and value and not value.strip().isdigit():
                if value.strip().casefold() not in items:
                    raise ValueError(f"field {key!r}: no item {value!r} in list")
                value = items[value.strip().casefold()]
            try:
                converted = _value(value, column.meta.type)
            except ValueError:
                raise ValueError(
                    f"field {key!r}: {value!r} is not a valid {column.meta.type}"
                ) from None
            ops.append({"op": "replace", "path": f"/{column.path}", "value": converted})
        return ops

    async def _patch_all(
        self, actor_type: str, patches: Sequence[tuple[sdk.Actor, list[dict[str, Any]]]]
    ) -> tuple[list[sdk.Actor], list[sdk.ActorFailure]]:
        gate = asyncio.Semaphore(self.config.write_concurrency)

        async def one(actor: sdk.Actor, ops: list[dict[str, Any]]) -> sdk.Actor | sdk.ActorFailure:
            async with gate:
                try:
                    body = await self._api(
                        f"save {actor_type}", "PATCH", f"/api/v1/{actor_type}/{actor.key}", ops
                    )
                except sdk.TransientError as exc:
                    return sdk.ActorFailure(actor.key, exc.message, "transient")
                except sdk.PermanentError as exc:
                    return sdk.ActorFailure(actor.key, exc.message)
            stamp = body.get("Updated") if isinstance(body, dict) else None
            return sdk.Actor(
                actor_type, actor.key, dict(actor.fields), None if stamp is None else str(stamp)
            )

        results = await asyncio.gather(*(one(a, ops) for a, ops in patches))
        saved = [r for r in results if isinstance(r, sdk.Actor)]
        return saved, [r for r in results if isinstance(r, sdk.ActorFailure)]

    # -- the rest of the contract ---------------------------------------------------------------

    async def test_connection(self, request: sdk.TestConnectionInput) -> sdk.TestConnectionResult:
        first = next(iter(self.config.actor_types))
        probe = self.get_actors(sdk.GetActorsInput(first, ["0"], []))
        return await httpkit.tested(probe, f"{self.config.base_url} answers")

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        columns = await self._fields_of(request.actor_type)
        return sdk.FieldsResult(fields=[c.meta for c in columns.values()])

    async def list_items(self, request: sdk.ListItemsInput) -> sdk.ListItemsResult:
        """Items of an MDO list: key = the item id, text = its name."""
        name = request.list_name
        if not name or not name.replace("_", "").isalnum():
            raise sdk.PermanentError(f"no list {name!r}")
        body = await self._api(f"list {name}", "GET", f"/api/v1/MDOList/{name}")
        if not isinstance(body, list):
            raise sdk.PermanentError(f"list {name}: expected an array")
        items = [
            sdk.ListItem(str(i.get("Id")), str(i.get("Name") or ""))
            for i in body
            if isinstance(i, dict) and not i.get("Deleted")
        ]
        if request.item_keys is not None:
            keep = set(request.item_keys)
            items = [i for i in items if i.key in keep]
        return sdk.ListItemsResult(items=items)


class _Unauthorized(sdk.ConfigurationError):
    """A 401: the credentials were refused (a ticket may just have expired)."""
