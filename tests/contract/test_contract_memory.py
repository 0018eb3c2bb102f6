"""The built-in ``memory`` connector passes the conformance kit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping

import pytest

from connectors import Connector, FieldValue
from connectors.memory import MemoryConfig, MemoryConnector, MemoryStore
from connectors.testing import ConnectorContract, Harness, make_context


class MemoryHarness(Harness):
    def __init__(self, store: str) -> None:
        self.store = MemoryStore.named(store)
        self.config = MemoryConfig(
            store=store,
            actor_types={"Customer": ["name", "phone", "email"], "Person": ["first", "last"]},
            lists={"Country": {"NO": "Norway", "SE": "Sweden"}},
        )

    def connector(self) -> Connector:
        return MemoryConnector(self.config, make_context())

    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        key = uuid.uuid4().hex[:12]
        self.store.put(actor_type, key, values)
        return key

    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        return self.store.get(actor_type, key)


class TestMemoryContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        name = f"contract-{uuid.uuid4().hex}"
        yield MemoryHarness(name)
        MemoryStore.drop(name)
