"""What the built-in HTTP connectors (``rest``, ``superoffice``, ``tryton``) share: URL settings,
nested settings from flat environment keys, which statuses are transient, bounded reads,
``Retry-After``, printable excerpts of what a server said, JSON typed by field type, and the
connection test's answer.

Shared by the connectors in this package; not part of the SDK (``import connectors as sdk``).
Not named ``http``: a script run from this folder would shadow the standard library's module.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel

import connectors as sdk

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses worth retrying (besides every other 5xx)."""
ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an error answer read for its message."""
MESSAGE_LIMIT = 200
"""Characters of a server's message kept in an error."""


def http_url(value: str, name: str, credentials: str) -> str:
    """``value`` if it is an http(s) URL with a host and no credentials (they go in
    ``credentials``), query or fragment; ValueError naming the setting ``name`` if not."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"put credentials in {credentials}, not in {name}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} takes no query or fragment")
    return value


def to_text(value: Any) -> sdk.FieldValue:
    """JSON value -> the engine's text form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def to_json(value: sdk.FieldValue, kind: sdk.FieldType) -> Any:
    """Engine text -> JSON typed by the field; ValueError when it does not parse."""
    if value is None:
        return None
    if kind is sdk.FieldType.Integer:
        return int(value) if value.strip() else None
    if kind is sdk.FieldType.Double:
        number = float(value) if value.strip() else None
        if number is not None and not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if kind is sdk.FieldType.Checkbox:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no", ""):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return value


def retry_after(header: str | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), clamped to ``[0, cap]``."""
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def clean(text: str) -> str:
    """A short, printable excerpt of text that came from the server."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    excerpt = " ".join(printable.split())
    if len(excerpt) > MESSAGE_LIMIT:
        excerpt = excerpt[:MESSAGE_LIMIT] + "…"
    return excerpt


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, but once it exceeds ``limit`` bytes (whatever Content-Length claims) only the
    chunks up to the one that crossed it: ``len(result) > limit`` says it was too long."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def nest_flat_keys(cls: type[BaseModel], data: Any) -> Any:
    """Accept ``auth__token = ...`` for ``auth.token``: that is how an environment variable such
    as ``ERPSYNC_CONNECTION_2__AUTH__TOKEN`` reaches nested settings (a ``before`` validator)."""
    if not isinstance(data, dict) or not any("__" in str(k) for k in data):
        return data
    nested: dict[str, Any] = {k: v for k, v in data.items() if "__" not in str(k)}
    for key, value in data.items():
        if "__" not in str(key):
            continue
        *path, last = str(key).split("__")
        target = nested
        for part in path:
            inner = target.get(part)
            target[part] = dict(inner) if isinstance(inner, dict) else {}
            target = target[part]
        target[last] = value
    return nested


def json_body(raw: bytes, what: str) -> Any:
    """A response body as JSON: None when empty, a permanent error when it is not JSON."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise sdk.PermanentError(f"{what}: the response is not JSON") from None


def changes_page(actors: list[sdk.Actor], cursor: str | None, limit: int) -> sdk.ChangedSinceResult:
    """A page of changed actors read with room for one more: the actors stamped with ``cursor``
    (the last stamp of the previous page) skipped, a next cursor when more follow."""
    if cursor:
        actors = [a for a in actors if a.last_modified != cursor]
    more = len(actors) > limit
    actors = actors[:limit]
    return sdk.ChangedSinceResult(
        actors=actors, next_cursor=actors[-1].last_modified if more and actors else None
    )


async def tested(probe: Awaitable[object], answers: str) -> sdk.TestConnectionResult:
    """The connection test's result: ``answers`` once ``probe`` ran, else the error's kind."""
    try:
        await probe
    except sdk.ConnectorError as exc:
        return sdk.TestConnectionResult(ok=False, message=f"{exc.kind}: {exc.message}")
    return sdk.TestConnectionResult(ok=True, message=answers)
