"""The ErpSync agent's link endpoints and its read-only connection views.

Links: ``CreateActorLink``, ``ConnectActor``, ``TryConnectActor``, ``BreakActorLink``,
``CreateErpActorFromCrm``, ``GetConnectionsAndDisplayFields``. Views: ``GetAllConnections``,
``GetConnection``, ``GetErpSyncConnectionSummary``, ``GetActorTypeMapping``,
``GetCrmActorType``; and ``ToggleErpConnectionActive``, the one thing about a connection that
is stored, not configured. Shapes follow SuperOffice's carriers (ErpConnection,
ErpConnectionData, FieldMetadata, ErpSyncConnectionSummary, ErpSyncActorTypeMapping);
erpsync's additions are named in docs/api.md. The connections are the configured ones; links,
breaks, the last sync and whether a connection is active come from the store. A connection
outside the caller's allow-list is 403 (or left out of a list).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from aiohttp import web

import connectors as sdk
from engine.api.agent_args import (
    ERPSYNC,
    answer,
    configured_mapping,
    connection_argument,
    connector_failed,
    crm_type_argument,
    erp_key_argument,
    erp_type_argument,
    header_text,
    record_id_argument,
)
from engine.api.appkeys import ACTIVE_CONNECTIONS, ERP_ACTORS, POOL, SETTINGS
from engine.api.auth import PRINCIPAL
from engine.api.bodies import (
    BodyShape,
)
from engine.api.errors import ApiError
from engine.api.render import respond
from engine.api.routes import agent_arguments
from engine.mapping.model import ActorTypeMapping
from engine.settings import ConnectionSettings, Settings
from engine.store import connection_states
from engine.store import keys as keys_store
from engine.store import links as links_store
from engine.store.keys import Link
from engine.store.results import FieldChange

log = structlog.get_logger(__name__)

MAX_FIELD_VALUES = 500
_BOOL_TEXTS = ("true", "false", "null", "")
_CONNECTION_NAMESPACE = uuid.UUID("5b7d0c1e-8f64-4a8e-9a53-2f0c6d1e7a10")
CONFLICT_HEADER = "X-Link-Conflict"

_SHAPE = BodyShape(
    properties=frozenset(
        {
            "erpconnectionid",
            "erpsyncconnectionid",
            "connectionid",
            "crmrecordid",
            "crmentityid",
            "entityid",
            "crmactortype",
            "erpactortype",
            "actortype",
            "erpkey",
            "fieldvalues",
            "erpfieldkeyvalues",
            "includedeleted",
            "active",
        }
    ),
    objects=frozenset({"fieldvalues"}),
    maps=frozenset({"erpfieldkeyvalues"}),
)


routes = web.RouteTableDef()


# --- arguments ---------------------------------------------------------------------------


def _mapping(conn: ConnectionSettings, erp_type: str, crm_type: str) -> ActorTypeMapping:
    mapping = conn.mapping_for(erp_type)
    if mapping is None or mapping.crm != crm_type:
        raise ApiError(
            404,
            f"Connection {conn.id} ({conn.name}) maps no {erp_type} to {crm_type}; "
            "see GetActorTypeMapping",
            "SoNotFoundException",
        )
    return mapping


def _bool_argument(args: dict[str, Any], name: str) -> bool:
    value = args.get(name.lower())
    if value is None or value in ("", "null") or isinstance(value, bool):
        return value is True
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ApiError(400, f"{name} must be true or false")


def _field_values(args: dict[str, Any]) -> list[dict[str, Any]]:
    """ConnectActor's ErpSyncFieldValue items, checked for shape."""
    raw = args.get("fieldvalues")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ApiError(400, "FieldValues must be an array of ErpSyncFieldValue objects")
    if len(raw) > MAX_FIELD_VALUES:
        raise ApiError(400, f"FieldValues has more than {MAX_FIELD_VALUES} items")
    items = []
    for index, item in enumerate(raw):
        lowered = {str(k).lower(): v for k, v in item.items()}
        for name in ("DisplayName", "CrmFieldKey", "Value", "DisplayValue"):
            if not isinstance(lowered.get(name.lower()), str | None):
                raise ApiError(400, f"FieldValues[{index}].{name} must be a string")
        for name in ("SyncToCrm", "SyncToErp"):
            value = lowered.get(name.lower())
            # XML and form spell a null as "null" or nothing, as elsewhere in the agent
            if not (value is None or isinstance(value, bool) or value in _BOOL_TEXTS):
                raise ApiError(400, f"FieldValues[{index}].{name} must be true or false")
        items.append(lowered)
    return items


