"""The incremental sync's watermark arithmetic (pure functions)."""

from __future__ import annotations

import pytest

import connectors as sdk
from engine.api.engine_control import format_interval, parse_interval
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping, ConflictRule
from engine.store.incremental import Watermark
from engine.sync.incremental import fresh, next_watermark

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
    for bad in ("0", "00:00:00", "-5", "1.00:00:01", "00:60:00", "soon", "nan"):
        with pytest.raises(ValueError, match=r"must|not a TimeSpan"):
            parse_interval(bad)
    assert format_interval(30) == "00:00:30"
    assert format_interval(0.5) == "00:00:00.500"
    assert format_interval(86_400) == "1.00:00:00"
