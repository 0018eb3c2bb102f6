"""Reading and validating key-registry exports, without a database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.keyregistry import exports
from engine.keyregistry.plan import parse

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "superoffice" / "keys"


def tables(directory: Path) -> dict[str, list[exports.Row]]:
    return {t: exports.read(t, p) for t, p in exports.find(directory).items()}


def copy(tmp_path: Path) -> Path:
    target = tmp_path / "keys"
    shutil.copytree(SAMPLE, target)
    return target


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def test_the_sample_export_parses_keeping_ids() -> None:
    parsed = parse(tables(SAMPLE), configured=[1, 2])
    assert not parsed.problems
    assert [(r.id, r.crm_actor_type, r.crm_record_id) for _, r in parsed.internal] == [
        (7001, "Contact", "11"),
        (7003, "Contact", "12"),
        (7010, "Contact", "13"),
        (7020, "Person", "21"),
    ]
    assert [(r.id, r.connection_id, r.erp_actor_type, r.erp_key) for _, r in parsed.external][
        -3:
    ] == [
        (9104, 1, "Person", "P1-21"),
        (9201, 2, "Customer", "E2-11"),
        (9202, 2, "Customer", "E2-12"),
    ]
    assert parsed.skipped == ["1 external key(s) of deleted connections skipped"]


def test_both_uniqueness_rules_and_duplicates_are_reported_with_lines(tmp_path: Path) -> None:
    keys = copy(tmp_path)
    append(keys / "ErpInternalKey.csv", "7001,5,99,,,,,,")  # line 6: id again
    append(keys / "ErpInternalKey.csv", "7002,5,11,,,,,,")  # line 7: (tableId, recordId) again
    append(keys / "ErpExternalKey.csv", "9301,7001,1,E1-99,1,,,,,,")  # line 9: rule 1
    append(keys / "ErpExternalKey.csv", "9302,7010,2,E2-11,1,,,,,,")  # line 10: rule 2
    problems = [str(p) for p in parse(tables(keys), configured=[1, 2]).problems]
    assert problems == [
        "ErpInternalKey.csv:6: erpinternalkey_id 7001 also on ErpInternalKey.csv:2",
        "ErpInternalKey.csv:7: (tableId, recordId) (5, 11) also on ErpInternalKey.csv:2",
        "ErpExternalKey.csv:9: (ErpConnectionId, ErpInternalKeyId) (1, 7001) also on "
        "ErpExternalKey.csv:2",
        "ErpExternalKey.csv:10: (ErpConnectionId, ActorType, ErpKey) (2, 'Customer', 'E2-11') "
        "also on ErpExternalKey.csv:6",
    ]


def test_unknown_and_dangling_connections_and_bad_values(tmp_path: Path) -> None:
    keys = copy(tmp_path)
    append(keys / "ErpExternalKey.csv", "9401,7003,4,X-1,1,,,,,,")  # no ErpConnection 4
    append(keys / "ErpExternalKey.csv", "9402,7003,1,X-2,Planet,,,,,,")
    append(keys / "ErpInternalKey.csv", "x7,5,14,,,,,,")
    append(keys / "ErpInternalKey.csv", "7030,77,14,,,,,,")
    problems = [str(p) for p in parse(tables(keys), configured=[1]).problems]
    assert problems == [
        "ErpConnection.json[2]: connection 2 is not one of erpsync's ([1]); configure it or use "
        "--map-connection",
        "ErpInternalKey.csv:6: erpinternalkey_id 'x7' is not an integer",
        "ErpInternalKey.csv:7: tableId '77' is not contact (5), person (6), project (9) or "
        "sale (13)",
        "ErpExternalKey.csv:9: dangling: no ErpConnection 4",
        "ErpExternalKey.csv:10: ActorType 'Planet' is not an ErpActorType",
    ]


def test_connections_can_be_renumbered() -> None:
    parsed = parse(tables(SAMPLE), configured=[1, 12], renumber={2: 12})
    assert not parsed.problems
    assert {r.connection_id for _, r in parsed.external} == {1, 12}


def test_json_and_csv_read_alike_and_missing_columns_are_refused(tmp_path: Path) -> None:
    keys = copy(tmp_path)
    rows = tables(keys)["ErpInternalKey"]
    (keys / "ErpInternalKey.csv").unlink()
    exports.write(keys, "ErpInternalKey", [dict(r.values) for r in rows], "json")
    again = tables(keys)["ErpInternalKey"]
    assert [r.values["erpinternalkey_id"] for r in again] == ["7001", "7003", "7010", "7020"]
    assert again[0].where == "ErpInternalKey.json[1]"
    (keys / "ErpInternalKey.json").write_text('[{"erpinternalkey_id": 1, "tableId": 5}]')
    with pytest.raises(exports.ExportError, match=r"missing column.*recordId"):
        tables(keys)
    (keys / "ErpInternalKey.json").unlink()
    with pytest.raises(exports.ExportError, match="no export of ErpInternalKey"):
        exports.find(keys)
