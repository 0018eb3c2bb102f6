"""The built-in ``rest`` connector passes the conformance kit against the fake ERP over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping

import pytest

from connectors import Connector, FieldType, FieldValue
from connectors.rest import RestConfig, RestConnector
from connectors.testing import ConnectorContract, Harness, make_context
from connectors.testing.fake_erp import Auth, FakeErp
from tests.support.rest import COLLECTIONS, TOKEN, rest_settings

TENANT_KEY = "tenant-key-s3cret"


class RestHarness(Harness):
    secrets = (TOKEN, TENANT_KEY)

    def __init__(self, erp: FakeErp) -> None:
        self.erp = erp
        self.config = RestConfig.model_validate(
            rest_settings(erp, headers={"X-Tenant-Key": TENANT_KEY})
        )

    def connector(self) -> Connector:
        return RestConnector(self.config, make_context())

    def broken_connector(self) -> Connector:
        wrong = rest_settings(self.erp, {"type": "bearer", "token": TOKEN[::-1]})
        return RestConnector(RestConfig.model_validate(wrong), make_context())

    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        collection = COLLECTIONS[actor_type]
        types = self.erp.field_types(collection)
        return self.erp.put(collection, {k: _typed(v, types[k]) for k, v in values.items()})

    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        collection = COLLECTIONS[actor_type]
        record = self.erp.get(collection, key)
        if record is None:
            return None
        return {k: _text(record.get(k)) for k in self.erp.collections[collection].fields}


def _typed(value: FieldValue, kind: FieldType) -> object:
    if value is None:
        return None
    if kind is FieldType.Checkbox:
        return value == "1"
    if kind in (FieldType.Integer, FieldType.Double):
        return json.loads(value)
    return value


def _text(value: object) -> FieldValue:
    if isinstance(value, bool):
        return "1" if value else "0"
    return None if value is None else str(value)


class TestRestContract(ConnectorContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        async with FakeErp(auth=Auth("bearer", TOKEN)) as erp:
            yield RestHarness(erp)
