"""Stage 1 of a chunk: read the source, write its values into the CRM hub.

A planned chunk (or a whole-record retry) from an ERP reads the records' CRM values and the
source actors, and writes the fields that flow to the CRM (only those that differ, each logged).
The records that came through are *forwarded*: the chunk runner stores one push unit per target
for them (:mod:`engine.sync.push_stage`). A chunk from the CRM has nothing to read here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import structlog

import connectors as sdk
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping
from engine.store.keys import LinkTouch
from engine.store.results import FieldChange, Outcome
from engine.sync.connections import CallFailed, ConnectionHandle
from engine.sync.records import (
    Changed,
    ChunkResult,
    Intents,
    Keys,
    Links,
    Record,
    Stage,
    SyncContext,
    batches,
    fail,
    load_crm,
    not_saved,
    records_of,
    save_changes,
    skipped_note,
)

log = structlog.get_logger(__name__)


class SourceStage(Stage):
    """Runs stage 1 of a chunk against open connections."""

    async def run(
        self,
        source_id: int,
        keys: Keys,
        links: Links,
        attempt: int = 0,
        intents: Intents | None = None,
        no_blank_values: bool = False,
        sync: SyncContext | None = None,
    ) -> ChunkResult:
        """Apply the source to the CRM for ``keys``; the records to push go in ``forward``.

        ``no_blank_values``: a blank source value never overwrites a non-blank CRM value."""
        result = ChunkResult(attempt, None, records=len(keys))
        records = records_of(keys, links)
        if source_id > 0:
            records = [r for r in records if self._linked_to_source(r, source_id, result)]
        records = await load_crm(self.connections, records, result)
        if source_id > 0:
            records = await self._apply_source(
                source_id, records, result, intents or Intents(), no_blank_values, sync
            )
        result.forward = [r.key.id for r in records]
        return result

    @staticmethod
    def _linked_to_source(record: Record, source_id: int, result: ChunkResult) -> bool:
        if source_id in record.links:
            return True
        result.outcomes.append(
            Outcome(record.key.id, source_id, "not_linked", error="not linked to the source")
        )
        return False

    async def _apply_source(
        self,
        source_id: int,
        records: list[Record],
        result: ChunkResult,
        intents: Intents,
        no_blank_values: bool = False,
        sync: SyncContext | None = None,
    ) -> list[Record]:
        """Read the source actors and write their to-CRM fields into the CRM records."""
        source = self.connections.get(source_id)
        by_type: dict[str, list[Record]] = defaultdict(list)
        for record in records:
            by_type[record.links[source_id].erp_actor_type].append(record)
        ready: list[Record] = []
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
            for batch in batches(group, source.settings.batch_size):
                try:
                    response = await source.call(
                        source.connector.get_actors,
                        sdk.GetActorsInput(
                            erp_type, [r.links[source_id].erp_key for r in batch], erp_fields
                        ),
                    )
                except CallFailed as exc:
                    fail(result, batch, source, exc)
                    continue
                actors = {a.key: a for a in response.actors}
                ready += await self._write_crm(
                    source, mapping, batch, actors, result, intents, no_blank_values, sync
                )
        return ready

    async def _write_crm(
        self,
        source: ConnectionHandle,
        mapping: ActorTypeMapping,
        batch: Sequence[Record],
        actors: dict[str, sdk.Actor],
        result: ChunkResult,
        intents: Intents,
        no_blank_values: bool = False,
        sync: SyncContext | None = None,
    ) -> list[Record]:
        crm = self.connections.crm
        to_save: list[tuple[Record, Changed, list[FieldChange]]] = []
        notes: dict[int, str] = {}
        winners: dict[int, dict[str, mp.Side]] = {}
        erp_values: dict[int, dict[str, sdk.FieldValue]] = {}
        ready: list[Record] = []
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
            desired = mp.crm_values_from_erp(mapping, actor.fields)
            if no_blank_values:
                desired, skipped = mp.without_blank_overwrites(record.crm, desired)
                if skipped:
                    notes[record.key.id] = skipped_note(skipped)
                    log.info(
                        "blank source values not written",
                        internal_key=record.key.id,
                        connection=0,
                        fields=skipped,
                    )
            changed = mp.diff(record.crm, desired)
            if sync is not None:
                erp_values[record.key.id] = dict(actor.fields)
                changed, winners[record.key.id] = mp.settle_to_crm(
                    mapping,
                    changed,
                    sync.baseline(record.key.id),
                    record.crm_modified,
                    actor.last_modified,
                )
            # Changes an earlier run wrote but never committed: logged now, exactly once.
            applied = intents.applied(source.id, record.key.id, True, desired, changed)
            if changed:
                to_save.append((record, changed, applied))
                continue
            status = "updated" if applied else "unchanged"
            note = notes.get(record.key.id)
            result.outcomes.append(Outcome(record.key.id, 0, status, len(applied), note))
            result.changes += applied
            if applied:
                result.crm_written.append(record.key.id)
                result.crm_synced[record.key.id] = dict(record.crm)
            _agree(result, source.id, mapping, record, erp_values)
            ready.append(record)
        if not to_save:
            return ready
        crm_type = mapping.crm
        await intents.record(
            [
                c
                for r, ch, _ in to_save
                for c in _log_to_crm(source.id, mapping, r, ch, winners.get(r.key.id, {}))
            ]
        )
        try:
            response = await save_changes(
                crm, crm_type, [(r.key.crm_record_id, ch) for r, ch, _ in to_save]
            )
        except CallFailed as exc:
            fail(result, [r for r, _, _ in to_save], crm, exc)
            return ready
        failures = {f.key: f for f in response.failures}
        saved = {a.key for a in response.saved}
        for record, changed, applied in to_save:
            crm_key = record.key.crm_record_id
            if crm_key not in saved:
                fail(
                    result,
                    [record],
                    crm,
                    not_saved(crm, failures.get(crm_key), "not saved by the CRM connector"),
                )
                continue
            for crm_field, (_, new) in changed.items():
                record.crm[crm_field] = new
            won = winners.get(record.key.id, {})
            result.changes += _log_to_crm(source.id, mapping, record, changed, won) + applied
            count = len(changed) + len(applied)
            note = notes.get(record.key.id)
            result.outcomes.append(Outcome(record.key.id, 0, "updated", count, note))
            result.crm_written.append(record.key.id)
            result.crm_synced[record.key.id] = dict(record.crm)
            _agree(result, source.id, mapping, record, erp_values)
            ready.append(record)
        return ready


def _agree(
    result: ChunkResult,
    source_id: int,
    mapping: ActorTypeMapping,
    record: Record,
    erp_values: dict[int, dict[str, sdk.FieldValue]],
) -> None:
    """Continuous sync: the values the CRM and the source now hold alike (the baseline)."""
    erp = erp_values.get(record.key.id)
    if erp is not None:
        result.baselines[(source_id, record.key.id)] = mp.agreed(mapping, record.crm, erp)


def _log_to_crm(
    source_id: int,
    mapping: ActorTypeMapping,
    record: Record,
    changed: Changed,
    winners: dict[str, mp.Side],
) -> list[FieldChange]:
    link = record.links[source_id]
    return [
        FieldChange(
            connection_id=source_id,
            internal_key_id=record.key.id,
            external_key_id=link.id,
            erp_actor_type=link.erp_actor_type,
            erp_field=mp.erp_field_of(mapping, crm_field),
            crm_field=crm_field,
            target_is_crm=True,
            old_value=old,
            new_value=new,
            conflict_winner=winners.get(crm_field),
        )
        for crm_field, (old, new) in changed.items()
    ]
