"""A fake SuperOffice WebAPI (REST, ``/api/v1``) on a local port, for tests, demos and benchmarks.

Run it on its own with ``python -m connectors.testing.superoffice_fake --port 8090``. It serves
what the ``superoffice`` connector uses, shaped as SuperOffice's public reference documents it
(docs.superoffice.com, repository SuperOfficeDocs/superoffice-docs):

* ``GET /api/v1/{Contact|Person|Project|Sale}/{id}``: the entity (``ContactEntity`` ...), with
  list fields as ``{"Id": .., "Value": ..}`` and ``UserDefinedFields`` keyed by ProgId
  (``SuperOffice:1``).
* ``GET /api/v1/{Entity}?$select=..&$filter=..&$orderby=..&$top=..&$skip=..&$mode=FULL``: the
  archive (OData) list query. ``$filter`` understands ``<column> oneOf (1,2)``, ``<column> eq v``
  and ``<column> ge 'v'`` joined by ``and``. Rows are ``{"PrimaryKey", "EntityName", <columns>}``
  or, in FULL mode, ``{"PrimaryKey", "EntityName", "Column": {name: {"RawValue",
  "DisplayValue"}}}``; ``odata.nextLink`` when more rows match.
* ``PATCH /api/v1/{Entity}/{id}``: a JSON Patch (RFC 6902, ``replace``/``add``; paths are case
  insensitive, the leading slash optional) or a JSON Merge Patch object; answers the entity.
* ``POST /api/v1/Agents/Archive/GetAvailableColumns`` ``{"ProviderName": "contact"}``: the
  ``ArchiveColumnInfo`` list describing every column, user-defined fields included.
* ``GET /api/v1/MDOList/{listName}``: the items of a list (``MDOListItem``).
* ``POST /Login/api/PartnerSystemUser/Authenticate``: the Online system-user exchange (a signed
  system user token -> a JWT whose ``.../identity/ticket`` claim is a ``SOTicket``).

Authentication: ``Authorization: Basic`` (onsite users), ``SOTicket <ticket>`` and
``Bearer <token>``; with ``app_token`` set every call also needs ``SO-AppToken``. Errors are
SuperOffice's JSON: ``{"Error": true, "ErrorType", "ErrorMessage", "ErrorSource"}``.

A token bucket (``rate_limit`` calls/s) answers 429 with ``Retry-After``; ``latency`` delays
every call. Every API call is recorded in ``requests`` (method, path, query, JSON body; never a
header), and faults can be queued as for :class:`~connectors.testing.fake_erp.FakeErp`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hmac
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.testing.fake_erp import Fault

TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
SYSTEM_USER_PATH = "/Login/api/PartnerSystemUser/Authenticate"


@dataclass(frozen=True, slots=True)
class Column:
    """One archive column: its name, the entity property behind it and its restriction type."""

    name: str
    path: str
    type: str  # ArchiveColumnInfo.RestrictionType: string, int, decimal, bool, date, listAny
    display: str
    list_name: str = ""


@dataclass(frozen=True, slots=True)
class EntityKind:
    """One entity (``Contact``) and its archive provider (``contact``)."""

    name: str
    provider: str
    id_property: str
    id_column: str
    columns: tuple[Column, ...]


def _udfs(prefix: str, labels: Mapping[int, tuple[str, str]]) -> tuple[Column, ...]:
    return tuple(
        Column(f"{prefix}Udef/SuperOffice:{n}", f"UserDefinedFields/SuperOffice:{n}", kind, label)
        for n, (label, kind) in labels.items()
    )


UPDATED = Column("updatedDate", "Updated", "datetime", "Updated")

ENTITIES: dict[str, EntityKind] = {
    kind.name: kind
    for kind in (
        EntityKind(
            "Contact",
            "contact",
            "ContactId",
            "contactId",
            (
                Column("name", "Name", "string", "Company name"),
                Column("department", "Department", "string", "Department"),
                Column("orgNr", "OrgNr", "string", "VAT No."),
                Column("number2", "Number2", "string", "Code"),
                Column("category", "Category/Id", "listAny", "Category", "category"),
                Column("business", "Business/Id", "listAny", "Business", "business"),
                Column("email/emailAddress", "Emails/0/Value", "string", "E-mail"),
                Column("contactPhone/formattedNumber", "Phones/0/Value", "string", "Telephone"),
                Column("postAddress/city", "PostalAddress/City", "string", "City"),
                *_udfs(
                    "contact",
                    {
                        1: ("Customer number", "string"),
                        2: ("Credit limit", "int"),
                        3: ("Discount %", "decimal"),
                        4: ("Active customer", "bool"),
                        5: ("Customer since", "date"),
                    },
                ),
            ),
        ),
        EntityKind(
            "Person",
            "person",
            "PersonId",
            "personId",
            (
                Column("firstname", "Firstname", "string", "First name"),
                Column("lastname", "Lastname", "string", "Last name"),
                Column("title", "Title", "string", "Title"),
                Column("personEmail/emailAddress", "Emails/0/Value", "string", "E-mail"),
                Column(
                    "personMobilePhone/formattedNumber", "MobilePhones/0/Value", "string", "Mobile"
                ),
                Column("position", "Position/Id", "listAny", "Position", "position"),
                *_udfs("person", {1: ("Employee number", "string")}),
            ),
        ),
        EntityKind(
            "Project",
            "project",
            "ProjectId",
            "projectId",
            (
                Column("name", "Name", "string", "Project name"),
                Column("projectNumber", "ProjectNumber", "string", "Project number"),
                Column("type", "ProjectType/Id", "listAny", "Type", "projecttype"),
                Column("endDate", "EndDate", "date", "End date"),
                *_udfs("project", {1: ("Budget", "decimal")}),
            ),
        ),
        EntityKind(
            "Sale",
            "sale",
            "SaleId",
            "saleId",
            (
                Column("heading", "Heading", "string", "Sale"),
                Column("amount", "Amount", "decimal", "Amount"),
                Column("probPercent", "Probability", "int", "Probability %"),
                Column("saleDate", "Saledate", "date", "Sale date"),
                Column("saleTypeId", "SaleType/Id", "listAny", "Sale type", "saletype"),
                *_udfs("sale", {1: ("Order number", "string")}),
            ),
        ),
    )
}

LISTS: dict[str, dict[int, str]] = {
    "category": {1: "Customer", 2: "Prospect", 3: "Vendor", 4: "Partner"},
    "business": {1: "IT", 2: "Retail", 3: "Manufacturing", 4: "Finance"},
    "position": {1: "CEO", 2: "CFO", 3: "Buyer", 4: "Sales"},
    "projecttype": {1: "Internal", 2: "Delivery", 3: "Pre-sale"},
    "saletype": {1: "Licence", 2: "Services", 3: "Hardware"},
}

_COLUMN_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "decimal": (int, float),
    "bool": (bool,),
    "date": (str,),
    "listAny": (int,),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+)?$")
_CLAUSE = re.compile(r"^\s*([\w/:]+)\s+(oneOf|eq|ge|gt)\s+(.+?)\s*$", re.IGNORECASE)


@dataclass(slots=True)
class Recorded:
    """One API call the fake served (no headers: they carry credentials)."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Credentials:
    """What the fake accepts. Empty collections refuse that scheme."""

    users: dict[str, str] = field(default_factory=dict)
    """Basic: user name -> password (onsite)."""
    tickets: set[str] = field(default_factory=set)
    """Valid ``SOTicket`` values (issued by the system-user exchange or given)."""
    bearer_tokens: set[str] = field(default_factory=set)
    app_token: str | None = None
    """When set, every API call needs this ``SO-AppToken`` (Online)."""
    system_user_token: str | None = None
    """The tenant's system user token the exchange accepts (Online)."""
    partner_public_key: Any = None
    """The application's RSA public key verifying signed system user tokens."""
    context_identifier: str = "Cust12345"


