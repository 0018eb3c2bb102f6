"""Agent request bodies: read within limits, decode, match property names case-insensitively."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from engine.api.errors import ApiError

JSON_TYPES = frozenset(
    {"application/json", "text/json", "application/json-patch+json", "application/merge-patch+json"}
)
MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """The ForceResyncBatchTask arguments."""

    erp_connection_id: int
    internal_key_ids: tuple[int, ...]


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """Read the body, refusing (413) before reading when the declared length is too large."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, f"Request body of {length} bytes exceeds the limit of {max_bytes}")
    body = await request.read()  # bounded by the app's client_max_size as well
    if len(body) > max_bytes:
        raise ApiError(413, f"Request body exceeds the limit of {max_bytes} bytes")
    return body


async def read_arguments(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """Decode the body into a dict of arguments keyed by lower-cased property name."""
    body = await read_body(request, max_bytes)
    content_type = request.content_type.lower()
    if not body.strip():
        return {}
    if content_type in JSON_TYPES:
        return _json_arguments(body)
    raise ApiError(
        415,
        f"Content-Type {content_type!r} is not supported; use " + ", ".join(sorted(JSON_TYPES)),
    )


def _json_arguments(body: bytes) -> dict[str, Any]:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, f"Request body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"Request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return {str(k).lower(): v for k, v in data.items()}


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
        if depth > MAX_JSON_DEPTH:
            break
    return depth - 1 if depth else 0


def int_argument(args: dict[str, Any], name: str, default: int | None = None) -> int:
    """An integer argument (JSON numbers or numeric strings, as .NET binding accepts)."""
    value = args.get(name.lower(), default)
    if value is None:
        raise ApiError(400, f"{name} is required")
    return _as_int(value, name)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer, not a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        result = int(value.strip())
    else:
        raise ApiError(400, f"{name} must be an integer")
    if not -(2**31) <= result < 2**31:
        raise ApiError(400, f"{name} is out of the Int32 range")
    return result


def resync_request(args: dict[str, Any], max_ids: int) -> ResyncRequest:
    """Validate ForceResyncBatchTask arguments: ids positive, deduplicated, at most ``max_ids``."""
    erp_connection_id = int_argument(args, "ErpConnectionId", default=0)
    raw = args.get("internalkeyids")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ApiError(400, "InternalKeyIds must be an array of integers")
    if len(raw) > max_ids:
        raise ApiError(413, f"InternalKeyIds has {len(raw)} ids; the maximum is {max_ids}")
    ids: dict[int, None] = {}
    for index, item in enumerate(raw):
        value = _as_int(item, f"InternalKeyIds[{index}]")
        if value <= 0:
            raise ApiError(400, f"InternalKeyIds[{index}] must be a positive id, got {value}")
        ids[value] = None
    return ResyncRequest(erp_connection_id, tuple(ids))
