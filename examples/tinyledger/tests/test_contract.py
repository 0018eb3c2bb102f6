"""TinyLedger passes erpsync's connector conformance kit."""

from collections.abc import Mapping
from pathlib import Path

import pytest
from erpsync_tinyledger import Ledger, TinyLedgerConfig, TinyLedgerConnector

from connectors import FieldValue
from connectors.testing import ConnectorContract, Harness, make_context

TOKEN = "tinyledger-example-token"  # noqa: S105 - a test ledger's token


class LedgerHarness(Harness):
    secrets = (TOKEN,)

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path).create(api_token=TOKEN)

    def connector(self, token: str = TOKEN) -> TinyLedgerConnector:
        config = TinyLedgerConfig(path=self.ledger.path, api_token=token)
        return TinyLedgerConnector(config, make_context())

    def broken_connector(self) -> TinyLedgerConnector:
        return self.connector(token="not-the-token")  # noqa: S106

    def unknown_key(self, actor_type: str) -> str:
        return "999999"

    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        return self.ledger.insert(actor_type, values)

    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        return self.ledger.fetch(actor_type, key)


class TestTinyLedger(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return LedgerHarness(tmp_path / "ledger.db")
