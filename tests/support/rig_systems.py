"""The systems of the fault rig: CRM and ERP schemas served by the ``postgres`` connector (or the
flaky one), and the generated worker configuration (TOML)."""

from __future__ import annotations

import json
from typing import Any

FLAKY = "tests.support.flaky:FlakyConnector"

SCHEMAS = """
CREATE SCHEMA crm;
CREATE TABLE crm.contact (id integer PRIMARY KEY, name text, phone text, email text,
                          updated_at timestamptz NOT NULL DEFAULT now());
CREATE SCHEMA erp1;
CREATE TABLE erp1.customer (key text PRIMARY KEY, name text, phone text, email text,
                            last_modified timestamptz, erpsync_ref text UNIQUE);
CREATE SCHEMA erp2;
CREATE TABLE erp2.customer (id bigserial PRIMARY KEY, company text, tel text, mail text,
                            changed_at timestamptz, erpsync_ref text UNIQUE);
"""


def table(table: str, key: str, modified: str, fields: list[str], ref: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"table": table, "key_column": key, "modified_column": modified}
    if ref:
        spec["idempotency_column"] = "erpsync_ref"
    return {**spec, "fields": fields}


def toml(value: Any) -> str:
    """``value`` as inline TOML (enough for the generated configurations)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def erp_connection(
    cid: int,
    schema: str,
    key: str,
    modified: str,
    fields: list[str],
    options: dict[str, Any] | None,
) -> dict[str, Any]:
    """ERP ``cid`` on its schema: the ``postgres`` connector, or the flaky one when ``options``
    has a ``faults`` key (its settings); other ``options`` override connection keys."""
    options = dict(options or {})
    faults = options.pop("faults", None)
    crm_fields = ["name", "phone", "email"]
    conn: dict[str, Any] = {
        "id": cid,
        "name": f"ERP {cid}",
        "connector": "postgres" if faults is None else FLAKY,
        "settings": {
            "schema": schema,
            "actor_types": {"Customer": table("customer", key, modified, fields, True)},
            **(faults or {}),
        },
        "concurrency": 4,
        "batch_size": 25,
        "timeout": 10,
        "retry": {
            "attempts": 3,
            "base_delay": 0.05,
            "max_delay": 0.5,
            "delayed_base": 0.2,
            "delayed_max": 2.0,
            "delayed_attempts": 10,
        },
        "actor_types": [
            {
                "erp": "Customer",
                "crm": "Contact",
                "create_missing": cid == 2,
                "fields": {
                    f: {"crm": c, "direction": "to_erp"}
                    for f, c in zip(fields, crm_fields, strict=True)
                },
            }
        ],
    }
    conn.update(options)
    return conn
