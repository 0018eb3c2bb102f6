"""The SDK's types catch misuse: mypy --strict accepts a correct connector and rejects mistakes.

Each line ending in ``# E: <text>`` must produce a mypy error containing ``<text>``; no other
line may produce one.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path

from mypy import api

SNIPPET = """
from pydantic import BaseModel, SecretStr

from connectors import (
    ActorTypesInput, ActorTypesResult, BaseConnector, Connector, ConnectorContext,
    FieldsInput, FieldsResult, GetActorsInput, GetActorsResult, SaveActorsInput,
    SaveActorsResult, TransientError,
)
from connectors.memory import MemoryConnector


class Config(BaseModel):
    token: SecretStr


class Good(BaseConnector[Config]):
    name = "good"
    config_model = Config

    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        return ActorTypesResult(actor_types=["Customer"])

    async def fields(self, request: FieldsInput) -> FieldsResult:
        return FieldsResult(fields=[])

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        token: str = self.config.token  # E: Incompatible types in assignment
        return GetActorsResult(actors=[])

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        return GetActorsResult(actors=[])  # E: Incompatible return value type


class NoSave:
    name = "nosave"
    config_model = Config

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        return GetActorsResult(actors=[])


def use(connector: Connector) -> None: ...


context = ConnectorContext(1, "one")
use(Good(Config(token=SecretStr("x")), context))
use(MemoryConnector.__new__(MemoryConnector))
use(NoSave())  # E: Argument 1 to "use" has incompatible type "NoSave"
GetActorsInput("Customer")  # E: Missing positional argument "keys"
GetActorsInput("Customer", ["1"]).keys = []  # E: is read-only
TransientError("busy", retry_after="soon")  # E: "retry_after" to "TransientError"
"""


def test_mypy_accepts_correct_use_and_rejects_misuse(tmp_path: Path) -> None:
    source = textwrap.dedent(SNIPPET)
    # A new module name each run: mypy's cache would replay an old run's errors and paths.
    path = tmp_path / f"snippet_{uuid.uuid4().hex}.py"
    path.write_text(source)
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            "--config-file",
            "pyproject.toml",
            str(path),
        ]
    )
    got: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        match = re.match(rf"{re.escape(str(path))}:(\d+): error: (.*)", line)
        if match:
            got.setdefault(int(match.group(1)), []).append(match.group(2))
    expected = {
        number: text.split("# E: ", 1)[1]
        for number, text in enumerate(source.splitlines(), start=1)
        if "# E: " in text
    }
    assert set(got) == set(expected), f"mypy said:\n{stdout}{stderr}"
    for number, fragment in expected.items():
        assert any(fragment in message for message in got[number]), (number, got[number])