class SuperOfficeFake:
    """The fake server. ``async with SuperOfficeFake(...) as so:``; ``so.url`` is the base URL
    (``so.url + "/api/v1/Contact/1"``). ``latency`` seconds per call, ``rate_limit`` calls/s
    (None: unlimited), ``page_size`` the most rows an archive query returns per page."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        page_size: int = 500,
    ) -> None:
        self.credentials = credentials or Credentials(users={"erpsync": "erpsync"})
        self.latency = latency
        self.rate_limit = rate_limit
        self.page_size = page_size
        self.records: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in ENTITIES}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.throttled = 0
        self.jwt_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._last_stamp = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self._tokens = float(rate_limit or 0)
        self._refilled = time.monotonic()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        app.add_routes(
            [
                web.post(SYSTEM_USER_PATH, self._system_user),
                web.post("/api/v1/Agents/Archive/GetAvailableColumns", self._columns),
                web.get("/api/v1/MDOList/{list}", self._list),
                web.get("/api/v1/{entity}", self._archive),
                web.get("/api/v1/{entity}/{id}", self._get),
                web.patch("/api/v1/{entity}/{id}", self._patch),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); return the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SuperOfficeFake:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test helpers ---------------------------------------------------------------------------

    @property
    def jwt_public_key_pem(self) -> str:
        """The PEM public key that verifies the system-user JWTs this fake issues."""
        return (
            self.jwt_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def add_fault(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def expire_tickets(self) -> None:
        """Every ticket issued so far stops working (the next call with one gets 401)."""
        self.credentials.tickets.clear()

    def put(self, entity: str, values: Mapping[str, Any], record_id: int | None = None) -> int:
        """Insert or replace a record given by archive column -> typed value; return its id."""
        kind = ENTITIES[entity]
        record_id = record_id or max(self.records[entity], default=0) + 1
        record: dict[str, Any] = {kind.id_property: record_id, "UserDefinedFields": {}}
        for column in kind.columns:
            value = values.get(column.name)
            self._store(record, column, value)
        record["Updated"] = self._stamp()
        self.records[entity][record_id] = record
        return record_id

    def get(self, entity: str, record_id: int) -> dict[str, Any] | None:
        """A record as archive column -> raw value, or None."""
        record = self.records[entity].get(record_id)
        if record is None:
            return None
        return {c.name: _raw(c, _get(record, c.path)) for c in ENTITIES[entity].columns}

    def calls(self, method: str | None = None) -> list[Recorded]:
        """Recorded API calls (optionally of one method), system-user exchanges left out."""
        return [
            r
            for r in self.requests
            if r.path.startswith("/api/") and (method is None or r.method == method)
        ]

    # -- plumbing -------------------------------------------------------------------------------

    def _stamp(self) -> str:
        now = max(dt.datetime.now(dt.UTC), self._last_stamp + dt.timedelta(microseconds=1))
        self._last_stamp = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%f")

    @staticmethod
    def _store(record: dict[str, Any], column: Column, value: Any) -> None:
        """Set a column's property; a list field gets its item's ``Id`` and ``Value``."""
        if column.type == "listAny":
            item = int(value or 0)
            _set(record, column.path, item)
            _set(
                record,
                column.path.rsplit("/", 1)[0] + "/Value",
                LISTS[column.list_name].get(item, ""),
            )
        else:
            _set(record, column.path, "" if column.type == "string" and value is None else value)

    def _take_token(self) -> float:
        """0 when a call may go now, else the seconds until it may (token bucket)."""
        if self.rate_limit is None:
            return 0.0
        now = time.monotonic()
        capacity = max(self.rate_limit, 1.0)
        self._tokens = min(capacity, self._tokens + (now - self._refilled) * self.rate_limit)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate_limit

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = "<not JSON>"
        entry = Recorded(time.monotonic(), request.method, request.path, dict(request.query), body)
        self.requests.append(entry)
        response = await self._handle(request, handler, entry)
        entry.status = response.status
        return response

    async def _handle(
        self, request: web.Request, handler: Any, entry: Recorded
    ) -> web.StreamResponse:
        wait = self._take_token()
        if wait > 0:
            self.throttled += 1
            return error(
                429,
                "SoTooManyRequestsException",
                "Too many requests",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = next((f for f in self.faults if f.times > 0 and f.matches(request)), None)
        if fault is not None:
            fault.times -= 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                headers = dict(fault.headers)
                if fault.retry_after:
                    headers["Retry-After"] = fault.retry_after
                if fault.body is not None:
                    return web.Response(
                        body=fault.body,
                        status=fault.status,
                        headers=headers,
                        content_type="application/json",
                    )
                return error(fault.status, "InjectedFault", f"injected {fault.status}", headers)
        if request.path != SYSTEM_USER_PATH and not self._authorized(request):
            return error(
                401,
                "SoAuthenticationException",
                "Authentication failed: the credentials are invalid or have expired",
                headers={"WWW-Authenticate": 'SOTicket, Basic realm="SuperOffice"'},
            )
        try:
            response: web.StreamResponse = await handler(request)
        except _ApiError as exc:
            return exc.response
        return response

    def _authorized(self, request: web.Request) -> bool:
        creds = self.credentials
        if creds.app_token is not None and not hmac.compare_digest(
            request.headers.get("SO-AppToken", ""), creds.app_token
        ):
            return False
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "soticket":
            return any(hmac.compare_digest(value, t) for t in list(creds.tickets))
        if scheme == "bearer":
            return any(hmac.compare_digest(value, t) for t in list(creds.bearer_tokens))
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            expected = creds.users.get(user)
            return expected is not None and hmac.compare_digest(password, expected)
        return False

    def _kind(self, request: web.Request) -> EntityKind:
        name = request.match_info["entity"]
        for kind in ENTITIES.values():
            if kind.name.lower() == name.lower():
                return kind
        raise _ApiError(404, "SoNotFoundException", f"No such resource {name!r}")

    def _record(self, request: web.Request) -> tuple[EntityKind, dict[str, Any]]:
        kind = self._kind(request)
        try:
            record_id = int(request.match_info["id"])
        except ValueError:
            raise _ApiError(400, "ArgumentException", "The id must be an integer") from None
        record = self.records[kind.name].get(record_id)
        if record is None:
            raise _ApiError(404, "SoNotFoundException", f"{kind.name} id {record_id} not found")
        return kind, record

    # -- handlers -------------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.Response:
        _, record = self._record(request)
        return web.json_response(record)

    async def _patch(self, request: web.Request) -> web.Response:
        kind, record = self._record(request)
        try:
            body = await request.json()
        except ValueError:
            raise _ApiError(400, "ArgumentException", "The body is not JSON") from None
        changes = _patch_changes(body)
        columns = {c.path.lower(): c for c in kind.columns}
        staged: list[tuple[Column, Any]] = []
        for path, value in changes:
            column = columns.get(path.strip("/").lower())
            if column is None:
                raise _ApiError(400, "ArgumentException", f"Cannot patch {path!r}")
            problem = _check(column, value)
            if problem:
                raise _ApiError(400, "ArgumentException", problem)
            staged.append((column, value))
        for column, value in staged:  # validated first: a patch is all or nothing
            self._store(record, column, value)
        if staged:
            record["Updated"] = self._stamp()
        return web.json_response(record)

    async def _archive(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        query = request.query
        by_name = {c.name.lower(): c for c in (*kind.columns, UPDATED)}
        by_name[kind.id_column.lower()] = Column(kind.id_column, kind.id_property, "int", "Id")
        select = [s.strip() for s in query.get("$select", "").split(",") if s.strip()]
        unknown = [s for s in select if s.lower() not in by_name]
        if unknown:
            raise _ApiError(400, "ArgumentException", f"Unknown column(s) {unknown}")
        columns = [by_name[s.lower()] for s in select] or list(kind.columns)
        rows = list(self.records[kind.name].values())
        clauses: list[str] = re.split(r"\s+and\s+", query.get("$filter", ""), flags=re.IGNORECASE)
        for clause in (c for c in clauses if c):
            rows = _restrict(rows, clause, by_name)
        order = [o.strip() for o in query.get("$orderby", "").split(",") if o.strip()]
        for name in reversed(order or [kind.id_column]):
            col, _, direction = name.partition(" ")
            column = by_name.get(col.lower())
            if column is None:
                raise _ApiError(400, "ArgumentException", f"Cannot order by {col!r}")
            rows.sort(key=lambda r: _sortable(_get(r, column.path)), reverse=direction == "desc")
        try:
            skip = int(query.get("$skip", 0))
            top = min(int(query.get("$top", self.page_size)), self.page_size)
        except ValueError:
            raise _ApiError(400, "ArgumentException", "$top and $skip are integers") from None
        page = rows[skip : skip + top]
        full = query.get("$mode", "").upper() == "FULL"
        body: dict[str, Any] = {
            "odata.metadata": f"{self.url}/api/v1/archive$metadata",
            "value": [_row(kind, r, columns, full) for r in page],
        }
        if skip + top < len(rows):
            more = dict(query)
            more["$skip"] = str(skip + top)
            body["odata.nextLink"] = str(request.url.with_query(more))
        return web.json_response(body)

    async def _columns(self, request: web.Request) -> web.Response:
        body = await request.json()
        provider = str(body.get("ProviderName", "")) if isinstance(body, dict) else ""
        kind = next((k for k in ENTITIES.values() if k.provider == provider.lower()), None)
        if kind is None:
            raise _ApiError(400, "ArgumentException", f"Unknown archive provider {provider!r}")
        infos = [
            Column(kind.id_column, kind.id_property, "int", "Id"),
            *kind.columns,
            UPDATED,
        ]
        return web.json_response([_column_info(c) for c in infos])

    async def _list(self, request: web.Request) -> web.Response:
        items = LISTS.get(request.match_info["list"].lower())
        if items is None:
            raise _ApiError(400, "ArgumentException", "Unknown list name")
        return web.json_response(
            [
                {
                    "Id": i,
                    "Name": n,
                    "ToolTip": "",
                    "Deleted": False,
                    "Rank": i,
                    "FullName": n,
                    "ChildItems": [],
                }
                for i, n in items.items()
            ]
        )

    async def _system_user(self, request: web.Request) -> web.Response:
        creds = self.credentials
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"IsSuccessful": False, "ErrorMessage": "Bad request"})
        signed = str(body.get("SignedSystemToken", ""))
        ok = (
            creds.app_token is not None
            and hmac.compare_digest(str(body.get("ApplicationToken", "")), creds.app_token)
            and body.get("ContextIdentifier") == creds.context_identifier
            and self._signature_ok(signed)
        )
        if not ok:
            return web.json_response(
                {"IsSuccessful": False, "ErrorMessage": "Failed to authenticate system user"}
            )
        ticket = f"7T:{secrets.token_urlsafe(24)}"
        creds.tickets.add(ticket)
        now = int(time.time())
        claims = {
            TICKET_CLAIM: ticket,
            "http://schemes.superoffice.net/identity/ctx": creds.context_identifier,
            "iss": "SuperOffice AS",
            "iat": now,
            "exp": now + 6 * 3600,
        }
        token = jwt.encode(claims, self.jwt_key, algorithm="RS256")
        return web.json_response({"IsSuccessful": True, "ErrorMessage": "", "Token": token})

    def _signature_ok(self, signed: str) -> bool:
        """``token.yyyyMMddHHmm.base64(RSA-SHA256(token.yyyyMMddHHmm))``, stamp within 10 min."""
        creds = self.credentials
        payload, _, signature = signed.rpartition(".")
        token, _, stamp = payload.rpartition(".")
        if creds.system_user_token is None or creds.partner_public_key is None:
            return False
        if not hmac.compare_digest(token, creds.system_user_token):
            return False
        try:
            when = dt.datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=dt.UTC)
            creds.partner_public_key.verify(
                base64.b64decode(signature), payload.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return False
        return abs((dt.datetime.now(dt.UTC) - when).total_seconds()) <= 600


# -- helpers ------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.response = error(status, error_type, message)


def error(
    status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """SuperOffice's error JSON."""
    body = {
        "Error": True,
        "ErrorType": error_type,
        "ErrorMessage": message,
        "ErrorSource": "SuperOffice.WebApi",
    }
    return web.json_response(body, status=status, headers=dict(headers or {}))


