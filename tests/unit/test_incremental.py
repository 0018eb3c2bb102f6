"""The incremental sync's watermark arithmetic (pure functions)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

import connectors as sdk
from engine.api.engine_control import format_interval, parse_interval
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping, ConflictRule
from engine.settings.model import SyncSettings
from engine.store.incremental import Watermark
from engine.sync import positions
from engine.sync.connections import ConnectionHandle
from engine.sync.incremental import IncrementalRun, fresh, next_watermark
from tests.support.settings import memory_settings

Changes = dict[str, tuple[sdk.FieldValue, sdk.FieldValue]]
"""What the settle functions take: field -> (the written side's value, the other side's)."""


def actor(key: str, stamp: str) -> sdk.Actor:
    return sdk.Actor("Customer", key, {}, stamp)


def test_the_watermark_is_the_last_position_and_the_keys_seen_there() -> None:
    page = [actor("a", "1"), actor("b", "2"), actor("c", "2")]
    assert next_watermark(Watermark(None), page) == Watermark("2", ("b", "c"))


def test_keys_at_the_same_position_accumulate_across_pages() -> None:
    mark = Watermark("2", ("b",))
    assert next_watermark(mark, [actor("c", "2")]) == Watermark("2", ("b", "c"))
    assert next_watermark(mark, [actor("d", "3")]) == Watermark("3", ("d",))
    assert next_watermark(mark, []) == mark


def test_actors_seen_at_the_watermark_are_not_handled_again() -> None:
    mark = Watermark("2", ("b",))
    page = [actor("b", "2"), actor("c", "2"), actor("b2", "3"), actor("b", "4")]
    assert [a.key for a in fresh(mark, page)] == ["c", "b2", "b"]


@pytest.mark.parametrize(
    ("position", "seconds", "before"),
    [
        ("2026-12-07T10:00:00.123456Z", 300, "2026-12-07T09:55:00.123456Z"),
        ("2026-12-07 10:00:00.5+00", 0.25, "2026-12-07 10:00:00.2+00"),  # postgres' text
        ("2026-12-07 10:00:00+01:00", 0.5, "2026-12-07 09:59:59+01:00"),  # rounded down
        ("2026-12-07T00:00:30.1234567", 60, "2026-12-06T23:59:30.1234567"),  # .NET's 7 digits
        ("1796637601000000", 1.5, "1796637599500000"),  # epoch microseconds
        ("1796637601000", 300, "1796637301000"),  # epoch milliseconds
        ("1796637601", 0.1, "1796637600"),  # epoch seconds
    ],
)
def test_a_position_that_reads_as_a_time_goes_back_in_its_own_shape(
    position: str, seconds: float, before: str
) -> None:
    assert positions.earlier(position, seconds) == before
    at, back = positions.instant(position), positions.instant(before)
    assert at is not None and back is not None and at - back >= seconds * 1e9


@pytest.mark.parametrize("position", ["42", "000123", "v1.2", "2026-12-07", "", None])
def test_a_counter_or_other_text_gets_no_overlap(position: str | None) -> None:
    assert positions.earlier(position, 300) is None
    assert positions.instant(position) is None


def test_instants_order_iso_positions_across_offsets_exactly() -> None:
    assert positions.instant("2026-12-07T10:00:00+01:00") == positions.instant(
        "2026-12-07 09:00:00Z"
    )
    a, b = positions.instant("1796637601000001"), positions.instant("1796637601000000")
    assert a is not None and b is not None and a - b == 1000


def us(seconds: float) -> str:
    return str(1_796_637_600_000_000 + int(seconds * 1e6))


def test_the_overlap_remembers_the_keys_handled_within_it_and_never_moves_back() -> None:
    mark = next_watermark(Watermark(None), [actor("a", us(0)), actor("b", us(200))], 300)
    assert mark == Watermark(us(200), ("b",), {"a": us(0), "b": us(200)}, 300)
    # The next run re-reads from 300 s before: a page ending behind the watermark keeps it.
    behind = next_watermark(mark, [actor("a", us(0))], 300)
    assert behind.since == us(200) and behind.seen_keys == ("b",)
    # Further on, keys older than the overlap before the watermark are forgotten.
    later = next_watermark(mark, [actor("c", us(400))], 300)
    assert later == Watermark(us(400), ("c",), {"b": us(200), "c": us(400)}, 300)
    assert next_watermark(mark, [actor("c", us(400))]) == Watermark(us(400), ("c",))


def test_an_empty_re_read_records_that_the_window_was_read() -> None:
    """Nothing within the overlap (its last actors deleted): the window is still covered, so
    a late commit there is queued by the next run, not taken for something handled."""
    unrecorded = Watermark(us(200), ("b",))
    assert next_watermark(unrecorded, [], 300) == Watermark(us(200), ("b",), {}, 300)
    recorded = Watermark(us(200), ("b",), {"b": us(200)}, 300)
    assert next_watermark(recorded, [], 300) is recorded
    grown = next_watermark(Watermark(us(200), ("b",), {"b": us(200)}, 60), [], 300)
    assert grown.window == 300


def test_a_re_read_drops_what_was_handled_and_keeps_a_late_commit() -> None:
    mark = Watermark(us(200), ("b",), {"a": us(0), "b": us(200)})
    reread = [actor("a", us(0)), actor("late", us(100)), actor("b", us(200)), actor("a2", us(201))]
    assert [a.key for a in fresh(mark, reread)] == ["late", "a2"]
    # The same key changed again (a new position) is a change.
    assert [a.key for a in fresh(mark, [actor("a", us(150))])] == ["a"]


def mapping(rule: str = "crm_wins") -> ActorTypeMapping:
    return ActorTypeMapping.model_validate(
        {
            "erp": "Customer",
            "crm": "Contact",
            "fields": {
                "name": {"crm": "name", "direction": "both", "conflict": rule},
                "city": {"crm": "city", "direction": "to_crm"},
            },
        }
    )


def test_to_crm_keeps_what_only_the_erp_changed_and_leaves_what_only_the_crm_changed() -> None:
    changed: Changes = {"name": ("crm-new", "old"), "city": ("x", "y")}
    keep, winners = mp.settle_to_crm(mapping(), changed, {"name": "old"}, None, None)
    assert keep == {"city": ("x", "y")} and winners == {}
    keep, winners = mp.settle_to_crm(
        mapping(), {"name": ("old", "erp")}, {"name": "old"}, None, None
    )
    assert keep == {"name": ("old", "erp")} and winners == {}


def test_a_conflict_goes_by_the_rule() -> None:
    both: Changes = {"name": ("crm", "erp")}
    base = {"name": "old"}
    assert mp.settle_to_crm(mapping("crm_wins"), both, base, None, None) == ({}, {"name": "crm"})
    assert mp.settle_to_crm(mapping("erp_wins"), both, base, None, None) == (both, {"name": "erp"})
    to_erp: Changes = {"name": ("erp", "crm")}
    assert mp.settle_to_erp(mapping("crm_wins"), to_erp, base, None, None) == (
        to_erp,
        {"name": "crm"},
    )
    assert mp.settle_to_erp(mapping("erp_wins"), to_erp, base, None, None) == ({}, {"name": "erp"})
    later_erp = ("2026-12-07T10:00:00+00:00", "2026-12-07T10:00:01+00:00")
    assert mp.settle_to_crm(mapping("most_recent"), both, base, *later_erp)[1] == {"name": "erp"}
    # ERP 1's stamps are epoch microseconds; a counter is no time: the CRM wins.
    assert mp.winner(ConflictRule.most_recent, "2026-12-07T10:00:00Z", "1796637601000000") == "erp"
    assert mp.winner(ConflictRule.most_recent, "5", "7") == "crm"


def test_without_a_baseline_everything_flows_as_in_a_force_resync() -> None:
    both: Changes = {"name": ("crm", "erp")}
    assert mp.settle_to_crm(mapping(), both, None, None, None) == (both, {})


def test_intervals_read_as_timespans_or_seconds_and_print_as_timespans() -> None:
    assert parse_interval("00:00:30") == 30
    assert parse_interval("1.00:00:00") == 86_400
    assert parse_interval("00:01:00.5") == 60.5
    assert parse_interval(" 45 ") == 45
    assert parse_interval("00:05") == 300  # TimeSpan.Parse: hh:mm
    assert parse_interval("PT30S") == 30  # xs:duration, SOAP's TimeSpan
    assert parse_interval("PT1H2M3.5S") == 3723.5
    assert parse_interval("P1D") == 86_400
    for bad in ("0", "00:00:00", "-5", "1.00:00:01", "00:60:00", "soon", "nan", "P", "PT"):
        with pytest.raises(ValueError, match=r"must|not a TimeSpan"):
            parse_interval(bad)
    assert format_interval(30) == "00:00:30"
    assert format_interval(0.5) == "00:00:00.500"
    assert format_interval(86_400) == "1.00:00:00"


class _Safe:
    def changed_since_horizon_safe(self, actor_type: str) -> bool:
        return actor_type == "Customer"


def test_the_overlap_is_the_connections_else_none_when_horizon_safe_else_the_default() -> None:
    settings = memory_settings("db", "p", {0: "s0", 1: "s1", 2: "s2"})
    settings = settings.model_copy(update={"sync": SyncSettings(overlap=120)})
    run = IncrementalRun(settings, cast(Any, None), cast(Any, None), cast(Any, None), "w")

    def handle(connector: object, overlap: float | None = None) -> ConnectionHandle:
        conn = settings.connections[0].model_copy(update={"sync_overlap": overlap})
        return cast(ConnectionHandle, SimpleNamespace(settings=conn, connector=connector))

    assert run.overlap(handle(_Safe()), "Customer") == 0
    assert run.overlap(handle(_Safe()), "Person") == 120
    assert run.overlap(handle(object()), "Customer") == 120
    assert run.overlap(handle(_Safe(), 30), "Customer") == 30
    assert run.overlap(handle(object(), 0), "Customer") == 0
