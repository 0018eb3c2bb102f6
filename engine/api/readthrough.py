"""The ErpSync agent's read-through endpoints: live values and metadata from the connections.

``TestConnectionById``, ``TestConnectionByConfig``, ``GetFieldValuesFromCrm``,
``GetFieldValuesFromErp``, ``GetErpFieldValues``, ``GetFieldsForNewErpActor`` and
``SupportsAdvancedSearch``, for the clients that build the "ERP tab" and the connect dialog
around the link endpoints (engine/api/links.py; the argument rules and allow-list of both are
in engine/api/agent_args.py). Shapes follow SuperOffice's carriers (ErpSyncFieldValue,
FieldMetadata); erpsync's additions are named in docs/api.md. Every connector call goes through
the ActorDesk (engine.sync's gates). A Password field's value never leaves: it reads as null.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
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
    enum_argument,
    erp_key_argument,
    erp_type_argument,
    header_text,
    record_id_argument,
)
from engine.api.appkeys import ERP_ACTORS, POOL, SETTINGS
from engine.api.auth import PRINCIPAL
from engine.api.bodies import BodyShape
from engine.api.errors import ApiError
from engine.api.render import respond
from engine.api.routes import agent_arguments
from engine.settings import ConnectionSettings
from engine.settings.trial import TrialSettingsError, trial_settings
from engine.store import links as links_store

log = structlog.get_logger(__name__)

MAX_FIELD_KEYS = 500
MAX_FIELD_KEY = 255
MAX_CONFIG_FIELDS = 100
MAX_CONFIG_VALUE = 16384  # a PEM private key fits
TEST_MESSAGE_HEADER = "X-Connection-Test-Message"

_SHAPE = BodyShape(
    properties=frozenset(
        {
            "erpconnectionid",
            "recordid",
            "actortypecrm",
            "actortypeerp",
            "erpkey",
            "crmactortype",
            "erpactortype",
            "entityid",
            "fieldkeys",
            "configfields",
        }
    ),
    lists=frozenset({"fieldkeys"}),
    maps=frozenset({"configfields"}),
)

routes = web.RouteTableDef()


# --- arguments ---------------------------------------------------------------------------


def field_keys(args: dict[str, Any]) -> list[str]:
    """GetErpFieldValues' ``FieldKeys``: strings, in order (repeats kept: one value each)."""
    raw = args.get("fieldkeys")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "FieldKeys must be an array of field keys")
    if len(raw) > MAX_FIELD_KEYS:
        raise ApiError(400, f"FieldKeys has more than {MAX_FIELD_KEYS} items")
    keys = []
    for index, key in enumerate(raw):
        if not isinstance(key, str) or not key or len(key) > MAX_FIELD_KEY or "\x00" in key:
            raise ApiError(
                400, f"FieldKeys[{index}] must be a field key (1 to {MAX_FIELD_KEY} characters)"
            )
        keys.append(key)
    return keys


def config_fields(args: dict[str, Any]) -> dict[str, str]:
    """TestConnectionByConfig's ``ConfigFields`` (SuperOffice's StringDictionary): option name
    -> text; numbers and booleans as JSON spells them. Messages never quote a value."""
    raw = args.get("configfields")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "ConfigFields must be an object of option names to text values")
    if len(raw) > MAX_CONFIG_FIELDS:
        raise ApiError(400, f"ConfigFields has more than {MAX_CONFIG_FIELDS} options")
    fields: dict[str, str] = {}
    for key, value in raw.items():
        name = str(key)
        if not name.strip() or len(name) > MAX_FIELD_KEY or "\x00" in name:
            raise ApiError(
                400, f"ConfigFields keys must be option names (1 to {MAX_FIELD_KEY} characters)"
            )
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise ApiError(400, f"ConfigFields[{name[:60]!r}] must be a string")
        if len(value) > MAX_CONFIG_VALUE or "\x00" in value:
            raise ApiError(
                400,
                f"ConfigFields[{name[:60]!r}] must be text of at most {MAX_CONFIG_VALUE} "
                "characters, without NUL",
            )
        fields[name] = value
    return fields


# --- carriers ----------------------------------------------------------------------------


