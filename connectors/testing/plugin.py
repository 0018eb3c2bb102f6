"""pytest plugin ``erpsync_connectors`` (entry point ``pytest11``), active wherever erpsync is
installed: marks the conformance checks and helps authors wire the kit up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from connectors.testing.tryton_server import TrytonServer

MARKER = "connector_contract"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so ``--strict-markers`` accepts ``-m connector_contract``."""
    config.addinivalue_line("markers", f"{MARKER}: a check of erpsync's connector conformance kit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every check inherited from ConnectorContract, so ``-m connector_contract`` works."""
    from connectors.testing.contract import ConnectorContract

    for item in items:
        cls = getattr(item, "cls", None)
        if isinstance(cls, type) and issubclass(cls, ConnectorContract):
            item.add_marker(MARKER)


@pytest.fixture
def harness() -> None:
    """Fallback that explains what to define when a ConnectorContract has no harness."""
    pytest.fail(
        "the connector conformance kit needs a `harness` fixture: define one on your "
        "ConnectorContract subclass (or in conftest.py) returning a connectors.testing.Harness",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def tryton_server() -> Iterator[TrytonServer]:
    """A real Tryton server (``party`` module, fresh SQLite database) for the whole session,
    with a user ``erpsync`` in the party administrators (``tryton_server.passwords``)."""
    from connectors.testing.tryton_server import TrytonServer

    with TrytonServer() as server:
        server.passwords["erpsync"] = asyncio.run(server.create_user("erpsync"))
        yield server
