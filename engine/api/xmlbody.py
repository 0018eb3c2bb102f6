"""XML request bodies in the DataContract shape, parsed safely.

Parsing goes through defusedxml with DTDs forbidden, so billion-laughs, quadratic blowup and
external entities (XXE) are refused before any entity is expanded or anything is fetched.
Element names are matched without namespace and case-insensitively, so both
``<InternalKeyIds><int>1</int></InternalKeyIds>`` and the same with the Microsoft arrays
namespace bind.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # types and ParseError only; parsing is defusedxml
from collections.abc import Collection
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from engine.api.errors import ApiError

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _local(tag: Any) -> str:
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def _is_nil(element: ET.Element) -> bool:
    return element.get(f"{{{XSI}}}nil", "").strip().lower() == "true"


def xml_arguments(
    body: bytes,
    list_properties: Collection[str],
    properties: Collection[str],
    *,
    objects: Collection[str] = (),
    maps: Collection[str] = (),
) -> dict[str, Any]:
    """The root element's children as arguments; array properties from their child elements.

    ``objects``: arrays of flat objects (``<FieldValues><ErpSyncFieldValue><Value>…``), each a
    dict keyed by lower-cased name; ``maps``: string dictionaries, as DataContract writes them
    (``<a:KeyValueOfstringstring><a:Key>k</a:Key><a:Value>v</a:Value>``), as SOAP's
    StringDictionary does (``<StringKeyValuePair><Key>k</Key><Value>v</Value>``) or one element
    per key (``<k>v</k>``). Other names are ignored, like any unknown property; one of
    ``properties`` given twice is refused.
    """
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise ApiError(400, "XML document type declarations and entities are not allowed") from None
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise ApiError(400, f"Request body is not well-formed XML: {exc}"[:300]) from None
    args: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag).lower()
        if name not in properties:
            continue
        if name in list_properties and not _is_nil(child):
            # DataContract wraps items (<InternalKeyIds><int>1</int></InternalKeyIds>); an
            # OpenAPI/XML client repeats the element (<InternalKeyIds>1</InternalKeyIds> twice).
            items = args.get(name)
            if not isinstance(items, list):
                items = args[name] = []
            items.extend(_items(child, name))
            continue
        if name in objects and not _is_nil(child):
            # Wrapped items (<FieldValues><ErpSyncFieldValue>…) or the element repeated, one
            # per item (<FieldValues><Value>…</FieldValues><FieldValues>…), as for lists.
            found = args.get(name)
            if not isinstance(found, list):
                found = args[name] = []
            found.extend(_objects(child))
            continue
        if name in args:
            raise ApiError(400, f"{_local(child.tag)} is given more than once")
        if name in maps and not _is_nil(child):
            args[name] = _map(child)
        elif _is_nil(child):
            args[name] = None
        elif len(child):
            raise ApiError(400, f"{_local(child.tag)} must be a simple value, not nested elements")
        else:
            args[name] = (child.text or "").strip()
    return args


def _items(element: ET.Element, name: str) -> list[str | None]:
    """A list property's items: its child elements, or its own text when it has none."""
    if len(element):
        return [_scalar(item, name) for item in element if _local(item.tag)]
    text = (element.text or "").strip()
    return [text] if text else []


def _scalar(element: ET.Element, parent: str) -> str | None:
    if len(element):
        raise ApiError(400, f"{parent} items must be simple values, not nested elements")
    if _is_nil(element):
        return None
    return (element.text or "").strip()


def _objects(element: ET.Element) -> list[dict[str, Any]]:
    """An array of flat objects: each child element's children by lower-cased name; or, when
    the children are simple values, the element itself is one object."""
    children = [c for c in element if _local(c.tag)]
    if children and not any(len(c) for c in children):
        return [{_local(c.tag).lower(): _scalar(c, _local(element.tag)) for c in children}]
    items: list[dict[str, Any]] = []
    for item in element:
        if not _local(item.tag):
            continue
        fields: dict[str, Any] = {}
        for child in item:
            name = _local(child.tag)
            if not name:
                continue
            # An element with elements inside binds as an object, as in JSON: the endpoint
            # ignores an unknown property and refuses a known one that must be a value.
            fields[name.lower()] = {} if len(child) else _scalar(child, _local(item.tag))
        items.append(fields)
    return items


def _map(element: ET.Element) -> dict[str, Any]:
    """A string dictionary: DataContract's key/value pairs, or an element per key."""
    pairs: dict[str, Any] = {}
    for item in element:
        name = _local(item.tag)
        if not name:
            continue
        # DataContract's <a:KeyValueOfstringstring>; SOAP's StringDictionary <StringKeyValuePair>
        if name.lower().startswith("keyvalueof") or name.lower() == "stringkeyvaluepair":
            parts = {_local(c.tag).lower(): c for c in item if _local(c.tag)}
            if "key" not in parts:
                raise ApiError(400, f"{_local(element.tag)} pairs need a Key element")
            key = _scalar(parts["key"], _local(element.tag)) or ""
            value = parts.get("value")
            pairs[key] = None if value is None else _scalar(value, _local(element.tag))
        else:
            pairs[name] = _scalar(item, _local(element.tag))
    return pairs
