"""The field-mapping model: which ERP field mirrors which CRM field, and which way it flows."""

from __future__ import annotations

import enum
import functools

from pydantic import BaseModel, ConfigDict, Field

from connectors.model import CrmActorType, ErpActorType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Direction(enum.StrEnum):
    """Which way a mapped field flows (SuperOffice's SyncToErp / SyncToCrm flags)."""

    to_erp = "to_erp"
    to_crm = "to_crm"
    both = "both"
    none = "none"

    @property
    def to_erp_enabled(self) -> bool:
        return self in (Direction.to_erp, Direction.both)

    @property
    def to_crm_enabled(self) -> bool:
        return self in (Direction.to_crm, Direction.both)


class ConflictRule(enum.StrEnum):
    """Who wins when the continuous sync finds a ``both`` field changed on both sides since
    their last sync (docs/engine.md, "Continuous sync")."""

    crm_wins = "crm_wins"
    erp_wins = "erp_wins"
    most_recent = "most_recent"


class FieldMapping(_Model):
    """One ERP field mapped to one CRM field."""

    crm: str = Field(min_length=1)
    direction: Direction = Direction.none
    conflict: ConflictRule = Field(
        ConflictRule.crm_wins,
        description="Continuous sync, `both` fields changed on both sides since their last "
        "sync: crm_wins, erp_wins or most_recent (the later last-modified of the two records; "
        "when either cannot be read as a time, the CRM wins).",
    )


class ActorTypeMapping(_Model):
    """An ERP actor type on a connection and the CRM actor type it mirrors."""

    erp: ErpActorType
    crm: CrmActorType
    create_missing: bool = Field(
        False, description="Create the actor on this connection when a record has no link."
    )
    fields: dict[str, FieldMapping] = Field(default_factory=dict)

    # Compiled once per mapping: the engine applies them per record and target.
    @functools.cached_property
    def to_erp_pairs(self) -> tuple[tuple[str, str], ...]:
        """``(erp_field, crm_field)`` of every field that flows to the ERP."""
        return tuple((e, m.crm) for e, m in self.fields.items() if m.direction.to_erp_enabled)

    @functools.cached_property
    def to_crm_pairs(self) -> tuple[tuple[str, str], ...]:
        """``(erp_field, crm_field)`` of every field that flows to the CRM."""
        return tuple((e, m.crm) for e, m in self.fields.items() if m.direction.to_crm_enabled)

    @functools.cached_property
    def erp_field_by_crm(self) -> dict[str, str]:
        """The ERP field feeding each CRM field (to-CRM fields; the first one wins)."""
        fields: dict[str, str] = {}
        for erp_field, crm_field in self.to_crm_pairs:
            fields.setdefault(crm_field, erp_field)
        return fields
