"""Fixtures for the connector tests: third-party distributions made up on the spot."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.distributions import make_distribution

GOOD = """
from connectors.memory import MemoryConnector

class ThirdParty(MemoryConnector):
    name = "thirdparty"
"""

MODULES = {
    "tp_good": GOOD,
    "tp_raises": "raise RuntimeError('the vendor SDK is missing\\nsecond line')\n",
    "tp_exits": "import sys\nsys.exit(3)\n",
    "tp_notaclass": "Connector = 42\n",
    "tp_incomplete": "class Connector:\n    config_model = None\n",
}

ENTRY_POINTS = {
    "good-connector": ("1.2.3", {"thirdparty": "tp_good:ThirdParty"}),
    "broken-connectors": (
        "0.0.1",
        {
            "raises": "tp_raises:Connector",
            "exits": "tp_exits:Connector",
            "notaclass": "tp_notaclass:Connector",
            "incomplete": "tp_incomplete:Connector",
            "memory": "tp_good:ThirdParty",  # clashes with the built-in
        },
    ),
}


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install (on sys.path) one good and one broken third-party connector distribution."""
    for module, source in MODULES.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    for name, (version, connectors) in ENTRY_POINTS.items():
        make_distribution(tmp_path, name, version, connectors)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path
