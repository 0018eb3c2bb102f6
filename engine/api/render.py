"""Response rendering: JSON or XML by the ``Accept`` header, and ``$select`` projection."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # builds XML we render; never parses input
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

XSI = "http://www.w3.org/2001/XMLSchema-instance"
_JSON_OFFERS = ("application/json", "text/json")
_XML_OFFERS = ("application/xml", "text/xml")
_SELECT_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_SELECT_LENGTH = 2000


def _quality(accept: str, offer: str) -> float:
    """The q of the most specific media range in ``accept`` matching ``offer`` (0 if none)."""
    kind = offer.split("/", 1)[0]
    best_specificity, best_q = -1, 0.0
    for part in accept.split(",")[:50]:
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if media == offer:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if specificity > best_specificity:
            best_specificity, best_q = specificity, q
    return best_q


def prefers_xml(request: web.BaseRequest) -> bool:
    """True when the client's Accept header ranks an XML type above JSON."""
    accept = request.headers.get("Accept", "")
    if "xml" not in accept.lower():
        return False
    json_q = max(_quality(accept, offer) for offer in _JSON_OFFERS)
    xml_q = max(_quality(accept, offer) for offer in _XML_OFFERS)
    return xml_q > json_q


def select_paths(query: MultiMapping[str]) -> list[list[str]] | None:
    """Validate ``$select`` (comma-separated property paths, ``/`` between levels).

    Returns the lower-cased paths, or None when absent/empty. Raises ValueError when malformed.
    """
    values = query.getall("$select", [])
    text = ",".join(values)
    if len(text) > MAX_SELECT_LENGTH:
        raise ValueError(f"$select is longer than {MAX_SELECT_LENGTH} characters")
    if not text.strip():
        return None
    paths = []
    for item in text.split(","):
        item = item.strip()
        if not _SELECT_ITEM.match(item):
            raise ValueError(f"$select item {item[:60]!r} is not a property name or path")
        paths.append(item.lower().split("/"))
    return paths


def project(data: Any, paths: list[list[str]]) -> Any:
    """Null every property not named in ``paths`` (SuperOffice keeps the key, value null)."""
    if isinstance(data, list):
        return [project(item, paths) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        rests = [p[1:] for p in paths if p[0] == key.lower()]
        if not rests:
            out[key] = None
        elif any(not rest for rest in rests):
            out[key] = value
        else:
            out[key] = project(value, rests)
    return out


def to_xml(
    data: Any, root: str, item: str = "item", items: Mapping[str, str] | None = None
) -> bytes:
    """Render in the DataContract style: ``i:nil`` for nulls, arrays as repeated elements
    (``item`` for objects, or ``items[property]`` for the objects of a nested array property;
    ``int``/``string``/``boolean`` for scalars)."""
    element = ET.Element(root, {"xmlns:i": XSI})
    _fill(element, data, item, items or {})
    rendered: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return rendered


def _fill(element: ET.Element, value: Any, item: str, items: Mapping[str, str]) -> None:
    if value is None:
        element.set("i:nil", "true")
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif isinstance(value, dict):
        for key, child in value.items():
            name = str(key)
            _fill(ET.SubElement(element, name), child, items.get(name, item), items)
    elif isinstance(value, list | tuple):
        for child in value:
            _fill(ET.SubElement(element, _item_name(child, item)), child, item, items)
    else:
        element.text = str(value)


def _item_name(value: Any, item: str) -> str:
    if isinstance(value, dict):
        return item
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    return "string"


def respond(
    request: web.Request,
    data: Any,
    *,
    root: str,
    item: str = "item",
    items: Mapping[str, str] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """JSON (default) or XML when the client prefers it (``items``: see :func:`to_xml`)."""
    if prefers_xml(request):
        return web.Response(
            status=status,
            body=to_xml(data, root, item, items),
            content_type="application/xml",
            charset="utf-8",
            headers=headers,
        )
    return web.Response(
        status=status,
        body=orjson.dumps(data),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
