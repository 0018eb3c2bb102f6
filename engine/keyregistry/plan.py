"""Validate a key-registry export against itself and erpsync's registry, then apply it in one
transaction, or not at all.

Checks: the ids are integers and unique; ErpInternalKey's (tableId, recordId) is unique; both
rules of ErpExternalKey, (ErpConnectionId, ErpInternalKeyId) and (ErpConnectionId, ActorType,
ErpKey), hold within the export and together with what erpsync already has; every external key
names an internal key and a connection that exist (dangling keys are reported with their
lines); every connection is one of erpsync's (``--map-connection`` renumbers them). Rows equal to
erpsync's are left alone, so a second import changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.keyregistry.exports import (
    ERP_ACTOR_NUMBERS,
    ERP_ACTOR_TYPES,
    TABLE_IDS,
    TABLE_NUMBERS,
    Row,
)
from engine.store import Connection
from engine.store import key_import as store
from engine.store import keys as key_store
from engine.store.key_import import ExternalRow, InternalRow


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one row cannot be imported."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class Plan:
    """What an import does (or would do)."""

    new_internal: list[InternalRow] = field(default_factory=list)
    changed_internal: list[InternalRow] = field(default_factory=list)
    same_internal: int = 0
    new_external: list[ExternalRow] = field(default_factory=list)
    changed_external: list[ExternalRow] = field(default_factory=list)
    same_external: int = 0
    skipped: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    written: bool = False

    @property
    def changes(self) -> int:
        rows = (self.new_internal, self.changed_internal, self.new_external, self.changed_external)
        return sum(len(r) for r in rows)

    def summary(self) -> str:
        return (
            f"internal keys: {len(self.new_internal)} new, {len(self.changed_internal)} with a "
            f"new MostRecentTimestamp, {self.same_internal} unchanged; external keys: "
            f"{len(self.new_external)} new, {len(self.changed_external)} with a new "
            f"MostRecentTimestamp, {self.same_external} unchanged"
        )


@dataclass(slots=True)
class _Parsed:
    internal: list[tuple[Row, InternalRow]] = field(default_factory=list)
    external: list[tuple[Row, ExternalRow]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _int(row: Row, column: str, problems: list[Problem]) -> int | None:
    text = row.text(column)
    try:
        return int(text) if text is not None else None
    except ValueError:
        problems.append(Problem(row.where, f"{column} {text!r} is not an integer"))
        return None
    finally:
        if text is None:
            problems.append(Problem(row.where, f"{column} is empty"))


def _flag(row: Row, column: str) -> bool:
    return (row.text(column) or "0").lower() in ("1", "true", "yes")


def parse(
    tables: Mapping[str, Sequence[Row]],
    configured: Iterable[int],
    renumber: Mapping[int, int] | None = None,
) -> _Parsed:
    """Rows -> registry rows and the problems found within the export itself."""
    out = _Parsed()
    problems = out.problems
    renumber = renumber or {}
    allowed = set(configured)
    connections: dict[int, bool] = {}  # SuperOffice id -> deleted
    for row in tables["ErpConnection"]:
        cid = _int(row, "erpconnection_id", problems)
        if cid is None:
            continue
        if cid in connections:
            problems.append(Problem(row.where, f"erpconnection_id {cid} appears twice"))
        connections[cid] = _flag(row, "Deleted")
        target = renumber.get(cid, cid)
        if not connections[cid] and target not in allowed:
            problems.append(
                Problem(
                    row.where,
                    f"connection {cid} is not one of erpsync's ({sorted(allowed)}); configure it "
                    "or use --map-connection",
                )
            )
    _parse_internal(tables["ErpInternalKey"], out)
    seen_ids: set[int] = set()
    first_on: dict[tuple[object, ...], str] = {}  # either uniqueness rule -> first row
    deleted = 0
    for row in tables["ErpExternalKey"]:
        columns = ("erpexternalkey_id", "ErpInternalKeyId", "ErpConnectionId")
        ids = [_int(row, c, problems) for c in columns]
        erp_key = row.text("ErpKey")
        actor_type = _actor_type(row, problems)
        if erp_key is None:
            problems.append(Problem(row.where, "ErpKey is empty"))
        eid, iid, cid = ids
        if eid is None or iid is None or cid is None or erp_key is None or actor_type is None:
            continue
        if cid not in connections:
            problems.append(Problem(row.where, f"dangling: no ErpConnection {cid}"))
            continue
        if connections[cid]:
            deleted += 1
            continue
        target = renumber.get(cid, cid)
        if eid in seen_ids:
            problems.append(Problem(row.where, f"erpexternalkey_id {eid} appears twice"))
        seen_ids.add(eid)
        for rule, key in (
            ("(ErpConnectionId, ErpInternalKeyId)", (target, iid)),
            ("(ErpConnectionId, ActorType, ErpKey)", (target, actor_type, erp_key)),
        ):
            first = first_on.get((rule, *key))
            if first is not None:
                problems.append(Problem(row.where, f"{rule} {key} also on {first}"))
            first_on[(rule, *key)] = row.where
        stamp = row.text("MostRecentTimestamp")
        out.external.append((row, ExternalRow(eid, iid, target, actor_type, erp_key, stamp)))
    if deleted:
        out.skipped.append(f"{deleted} external key(s) of deleted connections skipped")
    return out


def _parse_internal(rows: Sequence[Row], out: _Parsed) -> None:
    problems = out.problems
    ids: dict[int, str] = {}
    pairs: dict[tuple[str, str], str] = {}
    for row in rows:
        key_id = _int(row, "erpinternalkey_id", problems)
        table = row.text("tableId")
        record = row.text("recordId")
        crm_type = _crm_type(table)
        if table is None or crm_type is None:
            problems.append(Problem(row.where, f"tableId {table!r} is not {_TABLES}"))
        if record is None:
            problems.append(Problem(row.where, "recordId is empty"))
        if key_id is None or crm_type is None or record is None:
            continue
        if key_id in ids:
            problems.append(Problem(row.where, f"erpinternalkey_id {key_id} also on {ids[key_id]}"))
            continue
        ids[key_id] = row.where
        pair = (crm_type, record)
        if pair in pairs:
            problems.append(
                Problem(row.where, f"(tableId, recordId) ({table}, {record}) also on {pairs[pair]}")
            )
            continue
        pairs[pair] = row.where
        stamp = row.text("MostRecentTimestamp")
        out.internal.append((row, InternalRow(key_id, crm_type, record, stamp)))


_TABLES = "contact (5), person (6), project (9) or sale (13)"


def _crm_type(table: str | None) -> str | None:
    if table is None:
        return None
    if table.isdigit():
        return TABLE_NUMBERS.get(int(table))
    return next((t for t in TABLE_IDS if t.lower() == table.lower()), None)


def _actor_type(row: Row, problems: list[Problem]) -> str | None:
    text = row.text("ActorType") or ""
    if text.isdigit():
        name = ERP_ACTOR_TYPES.get(int(text))
    else:
        name = next((t for t in ERP_ACTOR_TYPES.values() if t.lower() == text.lower()), None)
    if name is None or name == "Unknown":
        problems.append(Problem(row.where, f"ActorType {text!r} is not an ErpActorType"))
        return None
    return name


async def compare(conn: Connection, parsed: _Parsed) -> Plan:
    """The plan: the parsed rows against erpsync's registry (call within the transaction)."""
    plan = Plan(skipped=list(parsed.skipped), problems=list(parsed.problems))
    internal = [r for _, r in parsed.internal]
    found = await store.internal_clashes(
        conn,
        [r.id for r in internal],
        [r.crm_actor_type for r in internal],
        [r.crm_record_id for r in internal],
    )
    by_id = {r.id: r for r in found}
    by_pair = {(r.crm_actor_type, r.crm_record_id): r for r in found}
    for row, wanted in parsed.internal:
        have = by_id.get(wanted.id)
        clash = _internal_clash(wanted, have, by_pair.get(_record(wanted)))
        if clash:
            plan.problems.append(Problem(row.where, clash))
        elif have is None:
            plan.new_internal.append(wanted)
        elif have.most_recent_timestamp != wanted.most_recent_timestamp:
            plan.changed_internal.append(wanted)
        else:
            plan.same_internal += 1
    await _compare_external(conn, parsed, {r.id for r in internal}, plan)
    return plan


