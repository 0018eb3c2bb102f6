"""Testing tools for connector authors: the conformance kit and a fake ERP REST API.

Enable the kit in a test module::

    from connectors.testing import ConnectorContract, Harness

    class TestMyConnector(ConnectorContract):
        @pytest.fixture
        def harness(self) -> Harness:
            return MyHarness()

The pytest plugin that comes with erpsync (entry point ``erpsync_connectors``) registers the
``connector_contract`` marker and explains a missing ``harness`` fixture. The kit needs pytest
and pytest-asyncio (``pip install 'erpsync[testing]'``); :mod:`connectors.testing.fake_erp`
needs neither, so benchmarks can use it on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import pytest
except ImportError:  # pragma: no cover - the fake ERP works without pytest
    pass
else:
    # The kit's checks are plain asserts: have pytest explain them like the author's own.
    pytest.register_assert_rewrite("connectors.testing.contract")

if TYPE_CHECKING:
    from connectors.testing.contract import ConnectorContract, Harness, make_context

__all__ = ["ConnectorContract", "Harness", "make_context"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from connectors.testing import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
