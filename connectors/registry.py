"""Find connector classes: the ``erpsync.connectors`` entry-point group or ``"module:Class"``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeGuard

from pydantic import BaseModel

ENTRY_POINT_GROUP = "erpsync.connectors"

_REQUIRED_METHODS = (
    "open",
    "aclose",
    "test_connection",
    "supported_actor_types",
    "fields",
    "get_actors",
    "save_actors",
    "create_actor",
)


class ConnectorLoadError(Exception):
    """A connector reference could not be resolved into a usable class."""


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """One discoverable connector: its name and where it comes from."""

    name: str
    reference: str
    distribution: str | None
    version: str | None


def available() -> list[ConnectorInfo]:
    """List the connectors registered through entry points (without importing them)."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found.append(
            ConnectorInfo(
                name=ep.name,
                reference=ep.value,
                distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
            )
        )
    return sorted(found, key=lambda info: info.name)


def load(reference: str) -> type[Any]:
    """Resolve a connector name (entry point) or ``"module:Class"`` reference to its class."""
    if ":" in reference:
        obj = _import_object(reference)
    else:
        matches: list[EntryPoint] = list(entry_points(group=ENTRY_POINT_GROUP, name=reference))
        if not matches:
            names = ", ".join(info.name for info in available()) or "none"
            raise ConnectorLoadError(
                f"no connector named {reference!r} (installed: {names}); "
                "use an installed name or a 'module:Class' reference"
            )
        try:
            obj = matches[0].load()
        except Exception as exc:  # a broken third-party package must not take us down
            raise ConnectorLoadError(
                f"connector {reference!r} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
    if not validate(obj, reference):  # pragma: no cover - validate raises instead
        raise ConnectorLoadError(f"{reference!r} is not a connector")
    return obj


def validate(obj: object, reference: str) -> TypeGuard[type[Any]]:
    """Check that ``obj`` looks like a connector class; raise ConnectorLoadError if not."""
    if not isinstance(obj, type):
        raise ConnectorLoadError(f"{reference!r} is not a class")
    missing = [name for name in _REQUIRED_METHODS if not callable(getattr(obj, name, None))]
    if missing:
        raise ConnectorLoadError(f"{reference!r} lacks connector methods: {', '.join(missing)}")
    model = getattr(obj, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConnectorLoadError(f"{reference!r} has no pydantic 'config_model'")
    return True


def _import_object(reference: str) -> object:
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConnectorLoadError(
            f"cannot import {module_name!r} for connector {reference!r}: {exc}"
        ) from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConnectorLoadError(f"{reference!r}: {module_name} has no {attr!r}") from exc
    return obj
