"""What a chunk's commit stores besides its outcomes: push units, delayed retries, progress.

Pure functions of a :class:`~engine.sync.records.ChunkResult`; the chunk runner writes what they
return in the chunk's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from engine.store.tasks import RetryChunk
from engine.sync.backoff import full_jitter
from engine.sync.connections import Connections
from engine.sync.records import ChunkResult

log = structlog.get_logger(__name__)


Restriction = Mapping[int, frozenset[int]]
"""Per target connection, the only keys pushed there (a RetryFailed task's ``target_keys``)."""


def restriction(target_keys: Mapping[str, Sequence[int]] | None) -> Restriction | None:
    """The stored ``target_keys`` (JSON object keys are strings) by connection id."""
    if not target_keys:
        return None
    return {int(target): frozenset(keys) for target, keys in target_keys.items()}


def push_units(
    result: ChunkResult,
    targets: Sequence[int],
    grace: float,
    only: Restriction | None = None,
) -> list[RetryChunk]:
    """Stage 2 of a stage-1 run: one push unit per target for the records it forwards.

    ``grace``: seconds after the commit before the sweeper publishes a unit whose publish was
    not confirmed. ``only``: a record named under some target is pushed to those targets only
    (a record named nowhere goes everywhere); a target left with no record gets no unit.
    """
    if result.target is not None or not result.forward:
        return []
    if only is None:
        return [RetryChunk(result.forward, t, result.attempt, grace, unit=True) for t in targets]
    named = frozenset().union(*only.values())
    units = []
    for t in targets:
        mine = only.get(t, frozenset())
        keys = [k for k in result.forward if k not in named or k in mine]
        if keys:
            units.append(RetryChunk(keys, t, result.attempt, grace, unit=True))
    return units


def pushes_skipped(result: ChunkResult, targets: int, units: Sequence[RetryChunk]) -> int:
    """Pushes of forwarded records a restriction left out: done, for the progress."""
    if result.target is not None:
        return 0
    return targets * len(result.forward) - sum(len(u.internal_key_ids) for u in units)


def work_done(result: ChunkResult, chunk_keys: int, targets: int) -> int:
    """(record, connection) steps this run finished for good (retried ones count later).

    Stage 1: each record's source step, plus, for a record it does not forward (failed,
    not linked), the pushes to the ``targets`` that will never run. A unit: one push per record.
    """
    retried = result.retries.get(result.target)
    settled = chunk_keys - (len(retried.keys) if retried is not None else 0)
    if result.target is not None:
        return settled
    return settled + targets * (settled - len(result.forward))


def delayed_retries(result: ChunkResult, connections: Connections) -> list[RetryChunk]:
    """Delayed-retry chunks for the records that failed transiently, paced per connection."""
    chunks = []
    for target, pending in result.retries.items():
        conn = connections.get(pending.connection_id).settings
        attempt = result.attempt + 1
        # Retry-After (a connector's, or an open breaker's cool-down) is honoured, capped so
        # that a connector cannot park work forever; never cut below the breaker's cool-down,
        # or the retry would find the circuit still open and waste its attempt.
        delay = min(
            max(conn.retry.delayed_max, conn.breaker.cooldown),
            max(
                pending.retry_after,
                full_jitter(attempt, conn.retry.delayed_base, conn.retry.delayed_max),
            ),
        )
        chunks.append(RetryChunk(list(pending.keys), target, attempt, delay))
        log.info(
            "records scheduled for a delayed retry",
            target=target,
            records=len(pending.keys),
            attempt=attempt,
            delay=round(delay, 3),
        )
    return chunks
