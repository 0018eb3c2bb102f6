"""Force resync end to end with a real Tryton as an ERP: CRM (PostgreSQL, demo schema) <->
Tryton parties, verified through Tryton's own JSON-RPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from connectors.memory import MemoryStore
from connectors.testing.tryton_server import TrytonServer, create_parties, read_parties
from engine.settings import FieldMapping, Settings
from tests.support import services
from tests.support.service import Service, link, sync_log
from tests.support.settings import memory_settings
from tests.support.tryton import tryton_settings

CRM_SCHEMA = """
CREATE SCHEMA demo_crm;
CREATE TABLE demo_crm.contact (
    id bigint PRIMARY KEY, name text NOT NULL, orgnr text, phone text, email text, city text,
    updated_at timestamptz NOT NULL DEFAULT now());
"""
CONTACTS = [
    (1, "Acme AS", "NO1", "+47 111", "post@acme.example", "Oslo"),
    (2, "Beta AB", "NO2", "+47 222", "post@beta.example", "Bergen"),
    (3, "Gamma AS", "NO3", "+47 333", "post@gamma.example", "Tromsø"),
]
CRM_SETTINGS = {
    "schema": "demo_crm",
    "actor_types": {
        "Contact": {
            "table": "contact",
            "key_column": "id",
            "modified_column": "updated_at",
            "fields": ["name", "orgnr", "phone", "email", "city"],
        }
    },
}
TRYTON_FIELDS = {
    name: FieldMapping(crm=crm, direction=direction)
    for name, crm, direction in [
        ("name", "name", "both"),
        ("phone", "phone", "to_erp"),
        ("email", "email", "to_erp"),
        ("city", "city", "to_crm"),
    ]
}


@dataclass
class Env:
    """What every test here uses: the service's database, the broker prefix, the memory ERP
    (connection 2) and the Tryton server (connection 1)."""

    database: str
    db: asyncpg.Connection
    prefix: str
    store: MemoryStore
    server: TrytonServer

    def settings(self, tryton: dict[str, Any] | None = None, **memory: Any) -> Settings:
        """CRM = demo_crm in the test database; 1 = Tryton; 2 = support's memory "ERP two"
        (company <- name, tel <-> phone, mail <- email). ``memory``: memory_settings options."""
        stores = {0: self.store.name, 1: self.store.name, 2: self.store.name}
        base = memory_settings(self.database, self.prefix, stores, **memory)
        crm = base.crm.model_copy(
            update={"connector": "postgres", "settings": CRM_SETTINGS, "name": "CRM"}
        )
        erp = base.connections[0]
        connection = erp.model_copy(
            update={
                "name": "Tryton",
                "connector": "tryton",
                "settings": tryton_settings(self.server, **(tryton or {})),
                "retry": erp.retry.model_copy(update={"delayed_attempts": 0}),
                "actor_types": [
                    erp.actor_types[0].model_copy(
                        update={"create_missing": True, "fields": TRYTON_FIELDS}
                    )
                ],
            }
        )
        return base.model_copy(
            update={"crm": crm, "connections": [connection, base.connections[1]]}
        )


@pytest.fixture
def env(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    tryton_server: TrytonServer,
) -> Env:
    return Env(database, db, broker_prefix, stores[2], tryton_server)


async def seed(env: Env) -> tuple[str, str]:
    """CRM contacts 1-3; Tryton parties for 1 (differing) and 2 (equal); 3 not in Tryton;
    all three on the memory ERP."""
    await env.db.execute(CRM_SCHEMA)
    await env.db.executemany(
        "INSERT INTO demo_crm.contact (id, name, orgnr, phone, email, city) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        CONTACTS,
    )
    async with env.server.client() as admin:
        p1, p2 = await create_parties(
            admin,
            [
                {"name": "Acme (old)", "phone": "+47 999", "email": None, "city": "Drammen"},
                {
                    "name": "Beta AB",
                    "phone": "+47 222",
                    "email": "post@beta.example",
                    "city": "Bergen",
                },
            ],
        )
    for i in (1, 2, 3):
        env.store.put("Customer", f"M{i}", {"company": "?", "tel": "?", "mail": "?"})
        tryton = {1: ("Customer", p1), 2: ("Customer", p2)}.get(i)
        links = {1: tryton, 2: ("Customer", f"M{i}")} if tryton else {2: ("Customer", f"M{i}")}
        await link(env.db, i, "Contact", str(i), links)
    return p1, p2


async def write_dates(server: TrytonServer) -> dict[int, Any]:
    async with server.client() as admin:
        rows = await admin.call(
            "model.party.party.search_read", [], 0, None, None, ["write_date", "create_date"]
        )
    return {r["id"]: (r["write_date"], r["create_date"]) for r in rows}


async def test_resync_from_the_crm_updates_and_creates_parties_once(env: Env) -> None:
    p1, p2 = await seed(env)
    async with Service(env.settings()) as service:
        first = await service.finished(await service.resync(0, [1, 2, 3]))
        created = await env.db.fetchval(
            "SELECT erp_key FROM external_keys WHERE internal_key_id = 3 AND connection_id = 1"
        )
        before = await write_dates(env.server)
        env.server.expire_sessions("erpsync")  # the second run renews the session
        second = await service.finished(await service.resync(0, [1, 2, 3]))
        after = await write_dates(env.server)

    assert first["State"] == "Succeeded", first
    assert first["Statistics"]["Created"] == 1
    async with env.server.client() as admin:
        parties = await read_parties(admin, [p1, p2, created])
    # name, phone and email flow to Tryton; city is to_crm only
    assert parties[p1] == {
        "name": "Acme AS",
        "phone": "+47 111",
        "email": "post@acme.example",
        "street": None,
        "postal_code": None,
        "city": "Drammen",
    }
    assert parties[p2]["name"] == "Beta AB"
    assert parties[created] == {
        "name": "Gamma AS",
        "phone": "+47 333",
        "email": "post@gamma.example",
        "street": None,
        "postal_code": None,
        "city": None,
    }
    assert [r for r in await sync_log(env.db, first["Id"]) if r[0] == 1] == sorted(
        [
            (1, 1, "email", "email", False, None, "post@acme.example"),
            (1, 1, "name", "name", False, "Acme (old)", "Acme AS"),
            (1, 1, "phone", "phone", False, "+47 999", "+47 111"),
            (1, 3, "email", "email", False, None, "post@gamma.example"),
            (1, 3, "name", "name", False, None, "Gamma AS"),
            (1, 3, "phone", "phone", False, None, "+47 333"),
        ]
    )
    # The second run: nothing to write, nothing written, nothing logged.
    assert second["State"] == "Succeeded", second
    assert second["Statistics"]["FieldsChanged"] == 0
    assert second["Statistics"]["Created"] == 0
    assert await sync_log(env.db, second["Id"]) == []
    assert after == before


async def test_resync_from_tryton_writes_into_the_crm_along_the_directions(env: Env) -> None:
    await seed(env)
    crm_table = "SELECT * FROM demo_crm.contact ORDER BY id"
    async with Service(env.settings()) as service:
        first = await service.finished(await service.resync(1, [1, 2]))
        crm_after_first = await env.db.fetch(crm_table)
        second = await service.finished(await service.resync(1, [1, 2]))
        crm_after_second = await env.db.fetch(crm_table)

    assert first["State"] == "Succeeded", first
    crm = {r["id"]: dict(r) for r in crm_after_first}
    # name (both) and city (to_crm) come from Tryton; phone and email are to_erp only.
    assert (crm[1]["name"], crm[1]["city"]) == ("Acme (old)", "Drammen")
    assert (crm[1]["phone"], crm[1]["email"]) == ("+47 111", "post@acme.example")
    assert (crm[2]["name"], crm[2]["city"]) == ("Beta AB", "Bergen")
    assert [r for r in await sync_log(env.db, first["Id"]) if r[4]] == sorted(
        [
            (1, 1, "city", "city", True, "Oslo", "Drammen"),
            (1, 1, "name", "name", True, "Acme AS", "Acme (old)"),
        ]
    )
    # The CRM's new values went on to the other ERP (the source itself is not written back).
    assert env.store.get("Customer", "M1") == {
        "company": "Acme (old)",
        "tel": "+47 111",
        "mail": "post@acme.example",
    }
    assert second["State"] == "Succeeded", second
    assert second["Statistics"]["FieldsChanged"] == 0
    assert await sync_log(env.db, second["Id"]) == []
    assert crm_after_second == crm_after_first


async def wrong_password_run(
    env: Env, **memory: Any
) -> tuple[dict[str, Any], str, dict[int, list[tuple[Any, ...]]]]:
    """Resync keys 1-3 from the CRM with a wrong Tryton password: (task info, the wrong
    password, {target: [(key, status, error)]})."""
    await seed(env)
    login = services.unique("wrongpw")
    await env.server.create_user(login)
    wrong = "not-" + env.server.passwords[login]
    settings = env.settings({"login": login, "password": wrong}, **memory)
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, [1, 2, 3]))
    outcomes = await env.db.fetch(
        "SELECT internal_key_id, connection_id, status, error FROM record_outcomes "
        "WHERE task_id = $1 ORDER BY internal_key_id, connection_id",
        info["Id"],
    )
    by_target: dict[int, list[tuple[Any, ...]]] = {}
    for row in outcomes:
        by_target.setdefault(row["connection_id"], []).append(
            (row["internal_key_id"], row["status"], row["error"])
        )
    return info, wrong, by_target


async def test_a_wrong_password_fails_the_tryton_records_with_a_configuration_error(
    env: Env,
) -> None:
    info, wrong, by_target = await wrong_password_run(env)
    tryton_rows = by_target.get(1, [])
    assert [(k, s) for k, s, _ in tryton_rows] == [(1, "failed"), (2, "failed"), (3, "failed")]
    for _, _, error in tryton_rows:
        assert error.startswith("Configuration error on Tryton: "), error
        assert "refused the login" in error, error
        assert wrong not in error
    assert info["State"] == "Failed"
    # The task names the connection and why; the other target's records are not failed.
    assert "on connection 1: Configuration error on Tryton: " in info["Response"], info["Response"]
    assert wrong not in info["Response"]
    assert all(status != "failed" for _, status, _ in by_target.get(2, []))


async def test_a_wrong_password_leaves_the_other_targets_unaffected(env: Env) -> None:
    """One chunk per key and a slow other target: its units outlive Tryton's failure."""
    _, _, by_target = await wrong_password_run(
        env,
        chunk_size=1,
        overrides={2: {"latency_ms": 300}},
        connection_options={2: {"concurrency": 1}},
    )
    assert [(k, s) for k, s, _ in by_target.get(2, [])] == [
        (1, "updated"),
        (2, "updated"),
        (3, "updated"),
    ]
    assert env.store.get("Customer", "M3") == {
        "company": "Gamma AS",
        "tel": "+47 333",
        "mail": "post@gamma.example",
    }
