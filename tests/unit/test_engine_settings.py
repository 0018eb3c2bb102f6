"""Engine and per-connection limits in the configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.settings import ConnectionSettings, EngineSettings


def test_connection_limits_have_sensible_defaults() -> None:
    conn = ConnectionSettings(id=1, name="ERP", connector="memory")
    assert (conn.concurrency, conn.batch_size, conn.timeout, conn.rate_limit) == (8, 100, 30, None)
    assert conn.retry.attempts == 3 and conn.retry.delayed_attempts == 5
    assert conn.breaker.failure_threshold == 5 and conn.breaker.cooldown == 30


def test_limits_are_validated() -> None:
    with pytest.raises(ValidationError):
        ConnectionSettings.model_validate(
            {"id": 1, "name": "ERP", "connector": "memory", "rate_limit": 0}
        )
    with pytest.raises(ValidationError):
        ConnectionSettings.model_validate(
            {"id": 1, "name": "ERP", "connector": "memory", "retry": {"attempts": 0}}
        )


def test_stale_after_must_leave_room_for_missed_heartbeats() -> None:
    assert EngineSettings().stale_after == 120
    with pytest.raises(ValidationError, match="twice heartbeat_interval"):
        EngineSettings(heartbeat_interval=10, stale_after=15)
