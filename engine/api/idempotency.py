"""``Idempotency-Key`` for ForceResyncBatchTask (and the ForceResync* calls) and RetryFailed.

The same caller sending the same key with the same command gets the same ``X-Batch-Task-Id``
and nothing new starts, also when the retries race: the first request claims the key, the
others wait (up to a bound) for it to finish and then replay its task id. The same key with a
different command is refused with 422. Keys whose command could not be queued (503) are
released, so a retry runs. Keys are remembered for ``sessions.idempotency_ttl`` seconds.
The claim, the wait and the replay are :class:`engine.api.intake.TaskIntake`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from engine.api.bodies import ResyncRequest
from engine.api.errors import ApiError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def validate_key(key: str) -> str:
    """Keys are 1-255 visible ASCII characters (a V4 UUID is a good choice)."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def digest(canonical: Mapping[str, Any]) -> bytes:
    """The fingerprint of a request's canonical arguments (an endpoint's own property names:
    no two endpoints' requests share a set of names, so no two digests match)."""
    return hashlib.sha256(orjson.dumps(canonical)).digest()


def fingerprint(resync: ResyncRequest) -> bytes:
    """The command's identity: the same arguments in any body format or id order match."""
    canonical: dict[str, Any] = {
        "ErpConnectionId": resync.erp_connection_id,
        "InternalKeyIds": sorted(resync.internal_key_ids),
    }
    if resync.no_blank_values:  # absent otherwise: keys stored before the flag still match
        canonical["NoBlankValues"] = True
    return digest(canonical)
