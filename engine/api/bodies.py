"""Agent request bodies: read within limits, decode any supported content type, bind arguments.

Every format ends up as one dict keyed by lower-cased property name, so binding is
case-insensitive (``erpConnectionId`` = ``ERPCONNECTIONID``) and unknown properties are ignored,
as .NET model binding does.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from engine.api.errors import ApiError
from engine.api.xmlbody import xml_arguments

JSON_TYPES = frozenset(
    {"application/json", "text/json", "application/json-patch+json", "application/merge-patch+json"}
)
XML_TYPES = frozenset({"application/xml", "text/xml"})
FORM_TYPE = "application/x-www-form-urlencoded"
SUPPORTED_TYPES = tuple(sorted(JSON_TYPES | XML_TYPES | {FORM_TYPE}))
MAX_JSON_DEPTH = 32
# Properties whose value is an array: XML children and repeated/indexed/comma form fields.
LIST_PROPERTIES = frozenset({"internalkeyids", "externalkeys"})
# List properties whose items are text: a form value is one item (never split at commas).
TEXT_LIST_PROPERTIES = frozenset({"externalkeys", "fieldkeys"})
# Every property an endpoint binds: one given twice (XML/form) is refused; other names are
# ignored however often they come, like any unknown property.
PROPERTIES = LIST_PROPERTIES | {
    "erpconnectionid",
    "erpactortype",
    "id",
    "name",
    "state",
    "correlationid",
    "messageid",
    "username",
    "password",
    "run",  # ChangeEngineStatus (engine/api/engine_control.py)
    "interval",  # ChangeEngineInterval
}
_FORM_NAME = re.compile(r"^([a-z_][a-z0-9_]*)(\[\d{0,9}\])?$")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """The ForceResyncBatchTask arguments."""

    erp_connection_id: int
    internal_key_ids: tuple[int, ...]
    no_blank_values: bool = False
    """ForceResync(External)NoBlankValues: blank source values never overwrite non-blank ones."""

    @property
    def source_connection_id(self) -> int:
        """0 for the CRM, else the ERP connection."""
        return max(self.erp_connection_id, 0)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """Read the body, refusing (413) before reading when the declared length is too large."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, f"Request body of {length} bytes exceeds the limit of {max_bytes}")
    body = await request.read()  # bounded by the app's client_max_size as well
    if len(body) > max_bytes:
        raise ApiError(413, f"Request body exceeds the limit of {max_bytes} bytes")
    return body


@dataclass(frozen=True, slots=True)
class BodyShape:
    """The properties an endpoint binds, for the formats that do not say it themselves (XML,
    form): ``lists`` of scalars, ``objects`` (arrays of flat objects) and ``maps`` (string
    dictionaries); ``properties`` are all of them plus the scalar ones."""

    properties: frozenset[str]
    lists: frozenset[str] = frozenset()
    objects: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()


async def read_arguments(
    request: web.Request, max_bytes: int, shape: BodyShape | None = None
) -> dict[str, Any]:
    """Decode the body into a dict of arguments keyed by lower-cased property name.

    ``shape``: the endpoint's properties when they are not the agent's usual ones (XML and form
    bodies bind by it; objects and maps bind from JSON and XML only)."""
    content_type = request.content_type.lower()
    supported = content_type in JSON_TYPES or content_type in XML_TYPES or content_type == FORM_TYPE
    if not supported and request.content_length != 0 and request.headers.get("Content-Type"):
        raise _unsupported(content_type)  # before reading: no need to buffer what we refuse
    charset = _charset(request)
    body = await read_body(request, max_bytes)
    if not body.strip():
        return {}
    if not supported:
        raise _unsupported(content_type)
    if content_type in JSON_TYPES and charset == "utf-8" and body.isascii():
        # The common case: nothing to decode (ASCII is UTF-8, and error positions are the
        # same in bytes as in characters).
        return _json_arguments(body)
    if content_type in XML_TYPES:
        if shape is not None:
            return xml_arguments(
                body, shape.lists, shape.properties, objects=shape.objects, maps=shape.maps
            )
        return xml_arguments(body, LIST_PROPERTIES, PROPERTIES)
    text = _decode(body, charset)
    if content_type == FORM_TYPE:
        if shape is None:
            return _form_arguments(text)
        # Flat form fields carry no objects or maps: those properties bind from JSON or XML.
        nested = shape.objects | shape.maps
        args = _form_arguments(text, shape.lists, shape.properties - nested)
        return {name: value for name, value in args.items() if name not in nested}
    return _json_arguments(text)


def _unsupported(content_type: str) -> ApiError:
    return ApiError(
        415, f"Content-Type {content_type!r} is not supported; use " + ", ".join(SUPPORTED_TYPES)
    )


