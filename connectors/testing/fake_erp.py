"""A small ERP REST API on a local port, for testing and benchmarking the ``rest`` connector.

It speaks the conventions the ``rest`` connector's defaults expect (see ``connectors/rest/``):

* ``GET  /api/{collection}?ids=a,b``        -> ``{"items": [record, ...]}`` (unknown ids left out)
* ``POST /api/{collection}/batch``          ``{"items": [record, ...]}`` -> saved items + errors
* ``POST /api/{collection}``                 one record (``Idempotency-Key`` honoured) -> 201
* ``GET  /api/{collection}/changes?since=`` -> records with ``updated_at >= since``, oldest first
* ``GET  /api/health``

A record is a JSON object with ``id`` (text key), ``updated_at`` (a global counter, so values of
different records are comparable) and typed field values. A batch is applied atomically: every
record is validated before any is written, and the handler never awaits between writes.

Faults can be queued to make the next matching requests slow, hang until released, answer
429/5xx (with ``Retry-After``), or send an oversized body.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from connectors.model import FieldType

JsonType = Literal["text", "integer", "number", "boolean"]

_JSON_TYPES: dict[str, FieldType] = {
    "text": FieldType.Text,
    "integer": FieldType.Integer,
    "number": FieldType.Double,
    "boolean": FieldType.Checkbox,
}


@dataclass
class Fault:
    """What to do to the next matching request(s).

    ``status`` answers with that status (and ``retry_after`` as the ``Retry-After`` header,
    ``body`` as the body when given); ``body`` alone answers 200 with it; ``delay`` waits that
    many seconds first; ``hang`` waits until :meth:`FakeErp.release`; ``oversized`` answers 200
    with that many bytes of JSON (streamed without Content-Length when ``chunked``).
    ``method``/``path`` restrict which requests it hits.
    """

    status: int | None = None
    retry_after: str | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    delay: float = 0.0
    hang: bool = False
    oversized: int = 0
    method: str | None = None
    path: str | None = None
    times: int = 1

    def matches(self, request: web.Request) -> bool:
        return (self.method is None or request.method == self.method) and (
            self.path is None or request.path.startswith(self.path)
        )


@dataclass
class Collection:
    """One resource of the fake ERP: typed fields and the records."""

    name: str
    fields: dict[str, JsonType]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    idempotency: dict[str, str] = field(default_factory=dict)


@dataclass
class Auth:
    """The credential the fake ERP demands (``kind`` None: no authentication)."""

    kind: Literal["bearer", "basic", "api_key"] | None = None
    secret: str = ""
    username: str = ""
    header: str = "X-Api-Key"


DEFAULT_COLLECTIONS: dict[str, dict[str, JsonType]] = {
    "customers": {
        "name": "text",
        "email": "text",
        "phone": "text",
        "credit_limit": "integer",
        "discount": "number",
        "active": "boolean",
    },
    "persons": {"first_name": "text", "last_name": "text", "email": "text"},
}


class FakeErp:
    """The fake ERP server. Use as ``async with FakeErp(...) as erp:``; ``erp.url`` is its base.

    ``collections`` maps a collection name to its field types; ``max_ids`` caps ids per read.
    ``requests`` counts requests and ``peers`` the client sockets seen (one pooled session
    reuses a few).
    """

    def __init__(
        self,
        collections: Mapping[str, Mapping[str, JsonType]] | None = None,
        *,
        auth: Auth | None = None,
        max_ids: int = 200,
    ) -> None:
        self.collections = {
            name: Collection(name, dict(fields))
            for name, fields in (collections or DEFAULT_COLLECTIONS).items()
        }
        self.auth = auth or Auth()
        self.max_ids = max_ids
        self.faults: list[Fault] = []
        self.requests = 0
        self.peers: set[Any] = set()
        self._clock = itertools.count(1)
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (for embedding in another server)."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/api/health", self._health),
                web.get("/api/{collection}", self._get_many),
                web.get("/api/{collection}/changes", self._changes),
                web.post("/api/{collection}/batch", self._save),
                web.post("/api/{collection}", self._create),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port) and return the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        """Stop serving; hanging requests are released first."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeErp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test helpers ---------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Queue a fault for the next matching request(s)."""
        self.faults.append(fault)
        return fault

    def release(self) -> None:
        """Let every hanging request go on."""
        self._released.set()

    def put(self, collection: str, values: Mapping[str, Any], key: str | None = None) -> str:
        """Insert or replace a record directly (typed JSON values); return its key."""
        coll = self.collections[collection]
        key = key or str(next(coll.next_id))
        coll.records[key] = {**values, "id": key, "updated_at": next(self._clock)}
        return key

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """A copy of a record, or None."""
        record = self.collections[collection].records.get(key)
        return None if record is None else dict(record)

    def field_types(self, collection: str) -> dict[str, FieldType]:
        """The SDK field type of each field of a collection."""
        return {k: _JSON_TYPES[t] for k, t in self.collections[collection].fields.items()}

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername"))
        fault = next((f for f in self.faults if f.times > 0 and f.matches(request)), None)
        if fault is not None:
            fault.times -= 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.hang:
                await self._released.wait()
            headers = dict(fault.headers)
            if fault.retry_after:
                headers["Retry-After"] = fault.retry_after
            if fault.status is not None or fault.body is not None:
                body = fault.body
                if body is None:
                    body = json.dumps({"message": f"injected {fault.status}"}).encode()
                return web.Response(
                    body=body,
                    status=fault.status or 200,
                    headers=headers,
                    content_type="application/json",
                )
            if fault.oversized:
                body = b'{"items": ["' + b"x" * fault.oversized + b'"]}'
                if not fault.chunked:
                    return web.Response(body=body, content_type="application/json")
                stream = web.StreamResponse(headers={"Content-Type": "application/json"})
                stream.enable_chunked_encoding()
                await stream.prepare(request)
                for start in range(0, len(body), 65536):
                    await stream.write(body[start : start + 65536])
                await stream.write_eof()
                return stream
        if not self._authorized(request):
            return web.json_response(
                {"message": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        response: web.StreamResponse = await handler(request)
        return response

    def _authorized(self, request: web.Request) -> bool:
        auth = self.auth
        if auth.kind is None:
            return True
        if auth.kind == "api_key":
            return hmac.compare_digest(request.headers.get(auth.header, ""), auth.secret)
        header = request.headers.get("Authorization", "")
        if auth.kind == "bearer":
            return hmac.compare_digest(header, f"Bearer {auth.secret}")
        expected = base64.b64encode(f"{auth.username}:{auth.secret}".encode()).decode()
        return hmac.compare_digest(header, f"Basic {expected}")

    def _collection(self, request: web.Request) -> Collection:
        try:
            return self.collections[request.match_info["collection"]]
        except KeyError:
            raise _error(404, "no such collection") from None

    def _check(self, coll: Collection, values: Mapping[str, Any]) -> str | None:
        """An error message when ``values`` has unknown fields or wrongly typed values."""
        for name, value in values.items():
            kind = coll.fields.get(name)
            if kind is None:
                return f"unknown field {name!r}"
            if value is None:
                continue
            ok = {
                "text": isinstance(value, str),
                "integer": isinstance(value, int) and not isinstance(value, bool),
                "number": isinstance(value, int | float) and not isinstance(value, bool),
                "boolean": isinstance(value, bool),
            }[kind]
            if not ok:
                return f"field {name!r} must be {kind}"
        return None

    # -- handlers -------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _get_many(self, request: web.Request) -> web.Response:
        coll = self._collection(request)
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if len(ids) > self.max_ids:
            raise _error(400, f"at most {self.max_ids} ids per request")
        items = [coll.records[i] for i in ids if i in coll.records]
        return web.json_response({"items": items})

    async def _changes(self, request: web.Request) -> web.Response:
        coll = self._collection(request)
        try:
            since = int(request.query.get("since") or 0)
            limit = int(request.query.get("limit") or 1000)
        except ValueError:
            raise _error(400, "since and limit must be integers") from None
        items = sorted(
            (r for r in coll.records.values() if r["updated_at"] >= since),
            key=lambda r: (r["updated_at"], r["id"]),
        )
        return web.json_response({"items": items[:limit]})

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise _error(400, "body is not JSON") from None

    async def _save(self, request: web.Request) -> web.Response:
        coll = self._collection(request)
        body = await self._body(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _error(400, "expected {'items': [objects]}")
        # Validate everything first, then write without awaiting: a batch is all or nothing.
        saved, errors = [], []
        updates: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            key = str(item.get("id", ""))
            values = {k: v for k, v in item.items() if k not in ("id", "updated_at")}
            problem = self._check(coll, values)
            if key not in coll.records:
                errors.append({"id": key, "message": f"no record {key!r}"})
            elif problem:
                errors.append({"id": key, "message": problem})
            else:
                updates.append((key, values))
        for key, values in updates:
            record = coll.records[key]
            record.update(values)
            record["updated_at"] = next(self._clock)
            saved.append(dict(record))
        return web.json_response({"items": saved, "errors": errors})

    async def _create(self, request: web.Request) -> web.Response:
        coll = self._collection(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _error(400, "expected an object")
        values = {k: v for k, v in body.items() if k not in ("id", "updated_at")}
        problem = self._check(coll, values)
        if problem:
            raise _error(422, problem)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key and idempotency_key in coll.idempotency:
            return web.json_response(coll.records[coll.idempotency[idempotency_key]], status=200)
        key = self.put(coll.name, values)
        if idempotency_key:
            coll.idempotency[idempotency_key] = key
        return web.json_response(coll.records[key], status=201)


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    422: web.HTTPUnprocessableEntity,
}


def _error(status: int, message: str) -> web.HTTPException:
    return _ERRORS[status](text=json.dumps({"message": message}), content_type="application/json")
