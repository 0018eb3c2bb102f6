"""Field mapping by direction and value comparison (pure functions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from connectors.model import FieldValue
from engine.mapping.model import ActorTypeMapping, ConflictRule, Direction, FieldMapping

Side = Literal["crm", "erp"]


def same(a: FieldValue, b: FieldValue) -> bool:
    """Values are equal when their text is; blank (None) equals the empty string."""
    return (a or "") == (b or "")


def diff(
    current: Mapping[str, FieldValue], desired: Mapping[str, FieldValue]
) -> dict[str, tuple[FieldValue, FieldValue]]:
    """Fields whose desired value differs from the current one: field -> (old, new)."""
    return {
        key: (current.get(key), value)
        for key, value in desired.items()
        if not same(current.get(key), value)
    }


def erp_values_from_crm(
    mapping: ActorTypeMapping, crm_values: Mapping[str, FieldValue]
) -> dict[str, FieldValue]:
    """ERP field values a CRM record dictates (fields mapped to ERP)."""
    return {erp_field: crm_values.get(crm_field) for erp_field, crm_field in mapping.to_erp_pairs}


def crm_values_from_erp(
    mapping: ActorTypeMapping, erp_values: Mapping[str, FieldValue]
) -> dict[str, FieldValue]:
    """CRM field values an ERP actor dictates (fields mapped to CRM)."""
    return {crm_field: erp_values.get(erp_field) for erp_field, crm_field in mapping.to_crm_pairs}


def crm_field_of(mapping: ActorTypeMapping, erp_field: str) -> str:
    """The CRM field an ERP field maps to."""
    return mapping.fields[erp_field].crm


def erp_field_of(mapping: ActorTypeMapping, crm_field: str) -> str:
    """The ERP field (with a to-CRM direction) that feeds a CRM field."""
    return mapping.erp_field_by_crm[crm_field]


def crm_fields_used(mappings: Iterable[ActorTypeMapping], crm_actor_type: str) -> list[str]:
    """Every CRM field of an actor type that one of ``mappings`` syncs in any direction."""
    fields: dict[str, None] = {}
    for mapping in mappings:
        if mapping.crm != crm_actor_type:
            continue
        for m in mapping.fields.values():
            if m.direction.to_erp_enabled or m.direction.to_crm_enabled:
                fields[m.crm] = None
    return list(fields)


def creating_mapping(
    mappings: Iterable[ActorTypeMapping], crm_actor_type: str
) -> ActorTypeMapping | None:
    """The mapping used to create a missing actor for this CRM type, if creation is enabled."""
    for mapping in mappings:
        if mapping.crm == crm_actor_type and mapping.create_missing:
            return mapping
    return None


def is_blank(value: FieldValue) -> bool:
    """A blank value: None or the empty string. Whitespace is a value (it is not blank)."""
    return value is None or value == ""


def without_blank_overwrites(
    current: Mapping[str, FieldValue], desired: Mapping[str, FieldValue]
) -> tuple[dict[str, FieldValue], list[str]]:
    """The NoBlankValues rule: ``desired`` without the blank values that would overwrite a
    non-blank ``current`` value, and the fields so left out (in ``desired``'s order)."""
    kept: dict[str, FieldValue] = {}
    skipped: list[str] = []
    for key, value in desired.items():
        if is_blank(value) and not is_blank(current.get(key)):
            skipped.append(key)
        else:
            kept[key] = value
    return kept, skipped


def stamp_seconds(stamp: str | None) -> float | None:
    """A connector's ``last_modified`` as seconds since the epoch, when it reads as a time: an
    ISO 8601 timestamp, or a number of seconds, milliseconds or microseconds since the epoch."""
    if not stamp:
        return None
    try:
        number = float(stamp)
    except ValueError:
        pass
    else:
        if number > 1e14:
            return number / 1e6
        if number > 1e11:
            return number / 1e3
        return number if number > 1e8 else None  # a counter, not a time
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def winner(rule: ConflictRule, crm_stamp: str | None, erp_stamp: str | None) -> Side:
    """The side that wins a conflict by ``rule``; most_recent falls back to the CRM."""
    if rule is ConflictRule.erp_wins:
        return "erp"
    if rule is ConflictRule.most_recent:
        crm_at, erp_at = stamp_seconds(crm_stamp), stamp_seconds(erp_stamp)
        if crm_at is not None and erp_at is not None and erp_at > crm_at:
            return "erp"
    return "crm"


_MISSING = object()


def settle_to_crm(
    mapping: ActorTypeMapping,
    changed: dict[str, tuple[FieldValue, FieldValue]],
    baseline: Mapping[str, FieldValue] | None,
    crm_stamp: str | None,
    erp_stamp: str | None,
) -> tuple[dict[str, tuple[FieldValue, FieldValue]], dict[str, Side]]:
    """Continuous sync, ERP -> CRM (``changed`` by CRM field): keep what the ERP changed since
    the last sync (``baseline``: the CRM-field values both sides agreed on then). A ``both``
    field only the CRM changed is left for the CRM's own run; one both changed is settled by
    its rule. Returns the changes to write and the conflicts' winners by CRM field."""

    def field_of(crm_field: str) -> FieldMapping | None:
        erp_field = mapping.erp_field_by_crm.get(crm_field)
        return mapping.fields.get(erp_field) if erp_field else None

    return _settle(changed, field_of, baseline, "crm", crm_stamp, erp_stamp)


def settle_to_erp(
    mapping: ActorTypeMapping,
    changed: dict[str, tuple[FieldValue, FieldValue]],
    baseline: Mapping[str, FieldValue] | None,
    crm_stamp: str | None,
    erp_stamp: str | None,
) -> tuple[dict[str, tuple[FieldValue, FieldValue]], dict[str, Side]]:
    """Continuous sync, CRM -> ERP (``changed`` by ERP field): the mirror of
    :func:`settle_to_crm`. Returns the changes to write and the winners by ERP field."""
    return _settle(changed, mapping.fields.get, baseline, "erp", crm_stamp, erp_stamp)


def _settle(
    changed: dict[str, tuple[FieldValue, FieldValue]],
    field_of: Callable[[str], FieldMapping | None],
    baseline: Mapping[str, FieldValue] | None,
    written: Side,
    crm_stamp: str | None,
    erp_stamp: str | None,
) -> tuple[dict[str, tuple[FieldValue, FieldValue]], dict[str, Side]]:
    """``changed``: field -> (the ``written`` side's current value, the other side's value)."""
    if not baseline:
        return changed, {}
    keep: dict[str, tuple[FieldValue, FieldValue]] = {}
    winners: dict[str, Side] = {}
    for key, (current, incoming) in changed.items():
        field = field_of(key)
        before = baseline.get(field.crm, _MISSING) if field is not None else _MISSING
        if field is None or field.direction is not Direction.both or before is _MISSING:
            keep[key] = (current, incoming)
            continue
        if same(incoming, before):  # type: ignore[arg-type]
            continue  # only the written side changed it: its own run sends it on
        if not same(current, before):  # type: ignore[arg-type]
            side = winner(field.conflict, crm_stamp, erp_stamp)
            winners[key] = side
            if side == written:
                continue
        keep[key] = (current, incoming)
    return keep, winners


def agreed(
    mapping: ActorTypeMapping,
    crm_values: Mapping[str, FieldValue],
    erp_values: Mapping[str, FieldValue],
) -> dict[str, FieldValue]:
    """The CRM-field values both sides hold alike (the next baseline), over synced fields."""
    out: dict[str, FieldValue] = {}
    for erp_field, m in mapping.fields.items():
        if m.direction is Direction.none or erp_field not in erp_values:
            continue
        if m.crm in crm_values and same(crm_values[m.crm], erp_values[erp_field]):
            out[m.crm] = crm_values[m.crm]
    return out
