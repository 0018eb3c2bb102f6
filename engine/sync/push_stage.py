"""Stage 2 of a chunk: push the CRM values of its records to one target connection.

A push unit (one per target for the records stage 1 forwarded) or a delayed retry on one target
reads the records' CRM values, reads the target's actors and writes only the fields that differ,
each logged; a record without a link is created there when its mapping says so.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import structlog

import connectors as sdk
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping
from engine.store.keys import Link, LinkTouch
from engine.store.results import FieldChange, Outcome
from engine.sync.connections import CallFailed, ConnectionHandle
from engine.sync.records import (
    Changed,
    ChunkResult,
    Intents,
    Keys,
    Links,
    NewLink,
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


@dataclass(frozen=True, slots=True)
class Item:
    """One record's desired values on one target actor."""

    record: Record
    link: Link | None
    mapping: ActorTypeMapping
    desired: dict[str, sdk.FieldValue]


class PushStage(Stage):
    """Runs stage 2 of a chunk (a push unit, or a delayed retry on one target)."""

    async def run(
        self,
        target_id: int,
        keys: Keys,
        links: Links,
        attempt: int = 0,
        intents: Intents | None = None,
        no_blank_values: bool = False,
        broken: Collection[int] = (),
        sync: SyncContext | None = None,
    ) -> ChunkResult:
        """Push the CRM values of ``keys`` to ``target_id`` (``links``: the target's;
        ``broken``: keys whose link to the target was broken on purpose, left alone).

        ``no_blank_values``: a blank CRM value never overwrites a non-blank target value."""
        result = ChunkResult(attempt, target_id)
        target = self.connections.get(target_id)
        if broken:
            for key in keys:
                if key.id in broken:
                    result.outcomes.append(
                        Outcome(
                            key.id,
                            target_id,
                            "not_linked",
                            error=f"link to {target.settings.name} was broken (BreakActorLink); "
                            "link it again to sync it there",
                        )
                    )
            keys = [k for k in keys if k.id not in broken]
        records = await load_crm(self.connections, records_of(keys, links), result)
        pushed = ChunkResult(attempt, target_id)
        result.merge(
            await self._push(target, records, pushed, intents or Intents(), no_blank_values, sync)
        )
        return result

    async def _push(
        self,
        target: ConnectionHandle,
        records: Sequence[Record],
        result: ChunkResult,
        intents: Intents,
        no_blank_values: bool = False,
        sync: SyncContext | None = None,
    ) -> ChunkResult:
        """Write the CRM values of ``records`` to one target into ``result``.

        Connector failures become outcomes or retries; only a failure to record the intents
        (PostgreSQL away) raises, before anything is written.
        """
        updates: dict[str, list[Item]] = defaultdict(list)
        creates: list[Item] = []
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
                updates[link.erp_actor_type].append(Item(record, link, mapping, desired))
            else:
                mapping = mp.creating_mapping(
                    target.settings.actor_types, record.key.crm_actor_type
                )
                if mapping is not None:
                    desired = mp.erp_values_from_crm(mapping, record.crm)
                    creates.append(Item(record, None, mapping, desired))
                else:  # said in the task's Response and per target, never silently skipped
                    result.outcomes.append(
                        Outcome(
                            record.key.id,
                            target.id,
                            "not_linked",
                            error=f"not linked to {target.settings.name}, and no actor type "
                            f"for {record.key.crm_actor_type} sets create_missing",
                        )
                    )
        jobs = [
            self._update_batch(target, erp_type, batch, result, intents, no_blank_values, sync)
            for erp_type, items in updates.items()
            for batch in batches(items, target.settings.batch_size)
        ]
        jobs += [self._create(target, item, result, sync) for item in creates]
        await asyncio.gather(*jobs)
        return result

    async def _update_batch(
        self,
        target: ConnectionHandle,
        erp_type: str,
        items: Sequence[Item],
        result: ChunkResult,
        intents: Intents,
        no_blank_values: bool = False,
        sync: SyncContext | None = None,
    ) -> None:
        fields = sorted({f for item in items for f in item.desired})
        if not fields:
            for item in items:
                result.outcomes.append(Outcome(item.record.key.id, target.id, "unchanged"))
            return
        keys = [item.link.erp_key for item in items if item.link is not None]
        try:
            current = await target.call(
                target.connector.get_actors, sdk.GetActorsInput(erp_type, keys, fields)
            )
        except CallFailed as exc:
            _fail_items(result, target, items, exc)
            return
        actors = {a.key: a for a in current.actors}
        to_save: list[tuple[Item, Changed, list[FieldChange]]] = []
        notes: dict[int, str] = {}
        winners: dict[int, dict[str, mp.Side]] = {}
        erp_values: dict[int, dict[str, sdk.FieldValue]] = {}
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
            desired = item.desired
            if no_blank_values:
                desired, skipped = mp.without_blank_overwrites(actor.fields, desired)
                if skipped:
                    notes[item.record.key.id] = skipped_note(skipped)
                    log.info(
                        "blank values not written",
                        internal_key=item.record.key.id,
                        connection=target.id,
                        fields=skipped,
                    )
            changed = mp.diff(actor.fields, desired)
            won: dict[str, mp.Side] = {}
            if sync is not None:
                changed, won = mp.settle_to_erp(
                    item.mapping,
                    changed,
                    sync.baseline(item.record.key.id),
                    item.record.crm_modified,
                    actor.last_modified,
                )
                winners[item.record.key.id] = won
                erp_values[item.record.key.id] = dict(actor.fields)
            # Changes an earlier run wrote but never committed: logged now, exactly once.
            applied = intents.applied(target.id, item.record.key.id, False, desired, changed)
            if changed:
                to_save.append((item, changed, applied))
                continue
            status = "updated" if applied else "unchanged"
            note = notes.get(item.record.key.id)
            result.outcomes.append(
                Outcome(item.record.key.id, target.id, status, len(applied), note)
            )
            result.changes += applied
            result.touches.append(LinkTouch(item.link.id, actor.last_modified))
            _agree(result, target.id, item, erp_values.get(item.record.key.id))
        if not to_save:
            return
        await intents.record(
            [
                c
                for item, ch, _ in to_save
                for c in _log_to_erp(
                    target.id, item, ch, erp_type, winners.get(item.record.key.id, {})
                )
            ]
        )
        try:
            saved = await save_changes(
                target,
                erp_type,
                [(item.link.erp_key, ch) for item, ch, _ in to_save if item.link is not None],
            )
        except CallFailed as exc:
            _fail_items(result, target, [item for item, _, _ in to_save], exc)
            return
        stamps = {a.key: a.last_modified for a in saved.saved}
        failures = {f.key: f for f in saved.failures}
        for item, changed, applied in to_save:
            assert item.link is not None
            key = item.link.erp_key
            if key not in stamps:
                _fail_items(
                    result,
                    target,
                    [item],
                    not_saved(target, failures.get(key), "not saved by the connector"),
                )
                continue
            result.touches.append(LinkTouch(item.link.id, stamps[key]))
            count = len(changed) + len(applied)
            note = notes.get(item.record.key.id)
            result.outcomes.append(Outcome(item.record.key.id, target.id, "updated", count, note))
            won = winners.get(item.record.key.id, {})
            result.changes += _log_to_erp(target.id, item, changed, erp_type, won) + applied
            before = erp_values.get(item.record.key.id)
            if before is not None:
                after = {**before, **{f: new for f, (_, new) in changed.items()}}
                _agree(result, target.id, item, after)

    async def _create(
        self,
        target: ConnectionHandle,
        item: Item,
        result: ChunkResult,
        sync: SyncContext | None = None,
    ) -> None:
        erp_type = item.mapping.erp
        try:
            created = await target.call(
                target.connector.create_actor,
                sdk.CreateActorInput(
                    sdk.Actor(erp_type, "", dict(item.desired)),
                    idempotency_key=f"erpsync:{item.record.key.id}:{target.id}",
                ),
            )
        except CallFailed as exc:
            _fail_items(result, target, [item], exc)
            return
        actor = created.actor
        result.new_links.append(
            NewLink(item.record.key.id, target.id, erp_type, actor.key, actor.last_modified)
        )
        changed: Changed = {f: (None, v) for f, v in item.desired.items() if not mp.same(None, v)}
        result.outcomes.append(Outcome(item.record.key.id, target.id, "created", len(changed)))
        result.changes += _log_to_erp(target.id, item, changed, erp_type, {})
        if sync is not None:
            _agree(result, target.id, item, dict(item.desired))


def _fail_items(
    result: ChunkResult, target: ConnectionHandle, items: Sequence[Item], exc: CallFailed
) -> None:
    fail(result, [item.record for item in items], target, exc, target_side=True)


def _agree(
    result: ChunkResult, target_id: int, item: Item, erp: dict[str, sdk.FieldValue] | None
) -> None:
    """Continuous sync: the values the CRM and the target now hold alike (the baseline)."""
    if erp is not None:
        result.baselines[(target_id, item.record.key.id)] = mp.agreed(
            item.mapping, item.record.crm, erp
        )


def _log_to_erp(
    connection_id: int,
    item: Item,
    changed: Changed,
    erp_type: str,
    winners: dict[str, mp.Side],
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
            conflict_winner=winners.get(erp_field),
        )
        for erp_field, (old, new) in changed.items()
    ]
