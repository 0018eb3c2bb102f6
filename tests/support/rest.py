"""A ``rest`` connection to the fake ERP, shared by the REST tests."""

from __future__ import annotations

from typing import Any

from connectors.testing.fake_erp import FakeErp

TOKEN = "rest-contract-t0ken-s3cret"

COLLECTIONS = {"Customer": "customers", "Person": "persons"}


def rest_settings(erp: FakeErp, auth: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Settings of a ``rest`` connection to ``erp`` (Customer and Person, typed fields)."""
    return {
        "base_url": erp.url,
        "auth": auth if auth is not None else {"type": "bearer", "token": TOKEN},
        "actor_types": {
            actor_type: {
                "get_many": f"/api/{collection}?ids={{keys}}",
                "save": f"/api/{collection}/batch",
                "create": f"/api/{collection}",
                "changed_since": f"/api/{collection}/changes?since={{since}}&limit={{limit}}",
                "fields": {
                    name: {"type": str(erp.field_types(collection)[name])}
                    for name in erp.collections[collection].fields
                },
            }
            for actor_type, collection in COLLECTIONS.items()
        },
        **extra,
    }
