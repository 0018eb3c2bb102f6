"""Direct access to the Tryton behind the ``tryton`` connector's tests: settings, seeding and
reading parties through Tryton's own JSON-RPC (not through the connector)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors import FieldValue
from connectors.testing.tryton_server import TrytonClient, TrytonServer
from connectors.tryton import ADDRESS_FIELDS, CONTACT_TYPES

PARTY_FIELDS = ("name", "phone", "email", "street", "postal_code", "city")
PERSON_FIELDS = ("name", "email", "mobile")


def tryton_settings(
    server: TrytonServer, login: str = "erpsync", password: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The ``settings`` of a tryton connection offering Customer and Person parties."""
    return {
        "url": server.url,
        "database": server.database,
        "username": login,
        "password": server.passwords[login] if password is None else password,
        "actor_types": {
            "Customer": {"fields": list(PARTY_FIELDS)},
            "Person": {"fields": list(PERSON_FIELDS)},
        },
        **extra,
    }


def party_values(values: Mapping[str, FieldValue]) -> dict[str, Any]:
    """``create`` values of a party with its first address and contact mechanisms."""
    party: dict[str, Any] = {
        k: v for k, v in values.items() if k not in CONTACT_TYPES and k not in ADDRESS_FIELDS
    }
    address = {k: v for k, v in values.items() if k in ADDRESS_FIELDS}
    if address:
        party["addresses"] = [["create", [address]]]
    mechanisms = [
        {"type": k, "value": v} for k, v in values.items() if k in CONTACT_TYPES and v is not None
    ]
    if mechanisms:
        party["contact_mechanisms"] = [["create", mechanisms]]
    return party


async def create_parties(
    admin: TrytonClient, many: Sequence[Mapping[str, FieldValue]]
) -> list[str]:
    """Create parties directly in Tryton; their ids as keys."""
    ids = await admin.call("model.party.party.create", [party_values(v) for v in many])
    return [str(i) for i in ids]


async def read_parties(
    admin: TrytonClient, keys: Sequence[str], fields: Sequence[str] = PARTY_FIELDS
) -> dict[str, dict[str, FieldValue]]:
    """Parties read directly from Tryton, as {key: {field: text}} (first address, first
    contact mechanism of each type)."""
    names = [k for k in fields if k not in CONTACT_TYPES and k not in ADDRESS_FIELDS]
    names += [f"addresses.{k}" for k in fields if k in ADDRESS_FIELDS]
    names += ["contact_mechanisms.type", "contact_mechanisms.value"]
    records = await admin.call(
        "model.party.party.search_read",
        [["id", "in", [int(k) for k in keys]]],
        0,
        None,
        None,
        names,
    )
    found = {}
    for record in records:
        address = (record.get("addresses.") or [{}])[0]
        mechanisms: dict[str, Any] = {}
        for mechanism in record.get("contact_mechanisms.") or []:
            mechanisms.setdefault(mechanism["type"], mechanism["value"])
        found[str(record["id"])] = {
            k: mechanisms.get(k)
            if k in CONTACT_TYPES
            else address.get(k)
            if k in ADDRESS_FIELDS
            else record.get(k)
            for k in fields
        }
    return found
