"""Read the configuration: a TOML file plus ``ERPSYNC_*`` environment overrides, validated once.

Environment variables win over the file. The common ones have short names
(``ERPSYNC_DATABASE_URL``, ``ERPSYNC_BROKER_URL``, ``ERPSYNC_SERVER_PORT``, ...); any scalar of the
``server``, ``database``, ``broker``, ``engine``, ``worker`` and ``logging`` sections can be set as
``ERPSYNC_<SECTION>__<KEY>``, and a connection setting (e.g. a password) as
``ERPSYNC_CONNECTION_<ID>__<KEY>`` (``<ID>`` 0 is the CRM), and a webhook's ``url`` or ``secret``
as ``ERPSYNC_WEBHOOK_<NAME>__<KEY>``. Each connection's connector is
resolved and its settings validated by the connector's config model, so a bad file stops
start-up naming the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connectors.contract import Capability, capabilities
from connectors.registry import ConnectorLoadError
from connectors.registry import load as load_connector
from engine.settings.model import Settings

DEFAULT_CONFIG = Path("config/erpsync.toml")


class ConfigError(Exception):
    """The configuration is invalid; the message names the file and the key."""


SHORT_ENV = {
    "ERPSYNC_DATABASE_URL": ("database", "url"),
    "ERPSYNC_BROKER_URL": ("broker", "url"),
    "ERPSYNC_BROKER_PREFIX": ("broker", "prefix"),
    "ERPSYNC_SERVER_HOST": ("server", "host"),
    "ERPSYNC_SERVER_PORT": ("server", "port"),
    "ERPSYNC_LOG_LEVEL": ("logging", "level"),
    "ERPSYNC_LOG_FORMAT": ("logging", "format"),
}
SECTIONS = (
    "server",
    "database",
    "broker",
    "engine",
    "worker",
    "logging",
    "notifications",
    "sync",
)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Overlay environment variables onto the raw TOML data; return key path -> variable name."""
    origin: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("ERPSYNC_"):
            continue
        if name in SHORT_ENV:
            section, key = SHORT_ENV[name]
            data.setdefault(section, {})[key] = value
            origin[f"{section}.{key}"] = name
            continue
        rest = name.removeprefix("ERPSYNC_")
        head, sep, key = rest.partition("__")
        if not sep or not key:
            continue
        head, key = head.lower(), key.lower()
        if head in SECTIONS:
            data.setdefault(head, {})[key] = value
            origin[f"{head}.{key}"] = name
        elif head.startswith("webhook_"):
            hook = _find_webhook(data, head.removeprefix("webhook_"))
            if hook is not None:
                hook[key] = value
                origin[f"notifications.webhook {hook.get('name')}.{key}"] = name
        elif head.startswith("connection_") and head.removeprefix("connection_").isdigit():
            conn_id = int(head.removeprefix("connection_"))
            target = _find_connection(data, conn_id)
            if target is not None:
                target.setdefault("settings", {})[key] = value
                origin[f"connection {conn_id}.settings.{key}"] = name
    return origin


def environment_section(section: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One section's ``ERPSYNC_*`` values without a file, for tools that need only that section
    (``erpsync dlq`` needs only the broker)."""
    data: dict[str, Any] = {}
    _apply_env(data, os.environ if env is None else env)
    section_data = data.get(section, {})
    return section_data if isinstance(section_data, dict) else {}


def _find_webhook(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The webhook named ``name`` (any case: environment names are upper case)."""
    section = data.get("notifications")
    hooks = section.get("webhooks", []) if isinstance(section, dict) else []
    for hook in hooks or []:
        if isinstance(hook, dict) and str(hook.get("name", "")).lower() == name:
            return hook
    return None


def _find_connection(data: dict[str, Any], conn_id: int) -> dict[str, Any] | None:
    if conn_id == 0:
        crm = data.get("crm")
        return crm if isinstance(crm, dict) else None
    for conn in data.get("connections", []) or []:
        if isinstance(conn, dict) and conn.get("id") == conn_id:
            return conn
    return None


def _loc(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def load_settings(
    path: Path | str = DEFAULT_CONFIG, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, overlay and validate the configuration; raise :class:`ConfigError` when invalid."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (use --config or ERPSYNC_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    origin = _apply_env(data, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, origin)) from None
    _check_connectors(path, settings)
    return settings


def _describe(path: Path, exc: ValidationError, origin: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        key = _loc(err["loc"])
        source = f" (from {origin[key]})" if key in origin else ""
        lines.append(f"{path}: {key}{source}: {err['msg']}")
    return "\n".join(lines)


def _check_connectors(path: Path, settings: Settings) -> None:
    """Resolve each connection's connector and validate its settings with the connector model."""
    for i, conn in enumerate(settings.all_connections):
        key = "crm" if i == 0 else f"connections[{i - 1}]"
        try:
            cls = load_connector(conn.connector)
        except ConnectorLoadError as exc:
            raise ConfigError(f"{path}: {key}.connector: {exc}") from None
        if conn.sync_overlap is not None and Capability.changed_since not in capabilities(cls):
            raise ConfigError(
                f"{path}: {key}.sync_overlap: connector {conn.connector!r} has no changed_since "
                "(the continuous sync does not read this connection)"
            )
        try:
            cls.config_model.model_validate(conn.settings)
        except ValidationError as exc:
            raise ConfigError(
                "\n".join(
                    f"{path}: {key}.settings.{_loc(err['loc'])}: {err['msg']}"
                    for err in exc.errors(include_url=False)
                )
            ) from None