def shown_value(meta: sdk.FieldMetadata | None, value: sdk.FieldValue) -> sdk.FieldValue:
    """The value a client may see: a Password field's never leaves."""
    if meta is not None and meta.type == sdk.FieldType.Password:
        return None
    return value


def field_value(
    key: str,
    crm_field: str,
    meta: sdk.FieldMetadata | None,
    value: sdk.FieldValue,
    display: str | None,
    *,
    to_crm: bool,
    to_erp: bool,
) -> dict[str, Any]:
    """An ErpSyncFieldValue; ``display``: a List value's item text (else the value shows)."""
    value = shown_value(meta, value)
    return {
        "DisplayName": (meta.display_name or key) if meta is not None else key,
        "CrmFieldKey": crm_field,
        "Value": value,
        "DisplayValue": None if value is None else (display or value),
        "SyncToCrm": to_crm,
        "SyncToErp": to_erp,
        "TableRight": None,
        "FieldProperties": {},
    }


def field_metadata(rank: int, meta: sdk.FieldMetadata) -> dict[str, Any]:
    """The FieldMetadata carrier of a connector's field (a Password default never shown)."""
    return {
        "FieldKey": meta.key,
        "Rank": rank,
        "DisplayName": meta.display_name or meta.key,
        "DisplayDescription": meta.description,
        "FieldType": meta.type.value,
        "ListName": meta.list_name,
        "DefaultValue": shown_value(meta, meta.default_value) or "",
        "MaxLength": meta.max_length,
        "Access": meta.access.value,
        "ShowInSearch": False,
        "TableRight": None,
        "FieldProperties": {},
    }


def fields_for_new_actor(
    metadata: Sequence[sdk.FieldMetadata], filled_from_crm: Iterable[str]
) -> list[dict[str, Any]]:
    """The Mandatory fields no to-ERP mapping fills from the CRM record, ranked as the
    connector lists them."""
    filled = set(filled_from_crm)
    return [
        field_metadata(rank, meta)
        for rank, meta in enumerate(metadata, 1)
        if meta.access == sdk.FieldAccess.Mandatory
        and meta.type != sdk.FieldType.Label
        and meta.key not in filled
    ]


# --- connector calls ---------------------------------------------------------------------


async def _read(
    request: web.Request,
    connection_id: int,
    actor_type: str,
    key: str,
    fields: Sequence[str],
) -> tuple[sdk.Actor | None, dict[str, sdk.FieldMetadata], dict[str, str]]:
    """The actor's ``fields`` with the type's metadata, and its List fields' item texts."""
    desk = request.app[ERP_ACTORS]
    try:
        actor, described = await asyncio.gather(
            desk.read(connection_id, actor_type, key, fields),
            desk.fields(connection_id, actor_type),
        )
        metadata = {m.key: m for m in described}
        texts: dict[str, str] = {}
        if actor is not None:
            texts = await _list_texts(request, connection_id, actor, metadata)
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    return actor, metadata, texts


async def _list_texts(
    request: web.Request,
    connection_id: int,
    actor: sdk.Actor,
    metadata: Mapping[str, sdk.FieldMetadata],
) -> dict[str, str]:
    """Field -> the item text of its value, for the actor's List fields (one call per list;
    none when the connector has no list items)."""
    by_list: dict[str, dict[str, str]] = {}  # list -> field -> item key
    for field, value in actor.fields.items():
        meta = metadata.get(field)
        if value and meta is not None and meta.type == sdk.FieldType.List and meta.list_name:
            by_list.setdefault(meta.list_name, {})[field] = value
    if not by_list:
        return {}
    desk = request.app[ERP_ACTORS]
    names = list(by_list)
    found = await asyncio.gather(
        *(desk.list_texts(connection_id, n, sorted(set(by_list[n].values()))) for n in names)
    )
    return {
        field: texts[item]
        for name, texts in zip(names, found, strict=True)
        for field, item in by_list[name].items()
        if item in texts
    }


# --- endpoints ---------------------------------------------------------------------------


