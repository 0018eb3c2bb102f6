"""``erpsync config-reference``: docs/configuration.md, generated from the settings models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import click

FIELD_DOCS = {
    "server.host": "Address the HTTP server binds to.",
    "server.port": "HTTP port (0 = any free port).",
    "database.url": "PostgreSQL URL of erpsync's own database (a secret: may hold a password).",
    "database.pool_min_size": "Connections the pool keeps open.",
    "database.pool_max_size": "Most connections the pool opens.",
    "database.connect_timeout": "Seconds to wait for a database connection.",
    "broker.url": "RabbitMQ URL (a secret: holds the password).",
    "broker.connect_timeout": "Seconds to wait for the broker connection.",
    "logging.level": "Lowest level logged.",
    "logging.format": "console, json, or auto (console on a terminal, JSON otherwise).",
    "auth.users": "Users allowed to call the API (Basic auth, or a dashboard session).",
    "auth.users[].name": "User name.",
    "auth.users[].password_hash": "Salted hash from `erpsync hash-password` (never the password).",
    "crm": (
        "Connection 0, the CRM every value flows through: the keys of a `connections` entry "
        "with `id = 0` and no `actor_types`."
    ),
    "connections": "The ERP connections (ids 1 and up).",
    "connections[].id": "Connection id (1 and up; 0 is the CRM); ErpConnectionId in requests.",
    "connections[].name": "Display name.",
    "connections[].settings": (
        "The connector's own settings (validated by its config model; secrets may come from "
        "ERPSYNC_CONNECTION_<ID>__<KEY>)."
    ),
    "connections[].actor_types": "ERP actor types synced on this connection and their mappings.",
    "connections[].actor_types[].erp": "The ERP actor type (Customer, Supplier, Person, ...).",
    "connections[].actor_types[].crm": "The CRM actor type it mirrors (Contact, Person, ...).",
    "connections[].actor_types[].fields": "ERP field key -> mapping.",
    "connections[].actor_types[].fields.<erp field>.crm": "The CRM field key.",
    "connections[].actor_types[].fields.<erp field>.direction": (
        "to_erp (CRM -> ERP), to_crm (ERP -> CRM), both, or none."
    ),
}


@dataclass(frozen=True)
class SettingDoc:
    """One documented configuration key."""

    key: str
    type: str
    default: str
    env: str
    description: str


def _type_name(annotation: Any) -> str:
    import enum
    import types
    import typing

    from pydantic import SecretStr

    origin = typing.get_origin(annotation)
    if annotation is SecretStr:
        return "secret string"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "table"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any, key: str) -> str:
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    from engine.settings import redact_url

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        value = redact_url(value.get_secret_value())
    if hasattr(value, "value"):
        value = value.value
    return "" if value in ({}, []) else f"`{value}`"


def _cell(text: str) -> str:
    """A table cell: a bare ``|`` would end it, so escape any not escaped yet."""
    return re.sub(r"(?<!\\)\|", r"\\|", text)


def settings_reference() -> list[SettingDoc]:
    """Every key of the configuration, walked from the pydantic models."""
    import typing

    from pydantic import BaseModel

    from engine.settings import SECTIONS, SHORT_ENV, Settings

    short = {f"{section}.{key}": name for name, (section, key) in SHORT_ENV.items()}
    out: list[SettingDoc] = []

    def model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, ""
        item = args[0] if origin is list and args else args[1] if origin is dict else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, "[]" if origin is list else ".<erp field>"
        return None, ""

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            nested, suffix = model_of(field.annotation)
            description = field.description or FIELD_DOCS.get(key, "")
            if key == "crm":
                out.append(SettingDoc(key, "table", "required", "", description))
                continue  # the same keys as an entry of connections
            if nested is not None and prefix == "" and suffix == "":
                walk(nested, key)  # a section: [server], [database], ...
                continue
            section = key.split(".", 1)[0]
            env = ""
            if section in SECTIONS and key.count(".") == 1 and nested is None:
                env = f"ERPSYNC_{key.replace('.', '__').upper()}"
                if key in short:
                    env = f"{short[key]}, {env}"
            out.append(
                SettingDoc(
                    key, _type_name(field.annotation), _default(field, key), env, description
                )
            )
            if nested is not None:
                walk(nested, key + suffix)

    walk(Settings, "")
    return out


def configuration_markdown() -> str:
    """docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `erpsync config-reference > docs/configuration.md`; "
        "a test keeps it in sync. -->",
        "",
        "erpsync reads one TOML file (`--config`, `$ERPSYNC_CONFIG`, default "
        "`config/erpsync.toml`) and then environment variables, which win. Any scalar of the "
        "`server`, `database`, `broker`, `engine` and `logging` sections can be set as "
        "`ERPSYNC_<SECTION>__<KEY>`; the common ones also have the short names listed. A "
        "connection's connector setting (a password, say) can be set as "
        "`ERPSYNC_CONNECTION_<ID>__<KEY>` (`<ID>` 0 is the CRM), and a webhook's `url` or "
        "`secret` as `ERPSYNC_WEBHOOK_<NAME>__<KEY>`. `crm` takes the same keys as "
        "an entry of `connections`, with `id = 0` and no `actor_types`. Validate a file with "
        "`erpsync check-config`.",
        "",
        "The operator commands (`erpsync resync`, `tasks`, `synclog`) read only `[server]` "
        "from it, to find the API; they also take `--url`/`ERPSYNC_URL`, "
        "`--user`/`ERPSYNC_USER` and `ERPSYNC_PASSWORD`/`--password-stdin`.",
        "",
        "| key | type | default | environment | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for doc in settings_reference():
        env = ", ".join(f"`{e.strip()}`" for e in doc.env.split(",")) if doc.env else ""
        cells = (f"`{doc.key}`", doc.type, doc.default, env, doc.description)
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


@click.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown) generated from the settings models."""
    click.echo(configuration_markdown(), nl=False)
