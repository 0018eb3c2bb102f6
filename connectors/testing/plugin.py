"""pytest plugin ``erpsync_connectors`` (entry point ``pytest11``), active wherever erpsync is
installed: marks the conformance checks and helps authors wire the kit up."""

from __future__ import annotations

import pytest

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