def _parts(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/") if p]


def _get(record: Mapping[str, Any], path: str) -> Any:
    node: Any = record
    for part in _parts(path):
        if isinstance(node, list):
            index = int(part)
            node = node[index] if index < len(node) else None
        elif isinstance(node, dict):
            node = next((v for k, v in node.items() if k.lower() == part.lower()), None)
        else:
            return None
    return node


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = _parts(path)
    node: Any = record
    for i, part in enumerate(parents):
        nxt = parents[i + 1] if i + 1 < len(parents) else last
        empty: Any = [] if nxt.isdigit() else {}
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append({} if not nxt.isdigit() else [])
            node = node[index]
        else:
            key = next((k for k in node if k.lower() == part.lower()), part)
            node = node.setdefault(key, empty)
    if isinstance(node, list):
        index = int(last)
        while len(node) <= index:
            node.append(None)
        node[index] = value
    else:
        key = next((k for k in node if k.lower() == last.lower()), last)
        node[key] = value


def _patch_changes(body: Any) -> list[tuple[str, Any]]:
    """(path, value) pairs of a JSON Patch or JSON Merge Patch document."""
    if isinstance(body, list):
        changes = []
        for op in body:
            if not isinstance(op, dict) or op.get("op") not in ("replace", "add"):
                raise _ApiError(400, "ArgumentException", "Only 'replace' and 'add' are supported")
            changes.append((str(op.get("path", "")), op.get("value")))
        return changes
    if isinstance(body, dict):
        flat: list[tuple[str, Any]] = []

        def walk(prefix: str, node: Mapping[str, Any]) -> None:
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(f"{prefix}{key}/", value)
                else:
                    flat.append((prefix + key, value))

        walk("", body)
        return flat
    raise _ApiError(400, "ArgumentException", "Expected a JSON Patch array or a merge patch object")


def _check(column: Column, value: Any) -> str | None:
    if value is None:
        return None if column.type != "listAny" else f"{column.name}: an Id is required"
    types = _COLUMN_TYPES.get(column.type, (str,))
    if isinstance(value, bool) and column.type != "bool":
        return f"{column.name} must be {column.type}"
    if not isinstance(value, types):
        return f"{column.name} must be {column.type}"
    if column.type == "date" and not (isinstance(value, str) and _DATE.match(value)):
        return f"{column.name} must be a date (yyyy-MM-dd)"
    if column.type == "listAny" and value and value not in LISTS[column.list_name]:
        return f"{column.name}: no item {value} in list {column.list_name!r}"
    return None


def _raw(column: Column, value: Any) -> Any:
    if column.type == "listAny":
        return value if isinstance(value, int) else 0
    return value


def _sortable(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def _restrict(
    rows: list[dict[str, Any]], clause: str, columns: Mapping[str, Column]
) -> list[dict[str, Any]]:
    match = _CLAUSE.match(clause)
    if match is None:
        raise _ApiError(400, "ArgumentException", f"Cannot parse $filter {clause!r}")
    name, operator, operand = match.groups()
    column = columns.get(name.lower())
    if column is None:
        raise _ApiError(400, "ArgumentException", f"Unknown column {name!r} in $filter")
    operator = operator.lower()
    if operator == "oneof":
        inner = operand.strip().removeprefix("(").removesuffix(")")
        try:
            wanted = {int(v) for v in inner.split(",") if v.strip()}
        except ValueError:
            raise _ApiError(400, "ArgumentException", "oneOf takes integers") from None
        return [r for r in rows if _raw(column, _get(r, column.path)) in wanted]
    value: Any = operand.strip().strip("'")
    if column.type == "int":
        value = int(value)
    if operator == "eq":
        return [r for r in rows if _get(r, column.path) == value]
    if operator == "gt":
        return [r for r in rows if (v := _get(r, column.path)) is not None and v > value]
    return [r for r in rows if (v := _get(r, column.path)) is not None and v >= value]


def _display(column: Column, raw: Any) -> str:
    if column.type == "listAny":
        return LISTS[column.list_name].get(raw or 0, "")
    return "" if raw is None else str(raw)


def _row(
    kind: EntityKind, record: Mapping[str, Any], columns: list[Column], full: bool
) -> dict[str, Any]:
    key = record[kind.id_property]
    row: dict[str, Any] = {"PrimaryKey": key, "EntityName": kind.provider}
    values = {c.name: _raw(c, _get(record, c.path)) for c in columns}
    if not full:
        row.update({c.name: _display(c, values[c.name]) for c in columns})
        return row
    row["Column"] = {
        c.name: {
            "RawValue": values[c.name],
            "DisplayValue": _display(c, values[c.name]),
            "TooltipHint": f"{{{kind.provider}_id={key}}}",
            "LinkHint": "",
        }
        for c in columns
    }
    return row


def _column_info(column: Column) -> dict[str, Any]:
    return {
        "DisplayName": column.display,
        "DisplayTooltip": column.display,
        "Name": column.name,
        "RestrictionType": column.type,
        "RestrictionListName": column.list_name,
        "CanOrderBy": True,
        "CanRestrictBy": True,
        "IsVisible": True,
        "ExtraInfo": "",
        "Width": "",
        "IconHint": "",
    }


# -- command line -------------------------------------------------------------------------------


def seed(fake: SuperOfficeFake, contacts: int, persons: int) -> None:
    """Contacts with ids 1..contacts and persons with ids 1..persons (the demo's CRM records)."""
    cities = ("Oslo", "Bergen", "Trondheim", "Stavanger", "Tromsø")
    for n in range(1, contacts + 1):
        fake.put(
            "Contact",
            {
                "name": f"Company {n}",
                "orgNr": f"NO{900000 + n}",
                "email/emailAddress": f"post@company{n}.example",
                "contactPhone/formattedNumber": f"+47 2200 {n:04d}",
                "postAddress/city": cities[n % len(cities)],
                "category": 1,
            },
            n,
        )
    for n in range(1, persons + 1):
        fake.put(
            "Person",
            {
                "firstname": f"Kari{n}",
                "lastname": "Nordmann",
                "personEmail/emailAddress": f"kari{n}@example.com",
                "personMobilePhone/formattedNumber": f"+47 900 {n:05d}",
            },
            n,
        )


async def _serve(args: argparse.Namespace) -> None:
    fake = SuperOfficeFake(
        Credentials(users={args.user: args.password}),
        latency=args.latency_ms / 1000,
        rate_limit=args.rate_limit,
    )
    seed(fake, args.contacts, args.persons)
    url = await fake.start(args.host, args.port)
    print(
        f"fake SuperOffice WebAPI on {url}/api/v1 (Basic user {args.user!r}); Ctrl-C stops it",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake SuperOffice WebAPI for erpsync demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--user", default="erpsync")
    parser.add_argument("--password", default="erpsync-demo")
    parser.add_argument("--contacts", type=int, default=1000, help="contacts 1..N to create")
    parser.add_argument("--persons", type=int, default=2000, help="persons 1..N to create")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="calls/s (429 beyond)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
