"""Value types shared by the engine and connectors: actors, field metadata, actor type enums."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

FieldValue = str | None
"""Field values travel as text, as in SuperOffice's ErpActor.FieldValues; None means blank."""


class ErpActorType(enum.StrEnum):
    """SuperOffice's ErpActorType names (the ERP side of a link)."""

    Unknown = "Unknown"
    Customer = "Customer"
    Supplier = "Supplier"
    Partner = "Partner"
    Person = "Person"
    Project = "Project"
    Employee = "Employee"
    Sale = "Sale"


class CrmActorType(enum.StrEnum):
    """SuperOffice's CrmActorType names (the CRM record an internal key stands for)."""

    Unknown = "Unknown"
    Contact = "Contact"
    Person = "Person"
    Project = "Project"
    Sale = "Sale"


class FieldType(enum.StrEnum):
    """SuperOffice's FieldMetadataType.

    Values travel as text in one canonical form per type, so that equal values compare equal
    across systems: Integer ``"42"``, Double ``"2.5"`` (``.`` as decimal point), Checkbox
    ``"1"``/``"0"``, Date ISO 8601 (``"2024-05-17"``), List the item key; None is blank.
    """

    Checkbox = "Checkbox"
    Text = "Text"
    Password = "Password"  # noqa: S105 - a field type name, not a secret
    Integer = "Integer"
    Double = "Double"
    List = "List"
    Date = "Date"
    Label = "Label"


class FieldAccess(enum.StrEnum):
    """SuperOffice's FieldAccess."""

    Normal = "Normal"
    Mandatory = "Mandatory"
    ReadOnly = "ReadOnly"


@dataclass(frozen=True, slots=True)
class FieldMetadata:
    """Describes one field of an actor type, as a connector reports it."""

    key: str
    display_name: str = ""
    type: FieldType = FieldType.Text
    max_length: int = 0
    access: FieldAccess = FieldAccess.Normal
    description: str = ""
    list_name: str = ""
    """For ``FieldType.List``: the list whose items are the allowed values."""
    default_value: FieldValue = None


@dataclass(frozen=True, slots=True)
class ListItem:
    """One option of a list: the stored ``key`` and the ``text`` shown to users."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Actor:
    """One record in a connected system, identified by (actor_type, key) within a connection.

    ``fields`` may hold a subset of the actor's fields: a read returns the requested ones and a
    save carries only the fields to change.
    """

    actor_type: str
    key: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    last_modified: str | None = None
    parent_actor_type: str | None = None
    parent_key: str | None = None
