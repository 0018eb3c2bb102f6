"""Two-stage chunks without services: units per target, completion and progress counting."""

from __future__ import annotations

from typing import Any

from engine.messaging.broker import Publisher
from engine.messaging.topology import CHUNK_ROUTING_KEY, Names, push_routing_key
from engine.settings import BrokerSettings, Settings
from engine.store import tasks
from engine.store.results import Outcome
from engine.sync.bookkeeping import push_units, work_done
from engine.sync.records import ChunkResult, PendingRetry


def _targets(source: int) -> list[int]:
    """The push targets of a task from ``source`` with ERPs 1, 2 and 3."""
    return [i for i in (1, 2, 3) if i != source]


def _units(source: int, result: ChunkResult) -> Any:
    return push_units(result, _targets(source), grace=7.0)


def _work(source: int, chunk_keys: int, result: ChunkResult) -> int:
    return work_done(result, chunk_keys, len(_targets(source)))


def test_a_stage_one_run_makes_one_unit_per_target_of_the_forwarded_records() -> None:
    result = ChunkResult(attempt=0, target=None, records=4, forward=[1, 2, 4])
    units = _units(source=2, result=result)
    assert [(u.target, list(u.internal_key_ids), u.attempt, u.unit) for u in units] == [
        (1, [1, 2, 4], 0, True),
        (3, [1, 2, 4], 0, True),
    ]
    assert {u.delay for u in units} == {7.0}  # published now; the sweeper only after the grace


def test_a_whole_record_retry_makes_units_with_its_attempt() -> None:
    result = ChunkResult(attempt=2, target=None, records=1, forward=[9])
    assert [(u.target, u.attempt) for u in _units(0, result)] == [(1, 2), (2, 2), (3, 2)]


def test_no_units_from_a_unit_or_when_nothing_is_forwarded() -> None:
    assert _units(0, ChunkResult(target=None, records=3, forward=[])) == []
    assert _units(0, ChunkResult(target=1, forward=[1, 2])) == []


def test_work_counts_each_record_and_connection_once() -> None:
    # Stage 1 from the CRM (3 targets): 5 records, 3 forwarded, 1 failed for good, 1 retried.
    stage1 = ChunkResult(target=None, records=5, forward=[1, 2, 3])
    stage1.outcomes.append(Outcome(4, 0, "failed", error="CRM record not found"))
    stage1.retries[None] = PendingRetry(0, {5: None})
    # the retried record counts later; the failed one counts its source step and its 3 pushes
    assert _work(0, 5, stage1) == 4 + 3 * 1
    # A unit of 3 records on target 2, one to retry later: 2 pushes settled.
    unit = ChunkResult(target=2, retries={2: PendingRetry(2, {3: None})})
    assert _work(0, 3, unit) == 2
    # The retry settles the last one: over the task 5 x (1 + 3) = 20 once everything is done.
    assert _work(0, 1, ChunkResult(attempt=1, target=2)) == 1


def test_records_are_counted_by_stage_one_only() -> None:
    assert ChunkResult(target=None, records=5).counts().records == 5
    assert ChunkResult(target=1).counts().records == 0


def _task(**values: Any) -> dict[str, Any]:
    row = {"state": "Started", "planned": True, "total_chunks": 2, "retry_chunks": 0}
    return {**row, **values}


def test_a_task_is_complete_only_when_every_chunk_and_unit_is_done() -> None:
    # 2 planned chunks, 2 targets: 4 units counted in retry_chunks once stage 1 committed them
    assert not tasks.is_complete(_task(done_chunks=2, retry_chunks=4))
    assert not tasks.is_complete(_task(done_chunks=5, retry_chunks=4))
    assert tasks.is_complete(_task(done_chunks=6, retry_chunks=4))
    # a unit that schedules a delayed retry adds to retry_chunks in the same commit
    assert not tasks.is_complete(_task(done_chunks=6, retry_chunks=5))
    assert not tasks.is_complete(_task(done_chunks=6, retry_chunks=4, planned=False))


def test_units_and_retries_of_a_target_go_to_its_push_queue() -> None:
    publisher = Publisher(None, BrokerSettings(prefix="p"), [1, 2])  # type: ignore[arg-type]
    assert publisher.chunk_routing_key(None) == CHUNK_ROUTING_KEY
    assert publisher.chunk_routing_key(1) == push_routing_key(1) == "resync.push.1"
    assert publisher.chunk_routing_key(2) == "resync.push.2"
    # a connection without a push queue (removed from the configuration): the chunk queue
    assert publisher.chunk_routing_key(7) == CHUNK_ROUTING_KEY
    assert Names("p").push(2) == "p.push.2"


def _settings(**connection: Any) -> Settings:
    erp = {"id": 1, "name": "ERP", "connector": "memory", **connection}
    return Settings.model_validate(
        {
            "engine": {"chunk_size": 100},
            "crm": {"id": 0, "name": "CRM", "connector": "memory"},
            "connections": [erp],
        }
    )


def test_push_prefetch_keeps_the_targets_concurrency_busy() -> None:
    # 100 records per unit in batches of 10: 10 concurrent calls per unit
    settings = _settings(concurrency=10, batch_size=10)
    assert settings.push_prefetch(settings.connections[0]) == 2
    settings = _settings(concurrency=50, batch_size=10)
    assert settings.push_prefetch(settings.connections[0]) == 10
    settings = _settings(concurrency=8, batch_size=100)  # one call per unit
    assert settings.push_prefetch(settings.connections[0]) == 16
    settings = _settings(concurrency=1, batch_size=1)
    assert settings.push_prefetch(settings.connections[0]) == 2
    settings = _settings(concurrency=50, push_prefetch=3)
    assert settings.push_prefetch(settings.connections[0]) == 3
