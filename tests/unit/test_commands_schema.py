"""The published JSON Schema and the pydantic model agree on what a resync command is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from engine.messaging.commands import InvalidMessage, ResyncCommand, parse
from engine.messaging.consumer import message_identity

SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "resync-command.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

VALID: list[Any] = [
    {},
    {"ErpConnectionId": 0, "InternalKeyIds": [1, 2, 3]},
    {"erpconnectionid": 1, "INTERNALKEYIDS": []},
    {"ErpConnectionId": -1},
    {"ErpConnectionId": 2147483647, "InternalKeyIds": [9223372036854775807]},
    {"InternalKeyIds": None},
    {"InternalKeyIds": [5, 5, 4]},
    {"CorrelationId": "order-service/42", "SchemaVersion": 1},
    {"correlationId": None},
    {"correlationid": "x" * 255},
    {"TaskId": 7},
    {"NoBlankValues": True, "InternalKeyIds": [1]},
    {"noblankvalues": False},
    {"NOBLANKVALUES": None},
    {"Unknown": {"nested": True}, "ErpConnectionId": 2},
    {"InternalKeyIds": [1, 2], "TargetKeys": {"1": [1], "2": []}},
    {"targetkeys": None},
    *SCHEMA["examples"],
]

INVALID: list[Any] = [
    [],
    "resync",
    42,
    None,
    {"ErpConnectionId": "1"},
    {"ErpConnectionId": None},
    {"ErpConnectionId": True},
    {"ErpConnectionId": 2147483648},
    {"ErpConnectionId": -2147483649},
    {"InternalKeyIds": "1,2"},
    {"InternalKeyIds": [1, "2"]},
    {"InternalKeyIds": [0]},
    {"InternalKeyIds": [-3]},
    {"InternalKeyIds": [True]},
    {"InternalKeyIds": [1.5]},
    {"InternalKeyIds": [9223372036854775808]},
    {"internalkeyids": {"1": 1}},
    {"CorrelationId": 12},
    {"CorrelationId": "x" * 256},
    {"SchemaVersion": 2},
    {"SchemaVersion": 0},
    {"schemaVersion": "1"},
    {"TaskId": 0},
    {"TaskId": "7"},
    {"NoBlankValues": "true"},
    {"NoBlankValues": 1},
    {"TargetKeys": [1, 2]},
    {"TargetKeys": {"x": [1]}},
    {"TargetKeys": {"0": [1]}},
    {"TargetKeys": {"2": [0]}},
    {"TargetKeys": {"2": "1"}},
]


def _model_accepts(document: Any) -> bool:
    try:
        parse(ResyncCommand, orjson.dumps(document))
    except InvalidMessage:
        return False
    return True


@pytest.mark.parametrize("document", VALID, ids=repr)
def test_valid_for_schema_and_model(document: Any) -> None:
    VALIDATOR.validate(document)
    assert _model_accepts(document)


@pytest.mark.parametrize("document", INVALID, ids=repr)
def test_invalid_for_schema_and_model(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)
    assert not _model_accepts(document)


def test_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_model_field_is_in_the_schema() -> None:
    titles = {p["title"] for p in SCHEMA["patternProperties"].values()}
    aliases = {f.alias for f in ResyncCommand.model_fields.values()}
    assert titles == aliases


def test_integral_floats_are_the_one_documented_difference() -> None:
    """JSON Schema counts 1.0 as an integer; the engine wants JSON integers (documented)."""
    assert VALIDATOR.is_valid({"ErpConnectionId": 1.0})
    assert not _model_accepts({"ErpConnectionId": 1.0})
    assert "1.0 is rejected" in SCHEMA["description"]


def test_body_must_be_json() -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        parse(ResyncCommand, b"{not json")
    with pytest.raises(InvalidMessage, match="JSON object"):
        parse(ResyncCommand, b"[1, 2]")


def test_case_insensitive_names_map_to_one_command() -> None:
    command = parse(ResyncCommand, b'{"erpCONNECTIONid": 2, "internalkeyids": [3, 1, 3]}')
    assert command.erp_connection_id == 2
    assert command.internal_key_ids == (3, 1)
    assert command.as_request() == {"ErpConnectionId": 2, "InternalKeyIds": [3, 1]}


def test_message_identity_prefers_message_id_then_body_digest() -> None:
    assert message_identity("abc", b"{}") == "abc"
    digest = message_identity(None, b'{"ErpConnectionId": 0}')
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert digest == message_identity("", b'{"ErpConnectionId": 0}')
    assert digest != message_identity(None, b'{"ErpConnectionId": 1}')


@pytest.mark.parametrize("data", VALID)
def test_the_hand_written_body_is_what_pydantic_would_dump(data: Any) -> None:
    """``resync_body`` (the front door's hot path) encodes exactly pydantic's own dump."""
    command = ResyncCommand.model_validate(data)
    dumped = orjson.dumps(command.model_dump(by_alias=True, exclude_none=True))
    assert command.to_body() == dumped
    VALIDATOR.validate(orjson.loads(command.to_body()))


def test_target_keys_are_read_by_connection_id_and_kept_in_the_request() -> None:
    command = parse(ResyncCommand, b'{"InternalKeyIds": [4, 5], "targetKEYS": {"2": [5, 5]}}')
    assert command.target_keys == {2: (5,)}
    assert command.as_request() == {
        "ErpConnectionId": 0,
        "InternalKeyIds": [4, 5],
        "TargetKeys": {"2": [5]},
    }


def test_new_message_ids_are_random_version_4_uuids_in_hex() -> None:
    import uuid

    from engine.messaging.commands import new_message_id

    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        parsed = uuid.UUID(hex=message_id)
        assert parsed.hex == message_id  # 32 lower-case hex digits, as uuid4().hex
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
