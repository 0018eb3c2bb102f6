"""Arguments and answers shared by the ErpSync agent's link, view and read-through endpoints.

The rules SuperOffice's carriers imply: a connection argument names a configured ERP connection
the caller may touch (404, 403), actor types bind by name in any casing or by number, record ids
are positive, and a connector's failure is a 400 (it refused the request) or a 503 with
Retry-After (it is unavailable), never a 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import connectors as sdk
from engine.api.appkeys import SETTINGS
from engine.api.auth import PRINCIPAL, require_connection
from engine.api.bodies import as_int, int_argument, integer_text, text_argument
from engine.api.errors import ApiError
from engine.api.render import project, respond
from engine.mapping.model import ActorTypeMapping
from engine.settings import ConnectionSettings

ERPSYNC = "/api/v1/Agents/ErpSync"
MAX_ERP_KEY = 254  # SuperOffice's ErpExternalKey.ErpKey length
MAX_MESSAGE_HEADER = 300

# The carrier names of nested arrays' objects, for XML.
ITEMS = {
    "ErpFields": "FieldMetadata",
    "Actors": "ErpSyncActorSummary",
    "FieldMappings": "ErpSyncFieldMapping",
}


def answer(
    request: web.Request,
    data: Any,
    select: list[list[str]] | None,
    *,
    root: str,
    item: str = "item",
) -> web.Response:
    """``data`` in the caller's format (JSON or XML), projected by ``$select`` when given."""
    return respond(
        request, project(data, select) if select else data, root=root, item=item, items=ITEMS
    )


def connection_argument(
    request: web.Request, args: dict[str, Any], name: str, action: str
) -> ConnectionSettings:
    """The ERP connection an argument names: 404 when not configured, 403 when not allowed."""
    connection_id = int_argument(args, name)
    settings = request.app[SETTINGS]
    conn = settings.connection(connection_id) if connection_id > 0 else None
    if conn is None:
        raise ApiError(
            404, f"{name} {connection_id} is not a known connection", "SoNotFoundException"
        )
    require_connection(request[PRINCIPAL], connection_id, action)
    return conn


def enum_argument(
    args: dict[str, Any], name: str, enum: type[sdk.CrmActorType] | type[sdk.ErpActorType]
) -> str:
    """A CrmActorType/ErpActorType name (any casing) or its number."""
    value = args.get(name.lower())
    if value is None or value == "":
        raise ApiError(400, f"{name} is required")
    names: list[str] = [m.value for m in enum]
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = as_int(value, name)
        if 0 <= number < len(names):
            return names[number]
    elif isinstance(value, str):
        text = value.strip()
        spelled = integer_text(text)
        if spelled is not None and 0 <= spelled < len(names):
            return names[spelled]
        for member in names:
            if member.lower() == text.lower():
                return member
    raise ApiError(400, f"{name} {str(value)[:40]!r} is not one of " + ", ".join(names))


def crm_type_argument(args: dict[str, Any]) -> str:
    return enum_argument(args, "CrmActorType", sdk.CrmActorType)


def erp_type_argument(args: dict[str, Any], name: str = "ErpActorType") -> str:
    return enum_argument(args, name, sdk.ErpActorType)


def record_id_argument(args: dict[str, Any], name: str) -> str:
    value = int_argument(args, name)
    if value <= 0:
        raise ApiError(400, f"{name} must be a positive id, got {value}")
    return str(value)


def erp_key_argument(args: dict[str, Any]) -> str:
    key = text_argument(args, "ErpKey", MAX_ERP_KEY)
    if key is None or not key.strip():
        raise ApiError(400, "ErpKey is required")
    return key


def configured_mapping(conn: ConnectionSettings, erp_type: str) -> ActorTypeMapping:
    mapping = conn.mapping_for(erp_type)
    if mapping is None:
        raise ApiError(
            404,
            f"Connection {conn.id} ({conn.name}) has no {erp_type} actor type",
            "SoNotFoundException",
        )
    return mapping


def connector_failed(exc: sdk.ConnectorError, prefix: str = "") -> ApiError:
    if exc.kind == "permanent":
        return ApiError(400, f"{prefix}The connection refused the request: {exc.message}")
    return ApiError(
        503,
        f"{prefix}The connection is unavailable: {exc.message}; retry later",
        headers={"Retry-After": str(max(1, round(exc.retry_after or 5)))},
    )


def header_text(message: str) -> str:
    """A message (a connector's, a refusal's) as one printable ASCII header line."""
    text = " ".join(message.split()).encode("ascii", "backslashreplace").decode("ascii")
    return text[:MAX_MESSAGE_HEADER]
