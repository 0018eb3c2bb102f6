"""Settings of the in-process tests: a memory CRM and two memory ERPs on the test services."""

from __future__ import annotations

from typing import Any

from engine.settings import Settings
from tests.support.services import AMQP_URL, database_url

PASSWORD_HASH_TJE0 = (
    "pbkdf2_sha256$600000$Eey+IAGano5qtxeGQimnXQ==$glqsW8c4s7tBrFoS+Mv838bJMOV66jz3b09Q+pdt868="
)

CRM_FIELDS = ["name", "phone", "email", "city"]


def customers(**fields: str) -> list[dict[str, Any]]:
    """One ``Customer`` <-> ``Contact`` mapping; each field is ``"<crm field> <direction>"``."""
    mapped = {}
    for erp_field, spec in fields.items():
        crm_field, direction = spec.split()
        mapped[erp_field] = {"crm": crm_field, "direction": direction}
    return [{"erp": "Customer", "crm": "Contact", "fields": mapped}]


def memory_settings(
    database: str,
    prefix: str,
    stores: dict[int, str],
    *,
    overrides: dict[int, dict[str, Any]] | None = None,
    connection_options: dict[int, dict[str, Any]] | None = None,
    chunk_size: int = 200,
) -> Settings:
    """Settings with a memory CRM (connection 0) and memory ERPs 1 and 2.

    CRM ``Contact`` fields: name, phone, email, city. ERP ``Customer`` fields: name, phone, email,
    city (ERP 1) and company, tel, mail (ERP 2).
    """
    overrides = overrides or {}
    connection_options = connection_options or {}

    def memory(cid: int, actor_types: dict[str, list[str]]) -> dict[str, Any]:
        settings = {"store": stores[cid], "actor_types": actor_types, **overrides.get(cid, {})}
        return {"id": cid, "connector": "memory", "settings": settings}

    crm = {
        **memory(0, {"Contact": CRM_FIELDS, "Person": ["firstname", "lastname", "email"]}),
        "name": "CRM",
    }
    erp1 = {
        **memory(1, {"Customer": ["name", "phone", "email", "city"]}),
        "name": "ERP one",
        "actor_types": customers(
            name="name both", phone="phone to_erp", email="email to_crm", city="city none"
        ),
        **connection_options.get(1, {}),
    }
    erp2 = {
        **memory(2, {"Customer": ["company", "tel", "mail"]}),
        "name": "ERP two",
        "actor_types": customers(company="name to_erp", tel="phone both", mail="email to_erp"),
        **connection_options.get(2, {}),
    }
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5},
            "database": {"url": database_url(database), "pool_min_size": 1, "pool_max_size": 5},
            "broker": {"url": AMQP_URL, "prefix": prefix, "publish_timeout": 5},
            "engine": {"chunk_size": chunk_size},
            "auth": {"users": [{"name": "tje0", "password_hash": PASSWORD_HASH_TJE0}]},
            "crm": crm,
            "connections": [erp1, erp2],
        }
    )
