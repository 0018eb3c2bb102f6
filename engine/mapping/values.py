"""Field mapping by direction and value comparison (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from connectors.model import FieldValue
from engine.mapping.model import ActorTypeMapping


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