def _record(row: InternalRow) -> tuple[str, str]:
    return (row.crm_actor_type, row.crm_record_id)


def _internal_clash(
    wanted: InternalRow, have: InternalRow | None, other: InternalRow | None
) -> str | None:
    """Why ``wanted`` cannot go in next to erpsync's rows with its id or its record."""
    if have is not None and _record(have) != _record(wanted):
        return (
            f"erpinternalkey_id {wanted.id} is {' '.join(_record(have))} in erpsync, "
            f"{' '.join(_record(wanted))} here"
        )
    if other is not None and other.id != wanted.id:
        return (
            f"{' '.join(_record(wanted))} already has internal key {other.id} in erpsync, "
            f"not {wanted.id}"
        )
    return None


async def _compare_external(
    conn: Connection, parsed: _Parsed, imported: set[int], plan: Plan
) -> None:
    external = [r for _, r in parsed.external]
    known = imported | await key_store.existing(
        conn, sorted({r.internal_key_id for r in external} - imported)
    )
    found = await store.external_clashes(
        conn,
        [r.id for r in external],
        [r.connection_id for r in external],
        [r.internal_key_id for r in external],
        [r.erp_actor_type for r in external],
        [r.erp_key for r in external],
    )
    by_id = {r.id: r for r in found}
    by_link = {(r.connection_id, r.internal_key_id): r for r in found}
    by_key = {(r.connection_id, r.erp_actor_type, r.erp_key): r for r in found}
    for row, wanted in parsed.external:
        have = by_id.get(wanted.id)
        if wanted.internal_key_id not in known:
            clash: str | None = f"dangling: no ErpInternalKey {wanted.internal_key_id}"
        else:
            clash = _external_clash(
                wanted,
                have,
                by_link.get((wanted.connection_id, wanted.internal_key_id)),
                by_key.get((wanted.connection_id, wanted.erp_actor_type, wanted.erp_key)),
            )
        if clash:
            plan.problems.append(Problem(row.where, clash))
        elif have is None:
            plan.new_external.append(wanted)
        elif have.last_modified != wanted.last_modified:
            plan.changed_external.append(wanted)
        else:
            plan.same_external += 1


