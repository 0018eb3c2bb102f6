"""The synchronous resyncs' pure parts: the PluginResponse of a task, ExternalKeys binding and
the ErpActorType match (the HTTP paths run end to end in tests/e2e/api/test_force_resync.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.api import force_resync as fr
from engine.api.errors import ApiError
from tests.support.settings import memory_settings

SETTINGS = memory_settings("unused", "unused", {0: "a", 1: "b", 2: "c"})


def task(**kw: Any) -> dict[str, Any]:
    row = {
        "id": 7,
        "state": "Succeeded",
        "response": "2 records; writes: 4 updated, 0 unchanged, 0 failed; 4 fields changed",
        "unknown_keys": 0,
        "total_records": 2,
        "stopped_at": None,
    }
    return {**row, **kw}


def outcome(key: int, connection: int | None, status: str, error: str) -> dict[str, Any]:
    return {"internal_key_id": key, "connection_id": connection, "status": status, "error": error}


def test_a_clean_success_is_ok_with_the_tasks_response() -> None:
    answer = fr._plugin_response(task(), [], None)  # type: ignore[arg-type]
    assert (answer["IsOk"], answer["Status"], answer["ErrorCode"]) == (True, "Ok", "")
    assert answer["UserExplanation"] == task()["response"]
    assert answer["TechExplanation"] == f"Task 7 Succeeded: {task()['response']}"
    assert (answer["Changes"], answer["TableRight"], answer["FieldProperties"]) == (None, None, {})


def test_failures_are_listed_per_record_and_bounded() -> None:
    rows = [outcome(i, 2, "failed", "rejected " + "x" * 300) for i in range(fr.MAX_EXPLAINED + 1)]
    answer = fr._plugin_response(task(state="Failed"), rows, None)  # type: ignore[arg-type]
    assert (answer["IsOk"], answer["Status"], answer["ErrorCode"]) == (
        False,
        "Error",
        "ResyncFailed",
    )
    lines = answer["TechExplanation"].splitlines()
    assert lines[1].startswith("key 0 on connection 2: failed: rejected x")
    assert lines[-1].startswith("… more in the task's failures")
    assert len(answer["TechExplanation"]) <= fr.MAX_EXPLANATION


def test_error_codes_for_a_stop_and_for_only_unknown_keys() -> None:
    stopped = fr._plugin_response(task(state="Failed", stopped_at=1), [], None)  # type: ignore[arg-type]
    assert stopped["ErrorCode"] == "ResyncStopped"
    unknown = task(state="Failed", unknown_keys=2, total_records=0)
    assert fr._plugin_response(unknown, [], None)["ErrorCode"] == "UnknownInternalKeys"  # type: ignore[arg-type]


def test_unknown_erp_keys_are_named_and_without_a_task_nothing_is_ok() -> None:
    external = fr._External("Customer", 1, ["k1", "k2"])
    some = fr._plugin_response(task(), [], external)  # type: ignore[arg-type]
    assert (some["IsOk"], some["Status"]) == (True, "OkWithInfo")
    assert some["UserExplanation"].endswith("2 ERP keys not linked: 'k1', 'k2'")
    assert (
        "ExternalKey 'k2': no Customer with this key is linked on connection 1"
        in (some["TechExplanation"])
    )
    none = fr._plugin_response(None, [], external)
    assert (none["IsOk"], none["ErrorCode"]) == (False, "UnknownExternalKeys")
    assert none["UserExplanation"].startswith("Nothing resynced; 2 ERP keys not linked")


def test_the_timeout_answer_names_the_task() -> None:
    answer = fr._timed_out(42, 30.0)
    assert (answer["IsOk"], answer["ErrorCode"]) == (False, "ResyncTimeout")
    assert "batch task 42" in answer["UserExplanation"]
    assert "GetBatchTaskInfo?id=42" in answer["TechExplanation"]


def test_external_keys_bind_as_texts_without_duplicates() -> None:
    assert fr._external_keys({"externalkeys": ["a", 7, "a", "b"]}, 10) == ["a", "7", "b"]
    # Missing or empty: every linked actor of the type (SuperOffice: "or empty to resync all").
    assert fr._external_keys({}, 10) == [] == fr._external_keys({"externalkeys": []}, 10)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"externalkeys": "a"}, "array"),
        ({"externalkeys": ["a", ""]}, "ExternalKeys[1]"),
        ({"externalkeys": [True]}, "ExternalKeys[0]"),
        ({"externalkeys": ["x" * 256]}, "longer"),
        ({"externalkeys": ["a\x00"]}, "NUL"),
    ]
    for bad, message in cases:
        with pytest.raises(ApiError, match=message.replace("[", r"\[")):
            fr._external_keys(bad, 10)
    with pytest.raises(ApiError) as too_many:
        fr._external_keys({"externalkeys": ["a"] * 11}, 10)
    assert too_many.value.status == 413


def test_the_actor_type_matches_the_connections_mapping() -> None:
    erp1 = SETTINGS.connection(1)
    assert erp1 is not None
    assert fr._actor_type(erp1, "Customer") == "Customer"
    assert fr._actor_type(erp1, "CUSTOMER") == "Customer"
    with pytest.raises(ApiError) as unknown:
        fr._actor_type(erp1, "Vendor")
    assert (unknown.value.status, unknown.value.error_type) == (404, "SoNotFoundException")
    assert "its actor types: Customer" in unknown.value.message
    with pytest.raises(ApiError) as missing:
        fr._actor_type(erp1, None)
    assert missing.value.status == 400
