"""Testing tools for connector authors: the conformance kit and a fake ERP REST API.

Enable the kit in a test module::

    from connectors.testing import ConnectorContract, Harness

    class TestMyConnector(ConnectorContract):
        @pytest.fixture
        def harness(self) -> Harness:
            return MyHarness()

The pytest plugin that comes with erpsync (entry point ``erpsync_connectors``) registers the
``connector_contract`` marker and explains a missing ``harness`` fixture. Requires pytest and
pytest-asyncio (``pip install 'erpsync[testing]'``).
"""

import pytest

# The kit's checks are plain asserts: have pytest explain them like the author's own.
pytest.register_assert_rewrite("connectors.testing.contract")

from connectors.testing.contract import ConnectorContract, Harness, make_context  # noqa: E402

__all__ = ["ConnectorContract", "Harness", "make_context"]
