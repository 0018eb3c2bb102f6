"""What the link and read-through endpoints need of the connected systems, as a protocol
(engine/app.py passes in engine.sync's implementation: the front door never calls a connector
itself)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import connectors as sdk


class ErpActors(Protocol):
    """Single-actor reads and creates, and what a connection says about itself, through the
    connection gates.

    Failures raise :class:`connectors.ConnectorError` of the call's kind.
    """

    async def read(
        self, connection_id: int, actor_type: str, key: str, fields: Sequence[str]
    ) -> sdk.Actor | None:
        """The actor's ``fields``; None when it does not exist."""
        ...

    async def write(
        self, connection_id: int, actor_type: str, key: str, values: Mapping[str, sdk.FieldValue]
    ) -> dict[str, tuple[sdk.FieldValue, sdk.FieldValue]] | None:
        """Set the values that differ; returns them (field -> (old, new)), or None when the
        actor does not exist."""
        ...

    async def create_from_crm(
        self,
        connection_id: int,
        crm_actor_type: str,
        crm_record_id: str,
        erp_actor_type: str,
        values: Mapping[str, str],
        idempotency_key: str,
    ) -> sdk.Actor | None:
        """A new actor from the CRM record's mapped values and ``values``; None when the CRM
        record does not exist."""
        ...

    async def test(self, connection_id: int) -> sdk.TestConnectionResult:
        """The connector's test of its system."""
        ...

    async def test_config(
        self, connection_id: int, settings: Mapping[str, object]
    ) -> sdk.TestConnectionResult:
        """The connector's test with other settings (a connector of its own, never saved);
        raises only when too many such tests are running."""
        ...

    async def fields(self, connection_id: int, actor_type: str) -> list[sdk.FieldMetadata]:
        """The connector's field metadata of ``actor_type``."""
        ...

    async def capabilities(self, connection_id: int) -> frozenset[sdk.Capability]:
        """The connector's optional capabilities."""
        ...

    async def list_texts(
        self, connection_id: int, list_name: str, item_keys: Sequence[str]
    ) -> dict[str, str]:
        """Item key -> text in a list of the connection (empty without list items)."""
        ...
