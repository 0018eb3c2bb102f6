"""The incremental sync's watermark arithmetic (pure functions)."""

from __future__ import annotations

import connectors as sdk
from engine.store.incremental import Watermark
from engine.sync.incremental import fresh, next_watermark


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
