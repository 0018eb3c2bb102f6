"""What a chunk's commit stores besides its outcomes: push units, delayed retries, progress.

Pure functions of a :class:`~engine.sync.records.ChunkResult`; the chunk runner writes what they
return in the chunk's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from engine.store.tasks import RetryChunk
from engine.sync.backoff import full_jitter
from engine.sync.connections import Connections
from engine.sync.records import ChunkResult

log = structlog.get_logger(__name__)


def push_units(result: ChunkResult, targets: Sequence[int], grace: float) -> list[RetryChunk]:
    """Stage 2 of a stage-1 run: one push unit per target for the records it forwards.

    ``grace``: seconds after the commit before the sweeper publishes a unit whose publish was
    not confirmed.
    """
    if result.target is not None or not result.forward:
        return []
    return [RetryChunk(result.forward, t, result.attempt, grace, unit=True) for t in targets]


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
