"""Resync one chunk of internal keys: read the source, update the CRM hub, fan out to targets.

Values flow source -> CRM -> other connections, each field following its direction. Every write
is preceded by a read of the target, and only differing fields are written and logged, so running
a chunk twice changes nothing the second time. Nothing here touches the database: the caller
commits the returned :class:`ChunkResult` in one transaction.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from connectors.contract import (
    CreateActorInput,
    GetActorsInput,
    SaveActorsInput,
)
from connectors.model import Actor, FieldValue
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping
from engine.settings import Settings
from engine.store.keys import InternalKey, Link, LinkTouch
from engine.store.results import FieldChange, Outcome
from engine.store.tasks import ChunkCounts
from engine.sync.connections import CallFailed, ConnectionHandle, Connections

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link to an actor the engine just created."""

    internal_key_id: int
    connection_id: int
    erp_actor_type: str
    erp_key: str
    last_modified: str | None


@dataclass
class PendingRetry:
    """Records whose calls failed transiently: to run again later as a delayed-retry chunk."""

    connection_id: int
    """The connection that failed (its retry settings pace the retry)."""
    keys: dict[int, None] = field(default_factory=dict)
    retry_after: float = 0.0


@dataclass
class ChunkResult:
    """Everything a chunk produced, to be committed at once.

    ``attempt`` and ``target`` describe the run: None for a planned chunk (or a whole-record
    retry), otherwise a push unit or a delayed retry of records on one ``target`` connection.
    ``retries`` holds the records to retry later per target (None: the whole record, when the
    source side failed). ``forward`` lists the records that passed the source stage, to be
    pushed to the targets by push units, when the run did not push itself.
    """

    attempt: int = 0
    target: int | None = None
    retries: dict[int | None, PendingRetry] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)
    touches: list[LinkTouch] = field(default_factory=list)
    new_links: list[NewLink] = field(default_factory=list)
    crm_written: list[int] = field(default_factory=list)
    forward: list[int] = field(default_factory=list)
    records: int = 0
    configuration_error: str | None = None

    def counts(self) -> ChunkCounts:
        by_status: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            by_status[outcome.status] += 1
        return ChunkCounts(
            records=self.records,
            unknown_keys=by_status["unknown_key"],
            updated=by_status["updated"],
            unchanged=by_status["unchanged"],
            created=by_status["created"],
            failed=by_status["failed"],
            fields_changed=len(self.changes),
        )

    def merge(self, other: ChunkResult) -> None:
        for target, pending in other.retries.items():
            mine = self.retries.setdefault(target, PendingRetry(pending.connection_id))
            mine.keys.update(pending.keys)
            mine.retry_after = max(mine.retry_after, pending.retry_after)
        self.outcomes += other.outcomes
        self.changes += other.changes
        self.touches += other.touches
        self.new_links += other.new_links
        self.configuration_error = self.configuration_error or other.configuration_error


@dataclass
class _Record:
    """A record moving through the chunk: its key, links and current CRM values."""

    key: InternalKey
    links: dict[int, Link]
    crm: dict[str, FieldValue]


@dataclass(frozen=True, slots=True)
class _Item:
    """One record's desired values on one target actor."""

    record: _Record
    link: Link | None
    mapping: ActorTypeMapping
    desired: dict[str, FieldValue]


