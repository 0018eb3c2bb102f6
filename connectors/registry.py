"""Find connector classes: the ``erpsync.connectors`` entry-point group or ``"module:Class"``.

Nothing is imported until a connector is asked for by name, so a broken third-party package
only affects the connections that use it. :func:`discover` imports every registered connector
and reports the broken ones (name, error) instead of raising.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeGuard

from pydantic import BaseModel

from connectors.contract import capabilities

ENTRY_POINT_GROUP = "erpsync.connectors"

log = logging.getLogger("erpsync.connectors")

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
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_REFERENCE = re.compile(rf"^{_DOTTED}:{_DOTTED}$")


class ConnectorLoadError(Exception):
    """A connector reference could not be resolved into a usable class."""


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """One registered connector: its name, where it comes from and, once loaded, what it does.

    ``capabilities`` and ``error`` are filled by :func:`discover`; ``error`` is set (and the
    class unusable) when the connector failed to load.
    """

    name: str
    reference: str
    distribution: str | None
    version: str | None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the connector loaded and passed validation."""
        return self.error is None


def _entry_points(name: str | None = None) -> list[EntryPoint]:
    eps = entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in eps if name is None or ep.name == name]


def _info(ep: EntryPoint) -> ConnectorInfo:
    dist = ep.dist
    return ConnectorInfo(
        name=ep.name,
        reference=ep.value,
        distribution=dist.metadata["Name"] if dist else None,
        version=dist.version if dist else None,
    )


def available() -> list[ConnectorInfo]:
    """List the connectors registered through entry points, sorted by name, importing none."""
    return sorted((_info(ep) for ep in _entry_points()), key=lambda info: info.name)


def discover() -> list[ConnectorInfo]:
    """Load every registered connector; broken ones come back with ``error`` set, never raise.

    Each failure is also logged as a warning on the ``erpsync.connectors`` logger.
    """
    found = []
    for info in available():
        try:
            cls = load(info.name)
        except ConnectorLoadError as exc:
            log.warning(
                "connector %r from %s failed to load: %s",
                info.name,
                info.distribution or "an unknown distribution",
                exc,
            )
            found.append(replace(info, error=str(exc)))
        else:
            found.append(replace(info, capabilities=frozenset(capabilities(cls))))
    return found


def load(reference: str) -> type[Any]:
    """Resolve a connector name (entry point) or ``"module:Class"`` reference to its class.

    Raise :class:`ConnectorLoadError` with a one-line reason when the reference is unknown,
    the import fails (whatever the package raises) or the object is not a connector class.
    """
    reference = reference.strip()
    if ":" in reference:
        if not _REFERENCE.match(reference):
            raise ConnectorLoadError(
                f"{reference!r} is not a valid reference; expected 'package.module:Class'"
            )
        obj = _import_object(reference)
    else:
        matches = _entry_points(reference)
        if not matches:
            names = ", ".join(info.name for info in available()) or "none"
            raise ConnectorLoadError(
                f"no connector named {reference!r} (installed: {names}); "
                "use an installed name or a 'module:Class' reference"
            )
        sources = sorted({_info(ep).distribution or "?" for ep in matches})
        if len(sources) > 1:
            raise ConnectorLoadError(
                f"connector name {reference!r} is registered by several distributions "
                f"({', '.join(sources)}); uninstall one or use a 'module:Class' reference"
            )
        try:
            obj = matches[0].load()
        except (Exception, SystemExit) as exc:  # a broken third-party package must not take us down
            raise ConnectorLoadError(
                f"connector {reference!r} ({matches[0].value}) failed to load: {_describe(exc)}"
            ) from exc
    if not validate(obj, reference):  # pragma: no cover - validate raises instead
        raise ConnectorLoadError(f"{reference!r} is not a connector")
    return obj


def validate(obj: object, reference: str) -> TypeGuard[type[Any]]:
    """Check that ``obj`` is a usable connector class; raise :class:`ConnectorLoadError` if not."""
    if not isinstance(obj, type):
        raise ConnectorLoadError(f"{reference!r} is not a class")
    missing = [name for name in _REQUIRED_METHODS if not callable(getattr(obj, name, None))]
    if missing:
        raise ConnectorLoadError(f"{reference!r} lacks connector methods: {', '.join(missing)}")
    sync = [
        name for name in _REQUIRED_METHODS if not inspect.iscoroutinefunction(getattr(obj, name))
    ]
    if sync:
        raise ConnectorLoadError(f"{reference!r}: these methods must be async: {', '.join(sync)}")
    if inspect.isabstract(obj):
        abstract = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise ConnectorLoadError(f"{reference!r} does not implement: {abstract}")
    model = getattr(obj, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConnectorLoadError(f"{reference!r} has no pydantic 'config_model'")
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _import_object(reference: str) -> object:
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        raise ConnectorLoadError(
            f"cannot import {module_name!r} for connector {reference!r}: {_describe(exc)}"
        ) from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConnectorLoadError(f"{reference!r}: {module_name} has no {attr!r}") from None
    return obj
