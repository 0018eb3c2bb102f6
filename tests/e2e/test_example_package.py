"""The example third-party package as a real resync target (its discovery and conformance:
``tests/contract/test_example_package.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.memory import MemoryStore
from connectors.testing.fake_erp import Auth, FakeErp
from engine.settings import Settings
from tests.support import services
from tests.support.rest import TOKEN as REST_TOKEN
from tests.support.rest import rest_settings
from tests.support.service import Service, link, sync_log
from tests.support.settings import PASSWORD_HASH_TJE0

LEDGER_TOKEN = "ledger-e2e-token"


@pytest.fixture
def crm() -> Iterator[MemoryStore]:
    name = services.unique("crm")
    yield MemoryStore.named(name)
    MemoryStore.drop(name)


@pytest.fixture
async def shop() -> AsyncIterator[FakeErp]:
    async with FakeErp(auth=Auth("bearer", REST_TOKEN)) as erp:
        yield erp


def settings_for(
    database: str, prefix: str, crm: MemoryStore, ledger: Path, shop: FakeErp
) -> Settings:
    fields = {"name": "to_erp", "email": "both", "phone": "to_erp"}
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5},
            "database": {"url": services.database_url(database), "pool_max_size": 5},
            "broker": {"url": services.AMQP_URL, "prefix": prefix},
            "auth": {"users": [{"name": "tje0", "password_hash": PASSWORD_HASH_TJE0}]},
            "crm": {
                "id": 0,
                "name": "CRM",
                "connector": "memory",
                "settings": {"store": crm.name, "actor_types": {"Contact": list(fields)}},
            },
            "connections": [
                {
                    "id": 1,
                    "name": "TinyLedger",
                    "connector": "tinyledger",  # found through the example's entry point
                    "settings": {"path": str(ledger), "api_token": LEDGER_TOKEN},
                    "actor_types": [
                        {
                            "erp": "Customer",
                            "crm": "Contact",
                            "create_missing": True,
                            "fields": {k: {"crm": k, "direction": d} for k, d in fields.items()},
                        }
                    ],
                },
                {
                    "id": 2,
                    "name": "Web shop",
                    "connector": "rest",
                    "settings": rest_settings(shop),
                    "actor_types": [
                        {
                            "erp": "Customer",
                            "crm": "Contact",
                            "fields": {k: {"crm": k, "direction": "to_erp"} for k in fields},
                        }
                    ],
                },
            ],
        }
    )


async def test_a_resync_writes_to_the_example_connector_and_the_rest_connector(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    crm: MemoryStore,
    shop: FakeErp,
    tmp_path: Path,
) -> None:
    from erpsync_tinyledger import Ledger

    ledger = Ledger(tmp_path / "ledger.db").create(api_token=LEDGER_TOKEN)
    crm.put("Contact", "1", {"name": "Acme", "email": "a@crm", "phone": "111"})
    crm.put("Contact", "2", {"name": "Beta", "email": "b@crm", "phone": "222"})
    crm.put("Contact", "3", {"name": "Gamma", "email": "g@crm", "phone": "333"})
    l1 = ledger.insert("Customer", {"name": "ACME (old)", "email": "a@crm", "phone": "111"})
    l2 = ledger.insert("Customer", {"name": "Beta", "email": "b@crm", "phone": "222"})
    s1 = shop.put("customers", {"name": "Acme", "email": "old@shop", "phone": "111"})
    s2 = shop.put("customers", {"name": "Beta", "email": "b@crm", "phone": "222"})
    s3 = shop.put("customers", {"name": "Gamma", "email": "g@crm", "phone": "000"})
    await link(db, 1, "Contact", "1", {1: ("Customer", l1), 2: ("Customer", s1)})
    await link(db, 2, "Contact", "2", {1: ("Customer", l2), 2: ("Customer", s2)})
    await link(db, 3, "Contact", "3", {2: ("Customer", s3)})  # not in the ledger yet

    settings = settings_for(database, broker_prefix, crm, ledger.path, shop)
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, [1, 2, 3]))

    assert info["State"] == "Succeeded", info
    assert ledger.fetch("Customer", l1) == {
        "name": "Acme",
        "email": "a@crm",
        "phone": "111",
        "balance": None,
    }
    assert ledger.fetch("Customer", l2) == {
        "name": "Beta",
        "email": "b@crm",
        "phone": "222",
        "balance": None,
    }
    created = await db.fetchval(
        "SELECT erp_key FROM external_keys WHERE internal_key_id = 3 AND connection_id = 1"
    )
    assert created is not None, "the engine did not link the actor it created in the ledger"
    assert ledger.fetch("Customer", created) == {
        "name": "Gamma",
        "email": "g@crm",
        "phone": "333",
        "balance": None,
    }
    assert (shop.get("customers", s1) or {})["email"] == "a@crm"
    assert (shop.get("customers", s3) or {})["phone"] == "333"
    log = await sync_log(db, info["Id"])
    assert (1, 1, "name", "name", False, "ACME (old)", "Acme") in log
    assert (2, 1, "email", "email", False, "old@shop", "a@crm") in log
    assert (2, 3, "phone", "phone", False, "000", "333") in log
    assert {row[:3] for row in log if row[1] == 3 and row[0] == 1} == {
        (1, 3, "name"),
        (1, 3, "email"),
        (1, 3, "phone"),
    }
    outcomes = await db.fetch(
        "SELECT internal_key_id, connection_id, status FROM record_outcomes WHERE task_id = $1",
        info["Id"],
    )
    statuses: dict[Any, Any] = {(r[0], r[1]): r[2] for r in outcomes}
    assert statuses[(3, 1)] == "created"
    assert statuses[(2, 1)] == "unchanged"
