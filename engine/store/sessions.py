"""Browser sessions and issued tickets, stored as SHA-256 digests of their secrets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.store import Executor

Kind = Literal["session", "ticket"]


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A live session or ticket."""

    user: str
    xsrf_hash: bytes | None


async def create(
    conn: Executor,
    *,
    kind: Kind,
    token_hash: bytes,
    user: str,
    ttl_seconds: float,
    xsrf_hash: bytes | None = None,
) -> None:
    """Store a new session or ticket that expires after ``ttl_seconds``."""
    await conn.execute(
        """
        INSERT INTO api_sessions (token_hash, kind, user_name, xsrf_hash, expires_at)
        VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
        """,
        token_hash,
        kind,
        user,
        xsrf_hash,
        ttl_seconds,
    )


async def find(conn: Executor, kind: Kind, token_hash: bytes) -> StoredSession | None:
    """The unexpired session or ticket with this digest."""
    row = await conn.fetchrow(
        """
        SELECT user_name, xsrf_hash FROM api_sessions
        WHERE token_hash = $1 AND kind = $2 AND expires_at > now()
        """,
        token_hash,
        kind,
    )
    return None if row is None else StoredSession(row["user_name"], row["xsrf_hash"])


async def delete(conn: Executor, kind: Kind, token_hash: bytes) -> bool:
    """Forget a session or ticket (logout); True when it existed."""
    deleted = await conn.fetchval(
        "DELETE FROM api_sessions WHERE token_hash = $1 AND kind = $2 RETURNING 1",
        token_hash,
        kind,
    )
    return deleted is not None


async def purge_expired(conn: Executor) -> int:
    """Delete expired sessions and tickets; returns how many."""
    result = await conn.execute("DELETE FROM api_sessions WHERE expires_at <= now()")
    return int(result.split()[-1])