def _external_clash(
    wanted: ExternalRow,
    have: ExternalRow | None,
    link: ExternalRow | None,
    actor: ExternalRow | None,
) -> str | None:
    """Why ``wanted`` breaks a uniqueness rule together with erpsync's links."""
    if have is not None and _identity(have) != _identity(wanted):
        return (
            f"erpexternalkey_id {wanted.id} links {_identity(have)} in erpsync, "
            f"{_identity(wanted)} here"
        )
    if link is not None and link.id != wanted.id:
        return (
            f"internal key {wanted.internal_key_id} is already linked on connection "
            f"{wanted.connection_id} (to {link.erp_actor_type} {link.erp_key!r})"
        )
    if actor is not None and actor.id != wanted.id:
        return (
            f"{wanted.erp_actor_type} {wanted.erp_key!r} on connection {wanted.connection_id} "
            f"is already linked to internal key {actor.internal_key_id}"
        )
    return None


def _identity(row: ExternalRow) -> tuple[int, int, str, str]:
    return (row.internal_key_id, row.connection_id, row.erp_actor_type, row.erp_key)


async def apply(conn: Connection, parsed: _Parsed, *, dry_run: bool) -> Plan:
    """Compare and, unless ``dry_run`` or anything is wrong, write it all in one transaction."""
    async with conn.transaction():
        await store.lock(conn)
        plan = await compare(conn, parsed)
        if plan.problems or dry_run or not plan.changes:
            return plan
        await store.write_internal(conn, plan.new_internal + plan.changed_internal)
        await store.write_external(conn, plan.new_external + plan.changed_external)
        await store.bump_sequences(conn)
        plan.written = True
    return plan


async def registry_tables(
    conn: Connection, connections: Mapping[int, str]
) -> dict[str, list[dict[str, object]]]:
    """erpsync's registry as SuperOffice table rows (the export), ids and enums as numbers."""
    internal = await store.all_internal(conn)
    external = await store.all_external(conn)
    return {
        "ErpConnection": [
            {
                "erpconnection_id": cid,
                "DisplayName": name,
                "Active": 1,
                "ConnectionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"erpsync:connection:{cid}")),
                "Deleted": 0,
            }
            for cid, name in sorted(connections.items())
        ],
        "ErpInternalKey": [
            {
                "erpinternalkey_id": r.id,
                "tableId": TABLE_IDS.get(r.crm_actor_type, r.crm_actor_type),
                "recordId": r.crm_record_id,
                "MostRecentTimestamp": r.most_recent_timestamp,
            }
            for r in internal
        ],
        "ErpExternalKey": [
            {
                "erpexternalkey_id": r.id,
                "ErpInternalKeyId": r.internal_key_id,
                "ErpConnectionId": r.connection_id,
                "ErpKey": r.erp_key,
                "ActorType": ERP_ACTOR_NUMBERS.get(r.erp_actor_type, r.erp_actor_type),
                "MostRecentTimestamp": r.last_modified,
            }
            for r in external
        ],
    }