class ChunkResync:
    """Runs the resync of one chunk against open connections."""

    def __init__(self, settings: Settings, connections: Connections) -> None:
        self.settings = settings
        self.connections = connections

    async def run(
        self,
        source_id: int,
        keys: Sequence[InternalKey],
        links: Sequence[Link],
        *,
        attempt: int = 0,
        target: int | None = None,
        push: bool = True,
    ) -> ChunkResult:
        """Resync ``keys``; a run for one ``target`` skips the source (already applied).

        With ``push`` False (stage 1 of a chunk) the source step runs but nothing is pushed:
        the records to push are returned in ``forward``.
        """
        result = ChunkResult(attempt, target, records=len(keys) if target is None else 0)
        links_by_key: dict[int, dict[int, Link]] = defaultdict(dict)
        for link in links:
            links_by_key[link.internal_key_id][link.connection_id] = link
        records = [_Record(k, links_by_key[k.id], {}) for k in keys]

        if source_id > 0 and target is None:
            records = [r for r in records if self._linked_to_source(r, source_id, result)]
        records = await self._load_crm(records, result)
        if source_id > 0 and target is None:
            records = await self._apply_source(source_id, records, result)

        if target is None and not push:
            result.forward = [r.key.id for r in records]
            return result
        targets = (
            [self.connections.get(target)] if target is not None else self.push_targets(source_id)
        )
        pushed = await asyncio.gather(
            *(self._push(t, records, ChunkResult(attempt, target)) for t in targets)
        )
        for part in pushed:
            result.merge(part)
        return result

    def push_targets(self, source_id: int) -> list[ConnectionHandle]:
        """The connections a task from ``source_id`` pushes to: every ERP but the source."""
        return [h for h in self.connections.erps() if h.id != source_id]

    # -- source side ----------------------------------------------------------------------------

    @staticmethod
    def _linked_to_source(record: _Record, source_id: int, result: ChunkResult) -> bool:
        if source_id in record.links:
            return True
        result.outcomes.append(
            Outcome(record.key.id, source_id, "not_linked", error="not linked to the source")
        )
        return False

    async def _load_crm(self, records: list[_Record], result: ChunkResult) -> list[_Record]:
        """Read the mapped CRM fields of every record; records missing in the CRM fail."""
        crm = self.connections.crm
        by_type: dict[str, list[_Record]] = defaultdict(list)
        for record in records:
            by_type[record.key.crm_actor_type].append(record)
        found: list[_Record] = []
        for actor_type, group in by_type.items():
            fields = mp.crm_fields_used(
                (m for c in self.settings.connections for m in c.actor_types), actor_type
            )
            for batch in _chunks(group, crm.settings.batch_size):
                try:
                    response = await crm.call(
                        crm.connector.get_actors,
                        GetActorsInput(actor_type, [r.key.crm_record_id for r in batch], fields),
                    )
                except CallFailed as exc:
                    self._fail_all(result, batch, 0, exc)
                    continue
                actors = {a.key: a for a in response.actors}
                for record in batch:
                    actor = actors.get(record.key.crm_record_id)
                    if actor is None:
                        result.outcomes.append(
                            Outcome(
                                record.key.id,
                                0 if result.target is None else result.target,
                                "failed",
                                error="CRM record not found",
                            )
                        )
                    else:
                        record.crm = dict(actor.fields)
                        found.append(record)
        return found

    async def _apply_source(
        self, source_id: int, records: list[_Record], result: ChunkResult
    ) -> list[_Record]:
        """Read the source actors and write their to-CRM fields into the CRM records."""
        source = self.connections.get(source_id)
        by_type: dict[str, list[_Record]] = defaultdict(list)
        for record in records:
            by_type[record.links[source_id].erp_actor_type].append(record)
        ready: list[_Record] = []
        for erp_type, group in by_type.items():
            mapping = source.settings.mapping_for(erp_type)
            if mapping is None:
                for record in group:
                    result.outcomes.append(
                        Outcome(
                            record.key.id,
                            source_id,
                            "failed",
                            error=f"no mapping for {erp_type} on the source",
                        )
                    )
                continue
            mismatched = [r for r in group if r.key.crm_actor_type != mapping.crm]
            for record in mismatched:
                result.outcomes.append(
                    Outcome(
                        record.key.id,
                        source_id,
                        "failed",
                        error=f"{erp_type} maps to {mapping.crm}, not {record.key.crm_actor_type}",
                    )
                )
            group = [r for r in group if r.key.crm_actor_type == mapping.crm]
            erp_fields = list(mapping.fields)
            for batch in _chunks(group, source.settings.batch_size):
                try:
                    response = await source.call(
                        source.connector.get_actors,
                        GetActorsInput(
                            erp_type, [r.links[source_id].erp_key for r in batch], erp_fields
                        ),
                    )
                except CallFailed as exc:
                    self._fail_all(result, batch, source_id, exc)
                    continue
                actors = {a.key: a for a in response.actors}
                ready += await self._write_crm(source, mapping, batch, actors, result)
        return ready

    async def _write_crm(
        self,
        source: ConnectionHandle,
        mapping: ActorTypeMapping,
        batch: Sequence[_Record],
        actors: dict[str, Actor],
        result: ChunkResult,
    ) -> list[_Record]:
        crm = self.connections.crm
        to_save: list[tuple[_Record, dict[str, tuple[FieldValue, FieldValue]]]] = []
        ready: list[_Record] = []
        for record in batch:
            link = record.links[source.id]
            actor = actors.get(link.erp_key)
            if actor is None:
                result.outcomes.append(
                    Outcome(
                        record.key.id,
                        source.id,
                        "failed",
                        error=f"{link.erp_actor_type} {link.erp_key!r} not found on source",
                    )
                )
                continue
            result.touches.append(LinkTouch(link.id, actor.last_modified))
            changed = mp.diff(record.crm, mp.crm_values_from_erp(mapping, actor.fields))
            if changed:
                to_save.append((record, changed))
            else:
                result.outcomes.append(Outcome(record.key.id, 0, "unchanged"))
                ready.append(record)
        if not to_save:
            return ready
        crm_type = mapping.crm
        try:
            response = await crm.call(
                crm.connector.save_actors,
                SaveActorsInput(
                    crm_type,
                    [
                        Actor(crm_type, r.key.crm_record_id, {f: new for f, (_, new) in ch.items()})
                        for r, ch in to_save
                    ],
                ),
            )
        except CallFailed as exc:
            self._fail_all(result, [r for r, _ in to_save], 0, exc)
            return ready
        failures = {f.key: f for f in response.failures}
        saved = {a.key for a in response.saved}
        for record, changed in to_save:
            crm_key = record.key.crm_record_id
            if crm_key not in saved:
                failure = failures.get(crm_key)
                error = failure.message if failure else "not saved by the CRM connector"
                kind = failure.kind if failure else "permanent"
                self._fail_all(
                    result, [record], 0, CallFailed(f"{crm.settings.name}: {error}", kind)
                )
                continue
            link = record.links[source.id]
            for crm_field, (old, new) in changed.items():
                record.crm[crm_field] = new
                result.changes.append(
                    FieldChange(
                        connection_id=source.id,
                        internal_key_id=record.key.id,
                        external_key_id=link.id,
                        erp_actor_type=link.erp_actor_type,
                        erp_field=mp.erp_field_of(mapping, crm_field),
                        crm_field=crm_field,
                        target_is_crm=True,
                        old_value=old,
                        new_value=new,
                    )
                )
            result.outcomes.append(Outcome(record.key.id, 0, "updated", len(changed)))
            result.crm_written.append(record.key.id)
            ready.append(record)
        return ready

    # -- targets --------------------------------------------------------------------------------

    async def _push(
        self, target: ConnectionHandle, records: Sequence[_Record], result: ChunkResult
    ) -> ChunkResult:
        """Write the CRM values of ``records`` to one target into ``result``; never raises."""
        updates: dict[str, list[_Item]] = defaultdict(list)
        creates: list[_Item] = []
        for record in records:
            link = record.links.get(target.id)
            if link is not None:
                mapping = target.settings.mapping_for(link.erp_actor_type)
                if mapping is None or mapping.crm != record.key.crm_actor_type:
                    result.outcomes.append(
                        Outcome(
                            record.key.id,
                            target.id,
                            "failed",
                            error=f"no mapping for {link.erp_actor_type} "
                            f"<-> {record.key.crm_actor_type}",
                        )
                    )
                    continue
                desired = mp.erp_values_from_crm(mapping, record.crm)
                updates[link.erp_actor_type].append(_Item(record, link, mapping, desired))
            else:
                mapping = mp.creating_mapping(
                    target.settings.actor_types, record.key.crm_actor_type
                )
                if mapping is not None:
                    desired = mp.erp_values_from_crm(mapping, record.crm)
                    creates.append(_Item(record, None, mapping, desired))
        jobs = [
            self._update_batch(target, erp_type, batch, result)
            for erp_type, items in updates.items()
            for batch in _chunks(items, target.settings.batch_size)
        ]
        jobs += [self._create(target, item, result) for item in creates]
        await asyncio.gather(*jobs)
        return result

    async def _update_batch(
        self,
        target: ConnectionHandle,
        erp_type: str,
        items: Sequence[_Item],
        result: ChunkResult,
    ) -> None:
        fields = sorted({f for item in items for f in item.desired})
        if not fields:
            for item in items:
                result.outcomes.append(Outcome(item.record.key.id, target.id, "unchanged"))
            return
        keys = [item.link.erp_key for item in items if item.link is not None]
        try:
            current = await target.call(
                target.connector.get_actors, GetActorsInput(erp_type, keys, fields)
            )
        except CallFailed as exc:
            self._fail_items(result, target, items, exc)
            return
        actors = {a.key: a for a in current.actors}
        to_save: list[tuple[_Item, dict[str, tuple[FieldValue, FieldValue]]]] = []
        for item in items:
            assert item.link is not None
            actor = actors.get(item.link.erp_key)
            if actor is None:
                result.outcomes.append(
                    Outcome(
                        item.record.key.id,
                        target.id,
                        "failed",
                        error=f"{erp_type} {item.link.erp_key!r} not found",
                    )
                )
                continue
            changed = mp.diff(actor.fields, item.desired)
            if changed:
                to_save.append((item, changed))
            else:
                result.outcomes.append(Outcome(item.record.key.id, target.id, "unchanged"))
                result.touches.append(LinkTouch(item.link.id, actor.last_modified))
        if not to_save:
            return
        try:
            saved = await target.call(
                target.connector.save_actors,
                SaveActorsInput(
                    erp_type,
                    [
                        Actor(erp_type, item.link.erp_key, {f: new for f, (_, new) in ch.items()})
                        for item, ch in to_save
                        if item.link is not None
                    ],
                ),
            )
        except CallFailed as exc:
            self._fail_items(result, target, [item for item, _ in to_save], exc)
            return
        stamps = {a.key: a.last_modified for a in saved.saved}
        failures = {f.key: f for f in saved.failures}
        for item, changed in to_save:
            assert item.link is not None
            key = item.link.erp_key
            if key not in stamps:
                failure = failures.get(key)
                error = failure.message if failure else "not saved by the connector"
                kind = failure.kind if failure else "permanent"
                self._fail_items(
                    result, target, [item], CallFailed(f"{target.settings.name}: {error}", kind)
                )
                continue
            result.touches.append(LinkTouch(item.link.id, stamps[key]))
            result.outcomes.append(Outcome(item.record.key.id, target.id, "updated", len(changed)))
            result.changes += _log_to_erp(target.id, item, changed, erp_type)

    async def _create(self, target: ConnectionHandle, item: _Item, result: ChunkResult) -> None:
        erp_type = item.mapping.erp
        try:
            created = await target.call(
                target.connector.create_actor,
                CreateActorInput(
                    Actor(erp_type, "", dict(item.desired)),
                    idempotency_key=f"erpsync:{item.record.key.id}:{target.id}",
                ),
            )
        except CallFailed as exc:
            self._fail_items(result, target, [item], exc)
            return
        actor = created.actor
        result.new_links.append(
            NewLink(item.record.key.id, target.id, erp_type, actor.key, actor.last_modified)
        )
        changed: dict[str, tuple[FieldValue, FieldValue]] = {
            f: (None, v) for f, v in item.desired.items() if not mp.same(None, v)
        }
        result.outcomes.append(Outcome(item.record.key.id, target.id, "created", len(changed)))
        result.changes += _log_to_erp(target.id, item, changed, erp_type)

    # -- failures -------------------------------------------------------------------------------

    def _fail_all(
        self,
        result: ChunkResult,
        records: Sequence[_Record],
        connection_id: int,
        exc: CallFailed,
        *,
        target_side: bool = False,
    ) -> None:
        """Record failed calls: transient ones become delayed retries while attempts remain."""
        on = connection_id if result.target is None else result.target
        conn = self.settings.connection(connection_id)
        delayed = conn.retry.delayed_attempts if conn is not None else 0
        error = exc.message
        if exc.kind == "transient":
            if result.attempt < delayed:
                retry_as = result.target if result.target is not None else None
                if target_side:
                    retry_as = connection_id
                pending = result.retries.setdefault(retry_as, PendingRetry(connection_id))
                pending.keys.update((r.key.id, None) for r in records)
                pending.retry_after = max(pending.retry_after, exc.retry_after)
                return
            if delayed:
                error = f"{error} (gave up after {result.attempt} delayed retries)"
        for record in records:
            result.outcomes.append(Outcome(record.key.id, on, "failed", error=error))
        if exc.kind == "configuration":
            result.configuration_error = exc.message

    def _fail_items(
        self, result: ChunkResult, target: ConnectionHandle, items: Sequence[_Item], exc: CallFailed
    ) -> None:
        self._fail_all(result, [item.record for item in items], target.id, exc, target_side=True)


def _log_to_erp(
    connection_id: int,
    item: _Item,
    changed: dict[str, tuple[FieldValue, FieldValue]],
    erp_type: str,
) -> list[FieldChange]:
    return [
        FieldChange(
            connection_id=connection_id,
            internal_key_id=item.record.key.id,
            external_key_id=item.link.id if item.link else None,
            erp_actor_type=erp_type,
            erp_field=erp_field,
            crm_field=mp.crm_field_of(item.mapping, erp_field),
            target_is_crm=False,
            old_value=old,
            new_value=new,
        )
        for erp_field, (old, new) in changed.items()
    ]


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