def _erp_field_values(args: dict[str, Any]) -> dict[str, str]:
    raw = args.get("erpfieldkeyvalues")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "ErpFieldKeyValues must be an object of ERP field keys to values")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str | None) or len(str(key)) > 255:
            raise ApiError(400, "ErpFieldKeyValues values must be strings")
        if value is not None and ("\x00" in value or len(value) > 4000):
            raise ApiError(400, f"ErpFieldKeyValues[{str(key)[:40]!r}] is not a usable value")
        values[str(key)] = value or ""
    return values


# --- links -------------------------------------------------------------------------------


async def _link(
    request: web.Request,
    conn: ConnectionSettings,
    args: dict[str, Any],
) -> tuple[str, str, Link | ApiError]:
    """CreateActorLink, ConnectActor and TryConnectActor: link. Returns the CRM type and record
    id, and the link, or the 409 naming the link in the way (nothing changed)."""
    crm_type = crm_type_argument(args)
    record_id = record_id_argument(args, "CrmRecordId")
    erp_type = erp_type_argument(args)
    erp_key = erp_key_argument(args)
    _mapping(conn, erp_type, crm_type)
    async with request.app[POOL].acquire() as db:
        internal_key = await keys_store.add_internal_key(db, crm_type, record_id)
        made = await links_store.link(db, internal_key, conn.id, erp_type, erp_key)
    if made.conflict is not None:
        conflict = _conflict(conn, crm_type, record_id, erp_type, erp_key, made.conflict, made.rule)
        return crm_type, record_id, conflict
    assert made.link is not None
    if made.created:
        log.info(
            "actor linked",
            internal_key=internal_key,
            connection=conn.id,
            user=request[PRINCIPAL].user,
        )
    return crm_type, record_id, made.link


def _conflict(
    conn: ConnectionSettings,
    crm_type: str,
    record_id: str,
    erp_type: str,
    erp_key: str,
    other: Link,
    rule: str | None,
) -> ApiError:
    if rule == "record":
        message = (
            f"{crm_type} {record_id} is already linked to {other.erp_actor_type} "
            f"{other.erp_key!r} on connection {conn.id} ({conn.name}); a record links to one "
            "actor per connection: break that link first (BreakActorLink)"
        )
    else:
        message = (
            f"{erp_type} {erp_key!r} on connection {conn.id} ({conn.name}) is already linked to "
            f"another record (internal key {other.internal_key_id}); an actor links to one "
            "record per connection"
        )
    return ApiError(409, message, "ConflictException")


@routes.post(f"{ERPSYNC}/CreateActorLink")
async def create_actor_link(request: web.Request) -> web.Response:
    """Link a CRM record to an ERP actor: ``true`` once linked (also when it already was)."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "link records on")
    _, _, made = await _link(request, conn, args)
    if isinstance(made, ApiError):
        raise made
    return respond(request, True, root="boolean")


@routes.post(f"{ERPSYNC}/ConnectActor")
async def connect_actor(request: web.Request) -> web.Response:
    """Link like CreateActorLink, then apply the chosen ``FieldValues``: a value with
    ``SyncToCrm`` is written to the CRM record's field, one with ``SyncToErp`` to the ERP
    fields mapped to it; only values that differ are written, each logged. 204."""
    refused = await _connect(request)
    if refused is not None:
        raise refused
    return web.Response(status=204)


@routes.post(f"{ERPSYNC}/TryConnectActor")
async def try_connect_actor(request: web.Request) -> web.Response:
    """ConnectActor answering ``true`` (linked, values applied) or ``false`` where it is 409: a
    link is in the way, nothing changed (that link named in ``X-Link-Conflict``). Every other
    refusal is ConnectActor's error."""
    refused = await _connect(request)
    if refused is None:
        return respond(request, True, root="boolean")
    log.info("actor not linked: a link is in the way", user=request[PRINCIPAL].user)
    return respond(
        request, False, root="boolean", headers={CONFLICT_HEADER: header_text(refused.message)}
    )


