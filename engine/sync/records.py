"""What both resync stages share: a chunk's records, their CRM values, and the result.

A chunk runs in two stages (:mod:`engine.sync.source_stage`, :mod:`engine.sync.push_stage`).
Nothing here touches the database: the chunk runner commits the returned :class:`ChunkResult` in
one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import connectors as sdk
from engine.mapping import values as mp
from engine.store.keys import InternalKey, Link, LinkTouch
from engine.store.results import FieldChange, Outcome
from engine.store.tasks import ChunkCounts
from engine.sync.connections import CallFailed, ConnectionHandle, Connections

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
    crm_synced: dict[int, dict[str, sdk.FieldValue]] = field(default_factory=dict)
    """CRM values of the records this run wrote into the CRM, as written (the incremental
    sync's echo check)."""
    baselines: dict[tuple[int, int], dict[str, sdk.FieldValue]] = field(default_factory=dict)
    """(connection, internal key) -> CRM-field values both sides now agree on (continuous
    sync's conflict baseline); filled only when the stage was asked to track them."""
    forward: list[int] = field(default_factory=list)
    records: int = 0

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
        self.crm_synced.update(other.crm_synced)
        self.baselines.update(other.baselines)


@dataclass
class Record:
    """A record moving through the chunk: its key, links and current CRM values."""

    key: InternalKey
    links: dict[int, Link]
    crm: dict[str, sdk.FieldValue]
    crm_modified: str | None = None
    baseline: dict[str, sdk.FieldValue] | None = None
    """Continuous sync only: the values the CRM and this stage's ERP last agreed on."""


class Intents:
    """A run's change intents: recorded before each save, matched when a value is already set.

    ``recorder`` stores intended changes durably (it raises when it cannot: no write without
    its intent). ``unsettled`` are the intents earlier runs of the task left on these records:
    a field already equal to one's new value was written by that run, which died before its
    commit, so the change is logged from the intent (see :mod:`engine.store.intents`).
    """

    def __init__(
        self,
        recorder: Callable[[Sequence[FieldChange]], Awaitable[None]] | None = None,
        unsettled: Sequence[FieldChange] = (),
    ) -> None:
        self._recorder = recorder
        self._open: dict[tuple[int, int, bool, str], list[FieldChange]] = defaultdict(list)
        for change in unsettled:
            field_name = change.crm_field if change.target_is_crm else change.erp_field
            key = (change.connection_id, change.internal_key_id, change.target_is_crm, field_name)
            self._open[key].append(change)

    async def record(self, changes: Sequence[FieldChange]) -> None:
        if changes and self._recorder is not None:
            await self._recorder(changes)

    def applied(
        self,
        connection_id: int,
        internal_key_id: int,
        target_is_crm: bool,
        desired: Mapping[str, sdk.FieldValue],
        changed: Mapping[str, object],
    ) -> list[FieldChange]:
        """The intents on this record whose new value the target already holds: applied.

        ``desired``: the values the run wants; ``changed``: those that differ from the target's
        (every other desired value is the target's current one)."""
        if not self._open:
            return []
        found = []
        for field_name, value in desired.items():
            if field_name in changed:
                continue
            key = (connection_id, internal_key_id, target_is_crm, field_name)
            for intent in self._open.get(key, ()):
                if mp.same(intent.new_value, value) and not mp.same(intent.old_value, value):
                    found.append(intent)
                    del self._open[key]
                    break
        return found


@dataclass(slots=True)
class SyncContext:
    """Given to a stage while the continuous sync is enabled: track the agreed values (the
    baselines), and in a ``Sync`` task (``settle``) apply the conflict rules against them."""

    settle: bool = False
    baselines: dict[int, dict[str, sdk.FieldValue]] = field(default_factory=dict)
    """Internal key -> the values the CRM and the stage's ERP last agreed on."""

    def baseline(self, internal_key_id: int) -> dict[str, sdk.FieldValue] | None:
        return self.baselines.get(internal_key_id) if self.settle else None


class Stage:
    """A resync stage of a chunk, run against the open connections."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections


Keys = Sequence[InternalKey]
Links = Sequence[Link]


def records_of(keys: Keys, links: Links) -> list[Record]:
    """The chunk's records, each with its links by connection id (no CRM values yet)."""
    links_by_key: dict[int, dict[int, Link]] = defaultdict(dict)
    for link in links:
        links_by_key[link.internal_key_id][link.connection_id] = link
    return [Record(k, links_by_key[k.id], {}) for k in keys]


async def load_crm(
    connections: Connections, records: list[Record], result: ChunkResult
) -> list[Record]:
    """Read the mapped CRM fields of every record; records missing in the CRM fail."""
    crm = connections.crm
    mappings = [m for erp in connections.erps() for m in erp.settings.actor_types]
    by_type: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_type[record.key.crm_actor_type].append(record)
    found: list[Record] = []
    for actor_type, group in by_type.items():
        fields = mp.crm_fields_used(mappings, actor_type)
        for batch in batches(group, crm.settings.batch_size):
            try:
                response = await crm.call(
                    crm.connector.get_actors,
                    sdk.GetActorsInput(actor_type, [r.key.crm_record_id for r in batch], fields),
                )
            except CallFailed as exc:
                fail(result, batch, crm, exc)
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
                    record.crm_modified = actor.last_modified
                    found.append(record)
    return found


Changed = dict[str, tuple[sdk.FieldValue, sdk.FieldValue]]
"""Fields whose value changes: field -> (old, new)."""


async def save_changes(
    connection: ConnectionHandle, actor_type: str, changes: Sequence[tuple[str, Changed]]
) -> sdk.SaveActorsResult:
    """Write the new values of ``changes`` (actor key, changed fields) in one call."""
    actors = [
        sdk.Actor(actor_type, key, {f: new for f, (_, new) in changed.items()})
        for key, changed in changes
    ]
    return await connection.call(
        connection.connector.save_actors, sdk.SaveActorsInput(actor_type, actors)
    )


def not_saved(
    connection: ConnectionHandle, failure: sdk.ActorFailure | None, unexplained: str
) -> CallFailed:
    """The failure of an actor a save left out; ``unexplained`` (permanent) when the connector
    gave no reason."""
    if failure is None:
        return CallFailed(f"{connection.settings.name}: {unexplained}", "permanent")
    return CallFailed(f"{connection.settings.name}: {failure.message}", failure.kind)


def fail(
    result: ChunkResult,
    records: Sequence[Record],
    connection: ConnectionHandle,
    exc: CallFailed,
    *,
    target_side: bool = False,
) -> None:
    """Record failed calls: transient ones become delayed retries while attempts remain.

    So do configuration errors: what is misconfigured is decided when the connection is checked
    at start; one raised mid-run (a table renamed away, a privilege revoked, a password changed)
    is retried like an outage of that connection and, if it persists past the retry budget,
    fails that connection's records only, with the reason.
    """
    connection_id = connection.id
    on = connection_id if result.target is None else result.target
    delayed = connection.settings.retry.delayed_attempts
    error = exc.message
    if exc.kind == "configuration":
        error = f"Configuration error on {error}"
    if exc.kind in ("transient", "configuration"):
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


SKIPPED_NOTE = "blank source value not written over a non-blank value: "


def skipped_note(fields: Sequence[str]) -> str:
    """The outcome's note for fields the NoBlankValues rule left alone (bounded)."""
    return (SKIPPED_NOTE + ", ".join(fields))[:500]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