@routes.post(f"{ERPSYNC}/TestConnectionById")
async def test_connection_by_id(request: web.Request) -> web.Response:
    """The connector's test of its system: ``true`` or ``false`` (the reason in a header)."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "test")
    try:
        result = await request.app[ERP_ACTORS].test(conn.id)
        ok, message = result.ok, result.message
    except sdk.ConnectorError as exc:  # not reachable, refused, circuit open: the test failed
        ok, message = False, exc.message
    log.info("connection tested", connection=conn.id, ok=ok, user=request[PRINCIPAL].user)
    return respond(request, ok, root="boolean", headers={TEST_MESSAGE_HEADER: header_text(message)})


@routes.post(f"{ERPSYNC}/TestConnectionByConfig")
async def test_connection_by_config(request: web.Request) -> web.Response:
    """The connector's test with the connection's settings changed by ``ConfigFields``
    (engine.settings.trial; nothing saved): ``true`` or ``false`` (the reason in a header).
    ConfigFields that do not configure the connector are 400."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "test")
    fields = config_fields(args)
    try:
        trial = trial_settings(conn, fields)
    except TrialSettingsError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        result = await request.app[ERP_ACTORS].test_config(conn.id, trial)
    except sdk.ConnectorError as exc:  # too many tests at once
        raise connector_failed(exc) from None
    log.info(
        "connection tested by config",
        connection=conn.id,
        ok=result.ok,
        options=sorted(fields),  # the names only: values may be secrets
        user=request[PRINCIPAL].user,
    )
    return respond(
        request,
        result.ok,
        root="boolean",
        headers={TEST_MESSAGE_HEADER: header_text(result.message)},
    )


@routes.post(f"{ERPSYNC}/GetFieldValuesFromCrm")
async def get_field_values_from_crm(request: web.Request) -> web.Response:
    """The CRM record's fields mapped on the connections the caller may touch, read live;
    SyncToCrm/SyncToErp when any of those mappings flows that way."""
    args, select = await agent_arguments(request, _SHAPE)
    crm_type = enum_argument(args, "ActorTypeCrm", sdk.CrmActorType)
    record_id = record_id_argument(args, "RecordId")
    settings, principal = request.app[SETTINGS], request[PRINCIPAL]
    mapping_crm = [m for c in settings.connections for m in c.actor_types if m.crm == crm_type]
    if not mapping_crm:
        raise ApiError(
            404, f"No ERP connection maps the CRM actor type {crm_type}", "SoNotFoundException"
        )
    flows: dict[str, tuple[bool, bool]] = {}  # CRM field -> (to CRM, to ERP), in mapping order
    for conn in settings.connections:
        if not principal.may_touch(conn.id):
            continue  # its mapping stays hidden
        for mapping in conn.actor_types:
            if mapping.crm != crm_type:
                continue
            for erp_field in mapping.fields.values():
                to_crm, to_erp = flows.get(erp_field.crm, (False, False))
                flows[erp_field.crm] = (
                    to_crm or erp_field.direction.to_crm_enabled,
                    to_erp or erp_field.direction.to_erp_enabled,
                )
    if not flows:
        return answer(
            request, [], select, root="ArrayOfErpSyncFieldValue", item="ErpSyncFieldValue"
        )
    record, metadata, texts = await _read(request, 0, crm_type, record_id, list(flows))
    if record is None:
        raise ApiError(404, f"{crm_type} {record_id} not found in the CRM", "SoNotFoundException")
    values = [
        field_value(
            key,
            key,
            metadata.get(key),
            record.fields.get(key),
            texts.get(key),
            to_crm=to_crm,
            to_erp=to_erp,
        )
        for key, (to_crm, to_erp) in flows.items()
    ]
    return answer(
        request, values, select, root="ArrayOfErpSyncFieldValue", item="ErpSyncFieldValue"
    )


@routes.post(f"{ERPSYNC}/GetFieldValuesFromErp")
async def get_field_values_from_erp(request: web.Request) -> web.Response:
    """The ERP actor's mapped fields, read live, each with its CRM field and directions."""
    args, select = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    mapping = configured_mapping(conn, erp_type_argument(args, "ActorTypeErp"))
    erp_key = erp_key_argument(args)
    erp_type = mapping.erp.value
    actor, metadata, texts = await _read(request, conn.id, erp_type, erp_key, list(mapping.fields))
    if actor is None:
        raise _actor_not_found(conn, erp_type, erp_key)
    values = [
        {
            **field_value(
                erp_field,
                f.crm,
                metadata.get(erp_field),
                actor.fields.get(erp_field),
                texts.get(erp_field),
                to_crm=f.direction.to_crm_enabled,
                to_erp=f.direction.to_erp_enabled,
            ),
            "ErpFieldKey": erp_field,  # erpsync's: two ERP fields may feed one CRM field
        }
        for erp_field, f in mapping.fields.items()
    ]
    return answer(
        request, values, select, root="ArrayOfErpSyncFieldValue", item="ErpSyncFieldValue"
    )