async def _connect(request: web.Request) -> ApiError | None:
    """ConnectActor's work: link, then apply the values; the 409 when a link is in the way
    (returned, nothing changed), any other refusal raised."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "link records on")
    mapping = _mapping(conn, erp_type_argument(args), crm_type_argument(args))
    to_crm, to_erp = _chosen_values(mapping, _field_values(args))
    crm_type, record_id, link = await _link(request, conn, args)
    if isinstance(link, ApiError):
        return link
    changes: list[FieldChange] = []
    actors = request.app[ERP_ACTORS]
    try:
        if to_crm:
            changed = await actors.write(0, crm_type, record_id, to_crm)
            if changed is None:
                raise _not_applied(404, f"{crm_type} {record_id} not found in the CRM")
            changes += [
                _change(link, _first_erp(mapping, crm), crm, True, old_new)
                for crm, old_new in changed.items()
            ]
        if to_erp:
            changed = await actors.write(conn.id, link.erp_actor_type, link.erp_key, to_erp)
            if changed is None:
                raise _not_applied(
                    404, f"{link.erp_actor_type} {link.erp_key!r} not found on {conn.name}"
                )
            changes += [
                _change(link, erp, mapping.fields[erp].crm, False, old_new)
                for erp, old_new in changed.items()
            ]
    except sdk.ConnectorError as exc:
        raise connector_failed(exc, "Linked, but the values were not applied: ") from None
    finally:
        if changes:  # what reached a system is logged, whatever failed after it
            await links_store.log_changes(request.app[POOL], changes)
    return None


def _chosen_values(
    mapping: ActorTypeMapping, items: list[dict[str, Any]]
) -> tuple[dict[str, sdk.FieldValue], dict[str, sdk.FieldValue]]:
    """ConnectActor's values by side: CRM field -> value, ERP field -> value."""
    to_crm: dict[str, sdk.FieldValue] = {}
    to_erp: dict[str, sdk.FieldValue] = {}
    for index, item in enumerate(items):
        crm_field = item.get("crmfieldkey")
        towards_crm = item.get("synctocrm") in (True, "true")
        towards_erp = item.get("synctoerp") in (True, "true")
        if not crm_field or not (towards_crm or towards_erp):
            continue  # nothing chosen for this field
        erp_fields = [e for e, f in mapping.fields.items() if f.crm == crm_field]
        if not erp_fields:
            raise ApiError(
                404,
                f"FieldValues[{index}].CrmFieldKey {str(crm_field)[:60]!r} is not mapped for "
                f"{mapping.erp.value}; see GetActorTypeMapping",
                "SoNotFoundException",
            )
        value = item.get("value")
        if towards_crm:
            to_crm[crm_field] = value
        if towards_erp:
            to_erp.update((erp, value) for erp in erp_fields)
    return to_crm, to_erp


def _first_erp(mapping: ActorTypeMapping, crm_field: str) -> str:
    return next(e for e, f in mapping.fields.items() if f.crm == crm_field)


def _change(
    link: Link,
    erp_field: str,
    crm_field: str,
    target_is_crm: bool,
    old_new: tuple[sdk.FieldValue, sdk.FieldValue],
) -> FieldChange:
    return FieldChange(
        connection_id=link.connection_id,
        internal_key_id=link.internal_key_id,
        external_key_id=link.id,
        erp_actor_type=link.erp_actor_type,
        erp_field=erp_field,
        crm_field=crm_field,
        target_is_crm=target_is_crm,
        old_value=old_new[0],
        new_value=old_new[1],
    )


def _not_applied(status: int, reason: str) -> ApiError:
    return ApiError(status, f"Linked, but the values were not applied: {reason}")


