"""The ``tryton`` connector passes the conformance kit against a real Tryton server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping

import pytest

from connectors import Connector, FieldValue
from connectors.testing import ConnectorContract, Harness, make_context
from connectors.testing.tryton_server import (
    TrytonClient,
    TrytonServer,
    create_parties,
    read_parties,
)
from connectors.tryton import TrytonConfig, TrytonConnector
from tests.support.tryton import PARTY_FIELDS, PERSON_FIELDS, tryton_settings


class TrytonHarness(Harness):
    concurrency = 8

    def __init__(self, server: TrytonServer, admin: TrytonClient) -> None:
        self.server = server
        self.admin = admin
        self.secrets = (server.passwords["erpsync"],)
        self.config = TrytonConfig.model_validate(tryton_settings(server))

    def connector(self) -> Connector:
        return TrytonConnector(self.config, make_context())

    def broken_connector(self) -> Connector:
        # A login Tryton does not know: refused like a wrong password, without making a real
        # user's failed-login count (and Tryton's growing delay) grow.
        settings = tryton_settings(self.server, password="not-the-password")
        settings["username"] = f"nobody-{uuid.uuid4().hex[:8]}"
        return TrytonConnector(TrytonConfig.model_validate(settings), make_context())

    def unknown_key(self, actor_type: str) -> str:
        return "987654321"

    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        return (await create_parties(self.admin, [values]))[0]

    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        fields = PARTY_FIELDS if actor_type == "Customer" else PERSON_FIELDS
        return (await read_parties(self.admin, [key], fields)).get(key)


class TestTrytonContract(ConnectorContract):
    @pytest.fixture
    async def harness(self, tryton_server: TrytonServer) -> AsyncIterator[Harness]:
        async with tryton_server.client() as admin:
            yield TrytonHarness(tryton_server, admin)
