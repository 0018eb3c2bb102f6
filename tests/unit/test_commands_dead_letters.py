"""How ``erpsync dlq`` describes and replays dead letters (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from engine.messaging.dead_letters import _replayed, describe


def _message(headers: dict[str, Any], **kw: Any) -> Any:
    defaults = {
        "message_id": None,
        "body": b"{}",
        "routing_key": "resync",
        "content_type": "application/json",
        "content_encoding": None,
        "correlation_id": None,
        "timestamp": None,
    }
    return SimpleNamespace(headers=headers, **{**defaults, **kw})


def test_our_reason_header_wins() -> None:
    letter = describe(
        _message(
            {
                "x-erpsync-reason": "body is not valid JSON",
                "x-erpsync-original-routing-key": "resync",
                "x-erpsync-dead-lettered-at": "2026-11-29T06:00:00+00:00",
            },
            message_id="order-7",
        )
    )
    assert (letter.id, letter.reason, letter.routing_key, letter.time) == (
        "order-7",
        "body is not valid JSON",
        "resync",
        "2026-11-29T06:00:00+00:00",
    )


def test_a_delivery_limit_death_is_read_from_x_death() -> None:
    when = datetime(2026, 11, 29, 6, 30, tzinfo=UTC)
    letter = describe(
        _message(
            {
                "x-death": [
                    {
                        "count": 1,
                        "reason": "delivery_limit",
                        "queue": "erpsync.chunks",
                        "time": when,
                        "exchange": "erpsync",
                        "routing-keys": ["resync.chunk"],
                    }
                ]
            },
            routing_key="resync.chunk",
            body=b'{"TaskId": 1, "ChunkNo": 0}',
        )
    )
    assert letter.reason == "delivery_limit in erpsync.chunks (1x)"
    assert letter.routing_key == "resync.chunk"
    assert letter.time == "2026-11-29T06:30:00+00:00"
    assert letter.source_queue == "erpsync.chunks"
    assert letter.id.startswith("sha256:")


def test_a_replayed_message_starts_clean_but_counts_replays() -> None:
    original = _message(
        {
            "x-erpsync-reason": "bad",
            "x-death": [{"reason": "rejected"}],
            "x-first-death-reason": "rejected",
            "x-delivery-count": 3,
            "x-erpsync-replay-count": 1,
            "x-custom": "kept",
        },
        message_id="m1",
        correlation_id="c1",
    )
    message = _replayed(original)
    assert message.headers == {"x-custom": "kept", "x-erpsync-replay-count": 2}
    assert message.message_id == "m1"
    assert message.correlation_id == "c1"
    assert message.delivery_mode == 2