@routes.post(f"{ERPSYNC}/BreakActorLink")
async def break_actor_link(request: web.Request) -> web.Response:
    """Unlink: ``true`` when a link was broken, ``false`` when the record had none there."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "break links on")
    crm_type = crm_type_argument(args)
    record_id = record_id_argument(args, "CrmRecordId")
    pool = request.app[POOL]
    internal_key = await links_store.internal_key_of(pool, crm_type, record_id)
    broken = None
    if internal_key is not None:
        async with pool.acquire() as db:
            broken = await links_store.break_link(
                db, internal_key, conn.id, request[PRINCIPAL].user
            )
    if broken is not None:
        log.info("actor link broken", internal_key=internal_key, connection=conn.id)
    return respond(request, broken is not None, root="boolean")


@routes.post(f"{ERPSYNC}/CreateErpActorFromCrm")
async def create_erp_actor_from_crm(request: web.Request) -> web.Response:
    """Create the ERP actor from the CRM record (its mapped values, ``ErpFieldKeyValues`` on
    top) and link it: ``true``. 409 when the record is already linked there (nothing created)."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ConnectionId", "create actors on")
    crm_type = crm_type_argument(args)
    record_id = record_id_argument(args, "CrmEntityId")
    erp_type = erp_type_argument(args)
    _mapping(conn, erp_type, crm_type)
    values = _erp_field_values(args)
    pool = request.app[POOL]
    async with pool.acquire() as db:
        internal_key = await keys_store.add_internal_key(db, crm_type, record_id)
        existing = await links_store.links_of(db, internal_key)
    for link in existing:
        if link.connection_id == conn.id:
            raise _conflict(conn, crm_type, record_id, erp_type, "", link, "record")
    try:
        actor = await request.app[ERP_ACTORS].create_from_crm(
            conn.id,
            crm_type,
            record_id,
            erp_type,
            values,
            # the engine's own creates use the same key: one actor whoever creates it first
            f"erpsync:{internal_key}:{conn.id}",
        )
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    if actor is None:
        raise ApiError(404, f"{crm_type} {record_id} not found in the CRM", "SoNotFoundException")
    async with pool.acquire() as db:
        made = await links_store.link(
            db, internal_key, conn.id, erp_type, actor.key, actor.last_modified
        )
    if made.conflict is not None:
        error = _conflict(conn, crm_type, record_id, erp_type, actor.key, made.conflict, made.rule)
        raise ApiError(
            409,
            f"Created {erp_type} {actor.key!r} but could not link it: {error.message}",
            "ConflictException",
        )
    log.info("actor created and linked", internal_key=internal_key, connection=conn.id)
    return respond(request, True, root="boolean")


@routes.post(f"{ERPSYNC}/GetConnectionsAndDisplayFields")
async def get_connections_and_display_fields(request: web.Request) -> web.Response:
    """Per ERP connection mapping the record's CRM type: linked or not, with the linked
    actor's mapped fields read live (erpsync's ``Value``)."""
    args, select = await agent_arguments(request, _SHAPE)
    crm_type = crm_type_argument(args)
    record_id = record_id_argument(args, "EntityId")
    settings, principal = request.app[SETTINGS], request[PRINCIPAL]
    pool = request.app[POOL]
    internal_key = await links_store.internal_key_of(pool, crm_type, record_id)
    links: dict[int, Link] = {}
    broken: dict[int, links_store.BrokenLink] = {}
    if internal_key is not None:
        links = {
            link.connection_id: link for link in await links_store.links_of(pool, internal_key)
        }
        broken = {b.connection_id: b for b in await links_store.broken_of(pool, internal_key)}
    shown = [
        c
        for c in settings.connections
        if principal.may_touch(c.id) and any(m.crm == crm_type for m in c.actor_types)
    ]
    reads = await asyncio.gather(
        *(
            _display(request, c, crm_type, internal_key, links.get(c.id), broken.get(c.id))
            for c in shown
        )
    )
    return answer(request, reads, select, root="ArrayOfErpConnectionData", item="ErpConnectionData")


async def _display(
    request: web.Request,
    conn: ConnectionSettings,
    crm_type: str,
    internal_key: int | None,
    link: Link | None,
    broken: links_store.BrokenLink | None,
) -> dict[str, Any]:
    types = [m.erp.value for m in conn.actor_types if m.crm == crm_type]
    erp_type = link.erp_actor_type if link is not None else types[0]
    mapping = conn.mapping_for(erp_type)
    fields = list(mapping.fields) if mapping is not None else []
    values: dict[str, Any] = {}
    read_error = None
    if link is not None and fields:
        try:
            actor = await request.app[ERP_ACTORS].read(conn.id, erp_type, link.erp_key, fields)
        except sdk.ConnectorError as exc:
            read_error = exc.message
        else:
            if actor is None:
                read_error = f"{erp_type} {link.erp_key!r} not found"
            else:
                values = dict(actor.fields)
    return {
        "ErpConnectionId": conn.id,
        "ConnectionName": conn.name,
        "Connected": link is not None,
        "ErpFields": [
            _field_metadata(rank, name, values.get(name)) for rank, name in enumerate(fields, 1)
        ],
        "CrmActorType": crm_type,
        "ErpActorType": erp_type,
        "ErpActorTypes": types,
        "TableRight": None,
        "FieldProperties": {},
        # erpsync's: the link, a break, and why values are missing
        "InternalKeyId": internal_key,
        "ErpKey": None if link is None else link.erp_key,
        "LinkBroken": None
        if broken is None
        else {
            "ErpActorType": broken.erp_actor_type,
            "ErpKey": broken.erp_key,
            "BrokenBy": broken.broken_by,
            "BrokenAt": broken.broken_at.isoformat(timespec="milliseconds"),
        },
        "ReadError": read_error,
    }


