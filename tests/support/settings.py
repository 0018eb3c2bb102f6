"""Settings of the in-process tests: a memory CRM and two memory ERPs on the test services."""

from __future__ import annotations

from typing import Any

from engine.settings import Settings
from tests.support.services import AMQP_URL, database_url

PASSWORD_HASH_TJE0 = (
    "pbkdf2_sha256$600000$Eey+IAGano5qtxeGQimnXQ==$glqsW8c4s7tBrFoS+Mv838bJMOV66jz3b09Q+pdt868="
)


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
    crm = {
        "id": 0,
        "name": "CRM",
        "connector": "memory",
        "settings": {
            "store": stores[0],
            "actor_types": {
                "Contact": ["name", "phone", "email", "city"],
                "Person": ["firstname", "lastname", "email"],
            },
            **overrides.get(0, {}),
        },
    }
    erp1 = {
        "id": 1,
        "name": "ERP one",
        "connector": "memory",
        "settings": {
            "store": stores[1],
            "actor_types": {"Customer": ["name", "phone", "email", "city"]},
            **overrides.get(1, {}),
        },
        "actor_types": [
            {
                "erp": "Customer",
                "crm": "Contact",
                "fields": {
                    "name": {"crm": "name", "direction": "both"},
                    "phone": {"crm": "phone", "direction": "to_erp"},
                    "email": {"crm": "email", "direction": "to_crm"},
                    "city": {"crm": "city", "direction": "none"},
                },
            }
        ],
        **connection_options.get(1, {}),
    }
    erp2 = {
        "id": 2,
        "name": "ERP two",
        "connector": "memory",
        "settings": {
            "store": stores[2],
            "actor_types": {"Customer": ["company", "tel", "mail"]},
            **overrides.get(2, {}),
        },
        "actor_types": [
            {
                "erp": "Customer",
                "crm": "Contact",
                "fields": {
                    "company": {"crm": "name", "direction": "to_erp"},
                    "tel": {"crm": "phone", "direction": "both"},
                    "mail": {"crm": "email", "direction": "to_erp"},
                },
            }
        ],
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