def _actor_not_found(conn: ConnectionSettings, erp_type: str, erp_key: str) -> ApiError:
    return ApiError(
        404,
        f"{erp_type} {erp_key[:80]!r} not found on connection {conn.id} ({conn.name})",
        "SoNotFoundException",
    )


@routes.post(f"{ERPSYNC}/GetErpFieldValues")
async def get_erp_field_values(request: web.Request) -> web.Response:
    """The values of ``FieldKeys`` (any field of the linked actor's type, mapped or not) of the
    ERP actor the CRM record is linked to on the connection, in the same order."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    crm_type = crm_type_argument(args)
    record_id = record_id_argument(args, "EntityId")
    keys = field_keys(args)
    if not any(m.crm == crm_type for m in conn.actor_types):
        raise ApiError(
            404,
            f"Connection {conn.id} ({conn.name}) maps no ERP actor type to {crm_type}; "
            "see GetActorTypeMapping",
            "SoNotFoundException",
        )
    pool = request.app[POOL]
    internal_key = await links_store.internal_key_of(pool, crm_type, record_id)
    links = [] if internal_key is None else await links_store.links_of(pool, internal_key)
    link = next((x for x in links if x.connection_id == conn.id), None)
    if link is None:
        raise ApiError(
            404,
            f"{crm_type} {record_id} is not linked on connection {conn.id} ({conn.name})",
            "SoNotFoundException",
        )
    if not keys:
        return respond(request, [], root="ArrayOfstring")
    desk = request.app[ERP_ACTORS]
    try:
        described = {m.key: m for m in await desk.fields(conn.id, link.erp_actor_type)}
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    for index, key in enumerate(keys):
        if key not in described:
            raise ApiError(
                404,
                f"FieldKeys[{index}] {key[:60]!r} is not a field of {link.erp_actor_type} on "
                f"connection {conn.id} ({conn.name})",
                "SoNotFoundException",
            )
    try:
        actor = await desk.read(
            conn.id, link.erp_actor_type, link.erp_key, list(dict.fromkeys(keys))
        )
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    if actor is None:
        raise _actor_not_found(conn, link.erp_actor_type, link.erp_key)
    values = [shown_value(described[key], actor.fields.get(key)) for key in keys]
    return respond(request, values, root="ArrayOfstring")


@routes.post(f"{ERPSYNC}/GetFieldsForNewErpActor")
async def get_fields_for_new_erp_actor(request: web.Request) -> web.Response:
    """The fields a user must fill to create the ERP actor (CreateErpActorFromCrm's
    ErpFieldKeyValues): the connector's Mandatory fields the mapping does not fill."""
    args, select = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    mapping = configured_mapping(conn, erp_type_argument(args))
    try:
        metadata = await request.app[ERP_ACTORS].fields(conn.id, mapping.erp.value)
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    fields = fields_for_new_actor(metadata, (erp for erp, _ in mapping.to_erp_pairs))
    return answer(request, fields, select, root="ArrayOfFieldMetadata", item="FieldMetadata")


@routes.post(f"{ERPSYNC}/SupportsAdvancedSearch")
async def supports_advanced_search(request: web.Request) -> web.Response:
    """``true`` when the connection's connector can search actors (the search capability)."""
    args, _ = await agent_arguments(request, _SHAPE)
    conn = connection_argument(request, args, "ErpConnectionId", "read")
    configured_mapping(conn, erp_type_argument(args))
    try:
        found = await request.app[ERP_ACTORS].capabilities(conn.id)
    except sdk.ConnectorError as exc:
        raise connector_failed(exc) from None
    return respond(request, sdk.Capability.search in found, root="boolean")