def _field_metadata(rank: int, name: str, value: Any) -> dict[str, Any]:
    return {
        "FieldKey": name,
        "Rank": rank,
        "DisplayName": name,
        "DisplayDescription": "",
        "FieldType": "Text",
        "ListName": "",
        "DefaultValue": "",
        "MaxLength": 0,
        "Access": "ReadOnly",
        "ShowInSearch": False,
        "TableRight": None,
        "FieldProperties": {},
        "Value": value,  # erpsync's: the linked actor's current value
    }


# --- read-only views ---------------------------------------------------------------------


def connection_guid(conn: ConnectionSettings) -> str:
    """The connection's stable GUID (SuperOffice's ConnectionId): from its id."""
    return str(uuid.uuid5(_CONNECTION_NAMESPACE, f"connection:{conn.id}"))


def _all_access(settings: Settings, connection_id: int) -> bool:
    """True when no user entry or application list leaves the connection out."""
    lists = [u.connections for u in settings.auth.users] + [
        a.connections for a in settings.auth.apps
    ]
    return all(ids is None or connection_id in ids for ids in lists)


def erp_connection(
    settings: Settings,
    conn: ConnectionSettings,
    most_recent: dict[int, str],
    inactive: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """The ErpConnection carrier of a configured connection (its settings never shown);
    ``most_recent``: the continuous sync's timestamps by connection; ``inactive``: the
    connections set inactive (ToggleErpConnectionActive)."""
    return {
        "ErpConnectionId": conn.id,
        "ErpConnectorId": 0,
        "DisplayName": conn.name,
        "DisplayDescription": "",
        "Active": conn.id not in inactive,
        "ConnectionId": connection_guid(conn),
        "MostRecentTimestamp": most_recent.get(conn.id),
        "ConfigFields": {},
        "Deleted": False,
        "AllAccess": _all_access(settings, conn.id),
        "UserGroupAccessIds": [],
        "AssociateAccessIds": [],
        "TableRight": None,
        "FieldProperties": {},
        "Connector": conn.connector,  # erpsync's: the connector's entry-point name
    }


@routes.post(f"{ERPSYNC}/GetAllConnections")
async def get_all_connections(request: web.Request) -> web.Response:
    """The configured ERP connections the caller may touch."""
    args, select = await agent_arguments(request, _SHAPE)
    _bool_argument(args, "IncludeDeleted")  # nothing is deleted: configured means present
    settings, principal = request.app[SETTINGS], request[PRINCIPAL]
    recent, inactive = await _recent_and_inactive(request)
    shown = [
        erp_connection(settings, c, recent, inactive)
        for c in settings.connections
        if principal.may_touch(c.id)
    ]
    return answer(request, shown, select, root="ArrayOfErpConnection", item="ErpConnection")


@routes.post(f"{ERPSYNC}/GetConnection")
async def get_connection(request: web.Request) -> web.Response:
    args, select = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    recent, inactive = await _recent_and_inactive(request)
    info = erp_connection(request.app[SETTINGS], conn, recent, inactive)
    return answer(request, info, select, root="ErpConnection")


async def _recent_and_inactive(request: web.Request) -> tuple[dict[int, str], frozenset[int]]:
    """The continuous sync's timestamps and the inactive connections, read now (a view shows
    the stored state, not the per-process copy ForceResyncBatchTask checks)."""
    async with request.app[POOL].acquire() as db:
        recent = await links_store.most_recent_timestamps(db)
        inactive = await connection_states.inactive(db)
    return recent, inactive


ACTIVE_HEADER = "X-Connection-Active"


@routes.post(f"{ERPSYNC}/ToggleErpConnectionActive")
async def toggle_erp_connection_active(request: web.Request) -> web.Response:
    """Toggle the connection's Active state (erpsync's ``Active``: set it instead). Answers
    SuperOffice's string array of reasons the toggle failed: empty, it did not; the state it
    left is in the ``X-Connection-Active`` header."""
    args, _ = await agent_arguments(request, _SHAPE)
    wanted = None if args.get("active") in (None, "", "null") else _bool_argument(args, "Active")
    conn = connection_argument(request, args, "ErpConnectionId", "activate or deactivate")
    principal = request[PRINCIPAL]
    state = await connection_states.toggle(request.app[POOL], conn.id, principal.user, wanted)
    request.app[ACTIVE_CONNECTIONS].changed(conn.id, state.active)
    log.info(
        "connection activated" if state.active else "connection deactivated",
        connection=conn.id,
        connection_name=conn.name,
        by=principal.user,
    )
    reasons: list[str] = []  # nothing refuses a toggle: a failure is an HTTP error
    return respond(
        request,
        reasons,
        root="ArrayOfstring",
        item="string",
        headers={ACTIVE_HEADER: "true" if state.active else "false"},
    )


@routes.post(f"{ERPSYNC}/GetErpSyncConnectionSummary")
async def get_erp_sync_connection_summary(request: web.Request) -> web.Response:
    """The connection, its actor types and its last sync (the latest finished task with
    outcomes there), with erpsync's counts."""
    args, select = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpSyncConnectionId", "read")
    async with request.app[POOL].acquire() as db:
        activity = await links_store.activity(db, conn.id)
        inactive = await connection_states.inactive(db)
    summary = {
        "DisplayName": conn.name,
        "DisplayDescription": "",
        "Active": conn.id not in inactive,
        "Deleted": False,
        "LastSync": None
        if activity.last_sync is None
        else activity.last_sync.isoformat(timespec="milliseconds"),
        "Actors": [
            {
                "ActorType": m.erp.value,
                "HasMappings": bool(m.fields),
                "Defaults": "",
                "Mappings": ", ".join(
                    f"{erp} <-> {f.crm} ({f.direction.value})" for erp, f in m.fields.items()
                ),
                "TableRight": None,
                "FieldProperties": {},
            }
            for m in conn.actor_types
        ],
        "TableRight": None,
        "FieldProperties": {},
        # erpsync's
        "Links": activity.links,
        "BrokenLinks": activity.broken_links,
        "LastTaskId": activity.last_task_id,
        "LastTaskOutcomes": activity.last_outcomes,
    }
    return answer(request, summary, select, root="ErpSyncConnectionSummary")


@routes.post(f"{ERPSYNC}/GetActorTypeMapping")
async def get_actor_type_mapping(request: web.Request) -> web.Response:
    args, select = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    erp_type = erp_type_argument(args, "ActorType")
    mapping = configured_mapping(conn, erp_type)
    info = {
        "ErpConnectionId": conn.id,
        "IsActive": True,
        "FieldMappings": [
            {
                "ErpFieldId": rank,
                "CrmFieldKey": f.crm,
                "CrmDisplayName": f.crm,
                "CrmDisplayTooltip": "",
                "ErpFieldKey": erp_field,
                "FieldType": "Text",
                "ErpDisplayName": erp_field,
                "ErpDisplayTooltip": "",
                "SyncToCrm": f.direction.to_crm_enabled,
                "SyncToErp": f.direction.to_erp_enabled,
                "ShowInGui": False,
                "ShowInSearch": False,
                "AlreadyMapped": True,
                "MissingInERP": False,
                "MissingInCRM": False,
                "Access": "Normal",
                "ListReference": "",
                "TableRight": None,
                "FieldProperties": {},
            }
            for rank, (erp_field, f) in enumerate(mapping.fields.items(), 1)
        ],
        "ActorTypeErp": mapping.erp.value,
        "ActorTypeCrm": mapping.crm.value,
        "TableRight": None,
        "FieldProperties": {},
        "CreateMissing": mapping.create_missing,  # erpsync's
    }
    return answer(request, info, select, root="ErpSyncActorTypeMapping")


@routes.post(f"{ERPSYNC}/GetCrmActorType")
async def get_crm_actor_type(request: web.Request) -> web.Response:
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    mapping = configured_mapping(conn, erp_type_argument(args))
    return respond(request, mapping.crm.value, root="string")
