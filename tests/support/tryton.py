"""Settings of the ``tryton`` connections the tests use."""

from __future__ import annotations

from typing import Any

from connectors.testing.tryton_server import TrytonServer

PARTY_FIELDS = ("name", "phone", "email", "street", "postal_code", "city")
PERSON_FIELDS = ("name", "email", "mobile")


def tryton_settings(
    server: TrytonServer, login: str = "erpsync", password: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The ``settings`` of a tryton connection offering Customer and Person parties."""
    return {
        "url": server.url,
        "database": server.database,
        "username": login,
        "password": server.passwords[login] if password is None else password,
        "actor_types": {
            "Customer": {"fields": list(PARTY_FIELDS)},
            "Person": {"fields": list(PERSON_FIELDS)},
        },
        **extra,
    }