def _charset(request: web.Request) -> str:
    charset = request.charset
    if not charset:  # the common case (none given): no lookup
        return "utf-8"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise ApiError(415, f"charset {charset[:40]!r} is not supported") from None


def _decode(body: bytes, charset: str) -> str:
    if charset == "utf-8" and body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        return body.decode(charset).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"Request body is not valid {charset} text (byte {exc.start})"
        ) from None


def _json_arguments(text: str | bytes) -> dict[str, Any]:
    """A JSON object's properties (``text``: decoded, or ASCII bytes)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, f"Request body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    # Nesting needs an opening bracket per level: a body with few brackets skips the walk.
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"Request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return {str(k).lower(): v for k, v in data.items()}


def _form_arguments(
    text: str,
    list_properties: frozenset[str] = LIST_PROPERTIES,
    properties: frozenset[str] = PROPERTIES,
) -> dict[str, Any]:
    """Form fields; ids repeated (``InternalKeyIds=1&InternalKeyIds=2``), indexed
    (``InternalKeyIds[0]=1``) or comma-separated (``InternalKeyIds=1,2``)."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError as exc:  # includes UnicodeDecodeError of %-escapes
        hint = ""
        if text.lstrip()[:1] in ("{", "["):  # e.g. curl -d '{...}' without -H Content-Type
            hint = (
                "; the body looks like JSON: send it with 'Content-Type: application/json' "
                "(curl -d sends application/x-www-form-urlencoded)"
            )
        raise ApiError(400, f"Request body is not valid form data: {exc}{hint}") from None
    args: dict[str, Any] = {}
    for raw_name, value in pairs:
        match = _FORM_NAME.match(raw_name.strip().lower())
        if match is None:
            continue  # not a property name we could bind: ignored like any unknown property
        name = match[1]
        if name in TEXT_LIST_PROPERTIES and name in list_properties:
            args.setdefault(name, []).append(value)
        elif name in list_properties:
            items = args.setdefault(name, [])
            items.extend(part.strip() for part in value.split(",") if part.strip())
        elif name in args:
            if name in properties:
                raise ApiError(400, f"{raw_name[:60]} is given more than once")
        else:
            args[name] = value
    return args


def _depth(value: Any) -> int:
    """Container nesting depth (a scalar is 0), counted level by level up to the limit + 1."""
    depth, level = 0, [value]
    while True:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers or depth > MAX_JSON_DEPTH:
            return depth
        depth += 1
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]


def int_argument(args: dict[str, Any], name: str, default: int | None = None) -> int:
    """An integer argument (JSON numbers or numeric strings, as .NET binding accepts)."""
    value = args.get(name.lower(), default)
    if value is None:
        if default is not None:
            return default
        raise ApiError(400, f"{name} is required")
    return as_int(value, name)


def str_argument(args: dict[str, Any], name: str, max_length: int = 255) -> str | None:
    """An optional string argument of bounded length."""
    value = args.get(name.lower())
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string")
    if len(value) > max_length:
        raise ApiError(400, f"{name} is longer than {max_length} characters")
    return value


def text_argument(args: dict[str, Any], name: str, max_length: int = 255) -> str | None:
    """An optional string argument compared with stored text: PostgreSQL's text holds no NUL
    character, so a value with one is refused (400) rather than failing in the query."""
    value = str_argument(args, name, max_length)
    if value is not None and "\x00" in value:
        raise ApiError(400, f"{name} must not contain NUL characters")
    return value


def as_int(value: Any, name: str) -> int:
    """Convert one value to an Int32, or answer 400 naming the property."""
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer, not a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and (parsed := integer_text(value)) is not None:
        result = parsed
    else:
        raise ApiError(400, f"{name} must be an integer")
    if not -(2**31) <= result < 2**31:
        raise ApiError(400, f"{name} is out of the Int32 range")
    return result


def integer_text(text: str) -> int | None:
    """The integer a text spells (``-12``, ``+5``, ``5.0`` as JSON Schema counts 5.0 an
    integer), at most 20 digits; None for anything else."""
    text = text.strip()
    whole, dot, zeros = text.partition(".")
    if dot and (zeros.strip("0") or not zeros):
        return None
    digits = whole[1:] if whole[:1] in ("+", "-") else whole
    if not (0 < len(digits) <= 20 and digits.isascii() and digits.isdigit()):
        return None
    return int(whole)


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
        if type(item) is int and 0 < item < 2**31:  # the common case, without building a name
            ids[item] = None
            continue
        value = as_int(item, f"InternalKeyIds[{index}]")
        if value <= 0:
            raise ApiError(400, f"InternalKeyIds[{index}] must be a positive id, got {value}")
        ids[value] = None
    return ResyncRequest(erp_connection_id, tuple(ids))
