"""Reading and writing table exports: one file per table, CSV (a header row) or JSON (an array
of objects), named after the table (``ErpInternalKey.csv``). Column names are SuperOffice's
(docs.superoffice.com, database tables 418, 422 and 423); extra columns (``registered``,
``updatedCount``, ...) are ignored. Every problem names its file and line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.model import CrmActorType, ErpActorType

TABLES = ("ErpConnection", "ErpInternalKey", "ErpExternalKey")
MAX_FILE_BYTES = 512 * 1024 * 1024

# SuperOffice table numbers of the CRM actor types (tableId of ErpInternalKey).
TABLE_NUMBERS: dict[int, str] = {
    5: str(CrmActorType.Contact),
    6: str(CrmActorType.Person),
    9: str(CrmActorType.Project),
    13: str(CrmActorType.Sale),
}
TABLE_IDS = {name: number for number, name in TABLE_NUMBERS.items()}
ERP_ACTOR_TYPES: dict[int, str] = dict(enumerate(str(t) for t in ErpActorType))
ERP_ACTOR_NUMBERS = {name: number for number, name in ERP_ACTOR_TYPES.items()}

COLUMNS: dict[str, tuple[str, ...]] = {
    "ErpConnection": ("erpconnection_id", "DisplayName", "Active", "ConnectionId", "Deleted"),
    "ErpInternalKey": ("erpinternalkey_id", "tableId", "recordId", "MostRecentTimestamp"),
    "ErpExternalKey": (
        "erpexternalkey_id",
        "ErpInternalKeyId",
        "ErpConnectionId",
        "ErpKey",
        "ActorType",
        "MostRecentTimestamp",
    ),
}
OPTIONAL = frozenset({"DisplayName", "Active", "ConnectionId", "Deleted", "MostRecentTimestamp"})
REQUIRED = {t: tuple(c for c in columns if c not in OPTIONAL) for t, columns in COLUMNS.items()}


class ExportError(Exception):
    """The export cannot be read at all (missing file, bad format, missing columns)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a table export and where it came from."""

    where: str  # "ErpExternalKey.csv:12"
    values: Mapping[str, str]

    def text(self, column: str) -> str | None:
        value = self.values.get(column)
        return None if value is None or value == "" else value


def find(directory: Path) -> dict[str, Path]:
    """The export file of each table in ``directory`` (name case-insensitive, .csv or .json)."""
    if not directory.is_dir():
        raise ExportError(f"{directory}: not a directory")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        for table in TABLES:
            if path.stem.lower() == table.lower() and path.suffix.lower() in (".csv", ".json"):
                if table in found:
                    raise ExportError(f"{directory}: two exports of {table}")
                found[table] = path
    missing = [t for t in TABLES if t not in found]
    if missing:
        raise ExportError(
            f"{directory}: no export of {', '.join(missing)} (expected e.g. {missing[0]}.csv)"
        )
    return found


def read(table: str, path: Path) -> list[Row]:
    """The rows of one table's export, with their line numbers (CSV) or indexes (JSON)."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ExportError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path.name}: {exc}") from None
    rows = list(
        _json_rows(path.name, text)
        if path.suffix.lower() == ".json"
        else _csv_rows(path.name, text)
    )
    columns = {c.lower() for r in rows[:1] for c in r.values}
    missing = [c for c in REQUIRED[table] if rows and c.lower() not in columns]
    if missing:
        raise ExportError(f"{path.name}: missing column(s) {', '.join(missing)}")
    return [Row(r.where, _canonical(table, r.values)) for r in rows]


def _canonical(table: str, values: Mapping[str, str]) -> dict[str, str]:
    """Column names as in the reference, whatever their case in the export."""
    names = {c.lower(): c for c in COLUMNS[table]}
    return {names.get(k.lower(), k): v for k, v in values.items()}


def _csv_rows(name: str, text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return
    for record in reader:
        if None in record:
            raise ExportError(f"{name}:{reader.line_num}: more values than columns")
        yield Row(f"{name}:{reader.line_num}", {k: (v or "").strip() for k, v in record.items()})


def _json_rows(name: str, text: str) -> Iterator[Row]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ExportError(f"{name}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise ExportError(f"{name}: expected an array of objects")
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ExportError(f"{name}[{index}]: expected an object")
        yield Row(f"{name}[{index}]", {str(k): _json_text(v) for k, v in item.items()})


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def write(directory: Path, table: str, rows: Sequence[Mapping[str, Any]], fmt: str) -> Path:
    """Write one table's export as CSV or JSON; return its path."""
    path = directory / f"{table}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(list(rows), indent=1, ensure_ascii=False) + "\n", "utf-8")
        return path
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS[table])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path
