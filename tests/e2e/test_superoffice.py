"""SuperOffice as the CRM, end to end: the fake SuperOffice WebAPI is connection 0, memory
connectors are the ERPs, keys come from ``erpsync keys import`` of a SuperOffice export, and
resyncs run through real HTTP, RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from connectors.memory import MemoryStore
from connectors.testing.fake_erp import Fault
from connectors.testing.superoffice_fake import SYSTEM_USER_PATH, Credentials, SuperOfficeFake
from connectors.testing.superoffice_fake import seed as seed_fake
from engine.settings import Settings, load_settings
from engine.store import demo
from tests.support import services
from tests.support.cli import run_cli
from tests.support.service import AUTH, Service
from tests.support.settings import PASSWORD_HASH_TJE0
from tests.support.superoffice import (
    APP_TOKEN,
    PARTNER_PEM,
    SYSTEM_USER_TOKEN,
    online_credentials,
    system_user_settings,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "superoffice" / "keys"
CITIES = {11: "Oslo", 12: "Bergen", 13: "Tromsø"}
CONTACT_FIELDS = ["name", "contactPhone/formattedNumber", "email/emailAddress", "postAddress/city"]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SuperOfficeFake]:
    async with SuperOfficeFake(online_credentials()) as server:
        for n, city in CITIES.items():
            server.put(
                "Contact",
                {
                    "name": f"SO Company {n}",
                    "contactPhone/formattedNumber": f"+47 {n}",
                    "email/emailAddress": f"post@{n}.example",
                    "postAddress/city": city,
                    "category": 1,
                    "contactUdef/SuperOffice:1": f"K-{n}",
                },
                n,
            )
        yield server


def settings(
    database: str, prefix: str, fake: SuperOfficeFake, stores: dict[int, MemoryStore]
) -> Settings:
    crm = {
        "id": 0,
        "name": "SuperOffice",
        "connector": "superoffice",
        "settings": system_user_settings(fake, actor_types={"Contact": CONTACT_FIELDS}),
        "retry": {"attempts": 3, "base_delay": 0.05, "max_delay": 5},
        "concurrency": 1,  # one call at a time, so "the next call" is well defined
    }

    def erp(cid: int, fields: dict[str, tuple[str, str]]) -> dict[str, Any]:
        return {
            "id": cid,
            "name": f"ERP {cid}",
            "connector": "memory",
            "settings": {"store": stores[cid].name, "actor_types": {"Customer": list(fields)}},
            "actor_types": [
                {
                    "erp": "Customer",
                    "crm": "Contact",
                    "fields": {k: {"crm": c, "direction": d} for k, (c, d) in fields.items()},
                }
            ],
        }

    erp1 = erp(
        1,
        {
            "name": ("name", "both"),
            "phone": ("contactPhone/formattedNumber", "to_erp"),
            "email": ("email/emailAddress", "to_crm"),
            "city": ("postAddress/city", "to_crm"),
        },
    )
    erp2 = erp(
        2,
        {
            "company": ("name", "to_erp"),
            "tel": ("contactPhone/formattedNumber", "both"),
            "mail": ("email/emailAddress", "to_erp"),
        },
    )
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5},
            "database": {"url": services.database_url(database), "pool_min_size": 1},
            "broker": {"url": services.AMQP_URL, "prefix": prefix, "publish_timeout": 5},
            "auth": {"users": [{"name": "tje0", "password_hash": PASSWORD_HASH_TJE0}]},
            "crm": crm,
            "connections": [erp1, erp2],
        }
    )


async def import_sample(database: str) -> None:
    env = {
        **os.environ,
        "ERPSYNC_DATABASE_URL": services.database_url(database),
        "ERPSYNC_CONFIG": str(ROOT / "config" / "erpsync.toml"),
    }
    code, out, err = await run_cli("keys", "import", str(SAMPLE), env=env)
    assert code == 0, err
    assert out.splitlines()[-1].startswith("imported: internal keys: 4 new")


def erp_rows(stores: dict[int, MemoryStore]) -> None:
    erp1, erp2 = stores[1], stores[2]
    for n, city in CITIES.items():
        erp1.put(
            "Customer",
            f"E1-{n}",
            {"name": "old", "phone": "old", "email": f"post@{n}.example", "city": city},
        )
    erp2.put("Customer", "E2-11", {"company": "old", "tel": "old", "mail": "old"})
    erp2.put("Customer", "E2-12", {"company": "old", "tel": "old", "mail": "old"})


async def test_superoffice_crm_end_to_end(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    fake: SuperOfficeFake,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    await import_sample(database)
    erp_rows(stores)
    shown: list[str] = []
    async with Service(settings(database, broker_prefix, fake, stores)) as service:
        # 1. An imported InternalKeyId (not 1..n) resyncs from the CRM: the ERP rows take the
        #    fake SuperOffice record's values.
        info = await service.finished(await service.resync(0, [7003]))
        assert info["State"] == "Succeeded", info
        shown.append(json.dumps(info))
        assert stores[1].get("Customer", "E1-12") == {
            "name": "SO Company 12",
            "phone": "+47 12",
            "email": "post@12.example",
            "city": "Bergen",
        }
        assert stores[2].get("Customer", "E2-12") == {
            "company": "SO Company 12",
            "tel": "+47 12",
            "mail": "post@12.example",
        }
        assert fake.calls("PATCH") == []

        # 2. From ERP 1: one PATCH per changed record, carrying only the changed fields.
        stores[1].put(
            "Customer",
            "E1-11",
            {"name": "Renamed 11", "phone": "x", "email": "new@11.example", "city": "Oslo"},
        )
        stores[1].put(
            "Customer",
            "E1-13",
            {"name": "SO Company 13", "phone": "x", "email": "post@13.example", "city": "Bodø"},
        )
        info = await service.finished(await service.resync(1, [7001, 7003, 7010]))
        assert info["State"] == "Succeeded", info
        shown.append(json.dumps(info))
        patches = {r.path: r.body for r in fake.calls("PATCH")}
        assert patches == {
            "/api/v1/Contact/11": [
                {"op": "replace", "path": "/name", "value": "Renamed 11"},
                {"op": "replace", "path": "/Emails/0/Value", "value": "new@11.example"},
            ],
            "/api/v1/Contact/13": [
                {"op": "replace", "path": "/PostalAddress/City", "value": "Bodø"},
            ],
        }
        record = fake.get("Contact", 11)
        assert record is not None and record["contactUdef/SuperOffice:1"] == "K-11"

        # 3. An expired ticket: one renewal, one retry, success.
        logins = len([r for r in fake.requests if r.path == SYSTEM_USER_PATH])
        tickets = set(fake.credentials.tickets)
        fake.expire_tickets()
        mark = len(fake.requests)
        info = await service.finished(await service.resync(0, [7001]))
        assert info["State"] == "Succeeded", info
        after = [(r.method, r.path, r.status) for r in fake.requests[mark:]]
        read = ("GET", "/api/v1/Contact")
        assert after == [(*read, 401), ("POST", SYSTEM_USER_PATH, 200), (*read, 200), (*read, 200)]
        assert len([r for r in fake.requests if r.path == SYSTEM_USER_PATH]) == logins + 1
        tickets |= fake.credentials.tickets

        # 4. 429 with Retry-After: 2: the next call comes at least 2 s later; the task succeeds.
        fake.add_fault(Fault(status=429, retry_after="2", method="GET"))
        mark = len(fake.requests)
        info = await service.finished(await service.resync(0, [7010]), timeout=60)
        assert info["State"] == "Succeeded", info
        calls = [r for r in fake.requests[mark:] if r.path.startswith("/api/")]
        assert [r.status for r in calls] == [429, 200, 200]  # one read per target
        assert calls[1].at - calls[0].at >= 2.0

        # 5. SuperOffice's error message reaches the outcome, a secret echoed in it does not.
        ticket = next(iter(fake.credentials.tickets))
        body = {
            "Error": True,
            "ErrorType": "SoValidationException",
            "ErrorMessage": f"Name too long (ticket {ticket}, app {APP_TOKEN})",
            "ErrorSource": "SuperOffice.Services",
        }
        fake.add_fault(Fault(status=400, body=json.dumps(body).encode(), method="PATCH"))
        stores[1].put(
            "Customer",
            "E1-11",
            {"name": "Too long", "phone": "x", "email": "new@11.example", "city": "Oslo"},
        )
        task_id = await service.resync(1, [7001])
        info = await service.finished(task_id)
        shown.append(json.dumps(info))
        errors = await db.fetch("SELECT error FROM record_outcomes WHERE task_id = $1", task_id)
        messages = [r["error"] for r in errors if r["error"]]
        assert any("Name too long" in m and "***" in m for m in messages), messages
        shown += messages
        metrics = await service.client.get("/metrics", headers=AUTH)
        shown.append(await metrics.text())
        bad = await service.client.post(
            "/api/v1/Agents/ErpSync/ForceResyncBatchTask", data=b"{", headers=AUTH
        )
        shown.append(await bad.text())
    rows = await db.fetch("SELECT * FROM record_outcomes")
    rows += await db.fetch("SELECT * FROM sync_log")
    rows += await db.fetch("SELECT * FROM batch_tasks")
    shown += [repr(dict(r)) for r in rows]
    captured = capfd.readouterr()
    shown += [captured.out, captured.err, caplog.text]
    shown += [repr(r.args) + repr(r.__dict__) for r in caplog.records]
    text = "\n".join(shown)
    secrets = [*tickets, *fake.credentials.tickets, APP_TOKEN, SYSTEM_USER_TOKEN]
    secrets.append(PARTNER_PEM.splitlines()[1])
    for secret in secrets:
        assert secret not in text


async def test_the_superoffice_demo_configuration(
    database: str, db: asyncpg.Connection, broker_prefix: str
) -> None:
    """config/superoffice.toml with the fake as started by the documented command."""
    async with SuperOfficeFake(Credentials(users={"erpsync": "erpsync-demo"})) as so:
        seed_fake(so, 1000, 2000)
        config = load_settings(
            ROOT / "config" / "superoffice.toml",
            env={
                "ERPSYNC_DATABASE_URL": services.database_url(database),
                "ERPSYNC_BROKER_URL": services.AMQP_URL,
                "ERPSYNC_BROKER_PREFIX": broker_prefix,
                "ERPSYNC_CONNECTION_0__BASE_URL": so.url,
            },
        )
        await demo.seed(db)
        async with Service(config) as service:
            info = await service.finished(await service.resync(0, [1, 2, 1001]))
            assert info["State"] == "Succeeded", info
            customer = await db.fetchrow(
                "SELECT name, vat_no, phone, email FROM demo_erp1.customer WHERE key = 'C00002'"
            )
            assert tuple(customer or ()) == (
                "Company 2",
                "NO900002",
                "+47 2200 0002",
                "post@company2.example",
            )
            company = await db.fetchrow(
                "SELECT company_name, org_no, mail FROM demo_erp2.customer WHERE id = 10002"
            )
            assert tuple(company or ()) == ("Company 2", "NO900002", "post@company2.example")
            assert so.calls("PATCH") == []
            city = await db.fetchval("SELECT city FROM demo_erp1.customer WHERE key = 'C00002'")
            info = await service.finished(await service.resync(1, [2]))
            assert info["State"] == "Succeeded", info
        assert [(r.path, r.body) for r in so.calls("PATCH")] == [
            ("/api/v1/Contact/2", [{"op": "replace", "path": "/PostalAddress/City", "value": city}])
        ]
