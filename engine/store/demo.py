"""Demo data: a CRM schema and two ERP schemas in PostgreSQL, linked through internal keys.

1,000 companies (CRM ``Contact`` <-> ERP ``Customer``) and 2,000 persons, internal keys 1..3000
(companies first), every record linked on both ERPs. Some ERP values deliberately differ from the
CRM so that a resync visibly changes them. Seeding is idempotent: it only fills empty tables.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.store import Connection

COMPANIES = 1_000
PERSONS = 2_000

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS demo_crm;
CREATE TABLE IF NOT EXISTS demo_crm.contact (
    id bigint PRIMARY KEY, name text NOT NULL, orgnr text, phone text, email text, city text,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS demo_crm.person (
    id bigint PRIMARY KEY, contact_id bigint REFERENCES demo_crm.contact (id), firstname text,
    lastname text, email text, phone text, title text,
    updated_at timestamptz NOT NULL DEFAULT now());

CREATE SCHEMA IF NOT EXISTS demo_erp1;
CREATE TABLE IF NOT EXISTS demo_erp1.customer (
    key text PRIMARY KEY, name text, vat_no text, phone text, email text, city text,
    credit_limit numeric(12, 2), last_modified bigint NOT NULL DEFAULT 0,
    erpsync_ref text UNIQUE);
CREATE TABLE IF NOT EXISTS demo_erp1.person (
    key text PRIMARY KEY, customer_key text, first_name text, last_name text, email text,
    mobile text, last_modified bigint NOT NULL DEFAULT 0, erpsync_ref text UNIQUE);

CREATE SCHEMA IF NOT EXISTS demo_erp2;
CREATE TABLE IF NOT EXISTS demo_erp2.customer (
    id bigserial PRIMARY KEY, company_name varchar(200), org_no text, telephone text, mail text,
    town text, changed_at timestamptz NOT NULL DEFAULT now(), erpsync_ref text UNIQUE);
CREATE TABLE IF NOT EXISTS demo_erp2.contact_person (
    id bigserial PRIMARY KEY, customer_id bigint, given_name text, family_name text, mail text,
    phone text, changed_at timestamptz NOT NULL DEFAULT now(), erpsync_ref text UNIQUE);
"""

# A value edited by hand (psql, another tool) must move the row's modified column, or the
# incremental sync never sees it: the connector's own writes set it explicitly, hand edits
# leave it as it was and the trigger moves it.
_TRIGGERS = """
CREATE OR REPLACE FUNCTION demo_erp1.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_modified IS NOT DISTINCT FROM OLD.last_modified THEN
        NEW.last_modified := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_erp1.customer
    FOR EACH ROW EXECUTE FUNCTION demo_erp1.touch();
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_erp1.person
    FOR EACH ROW EXECUTE FUNCTION demo_erp1.touch();
CREATE OR REPLACE FUNCTION demo_erp2.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.changed_at IS NOT DISTINCT FROM OLD.changed_at THEN
        NEW.changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_erp2.customer
    FOR EACH ROW EXECUTE FUNCTION demo_erp2.touch();
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_erp2.contact_person
    FOR EACH ROW EXECUTE FUNCTION demo_erp2.touch();
CREATE OR REPLACE FUNCTION demo_crm.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_crm.contact
    FOR EACH ROW EXECUTE FUNCTION demo_crm.touch();
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON demo_crm.person
    FOR EACH ROW EXECUTE FUNCTION demo_crm.touch();
"""

_FIRST = [
    "Anna",
    "Bjørn",
    "Clara",
    "David",
    "Eva",
    "Frode",
    "Gunn",
    "Henrik",
    "Ingrid",
    "Jonas",
    "Kari",
    "Lars",
    "Maja",
    "Nils",
    "Olga",
    "Per",
    "Ragnhild",
    "Sven",
    "Tove",
    "Ulf",
]
_LAST = [
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Berg",
    "Haugen",
    "Lund",
    "Dahl",
    "Moen",
]
_WORDS = [
    "Nordic",
    "Fjord",
    "Polar",
    "Granite",
    "Aurora",
    "Birch",
    "Harbor",
    "Summit",
    "Timber",
    "Glacier",
    "Coastal",
    "Viking",
    "Midnight",
    "Tundra",
    "Copper",
]
_KINDS = ["Consulting", "Logistics", "Foods", "Systems", "Marine", "Energy", "Design", "Retail"]
_CITIES = [
    "Oslo",
    "Bergen",
    "Trondheim",
    "Stavanger",
    "Tromsø",
    "Stockholm",
    "Göteborg",
    "København",
    "Aarhus",
    "Helsinki",
]


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What :func:`seed` did."""

    created: bool
    companies: int
    persons: int
    internal_keys: int
    links: int


async def seed(conn: Connection) -> SeedReport:
    """Create the demo schemas and fill them when empty (idempotent)."""
    await conn.execute(_SCHEMA)
    async with conn.transaction():
        # Serialize concurrent seeders; the second one finds the tables filled.
        await conn.execute("LOCK TABLE demo_crm.contact IN EXCLUSIVE MODE")
        await conn.execute(_TRIGGERS)
        if await conn.fetchval("SELECT count(*) FROM demo_crm.contact"):
            return await _report(conn, created=False)
        if await conn.fetchval("SELECT count(*) FROM internal_keys"):
            raise RuntimeError(
                "internal_keys already holds data that is not the demo's; "
                "seed the demo into an empty database"
            )
        await _fill(conn)
    return await _report(conn, created=True)


async def reset(conn: Connection) -> None:
    """Drop the demo schemas and every key, task and log row (demo databases only)."""
    await conn.execute(
        """
        DROP SCHEMA IF EXISTS demo_crm CASCADE;
        DROP SCHEMA IF EXISTS demo_erp1 CASCADE;
        DROP SCHEMA IF EXISTS demo_erp2 CASCADE;
        TRUNCATE internal_keys, external_keys, batch_tasks, task_chunks, record_outcomes,
                 sync_log, processed_messages, sync_watermarks, sync_crm_values
                 RESTART IDENTITY CASCADE;
        """
    )


async def _report(conn: Connection, *, created: bool) -> SeedReport:
    return SeedReport(
        created=created,
        companies=await conn.fetchval("SELECT count(*) FROM demo_crm.contact"),
        persons=await conn.fetchval("SELECT count(*) FROM demo_crm.person"),
        internal_keys=await conn.fetchval("SELECT count(*) FROM internal_keys"),
        links=await conn.fetchval("SELECT count(*) FROM external_keys"),
    )


async def _fill(conn: Connection) -> None:
    rnd = random.Random(42)  # deterministic demo
    contacts, persons = [], []
    for i in range(1, COMPANIES + 1):
        name = f"{rnd.choice(_WORDS)} {rnd.choice(_KINDS)} {'AS' if i % 3 else 'AB'} #{i}"
        contacts.append(
            (
                i,
                name,
                f"NO{900000000 + i}",
                f"+47 {22000000 + i * 7}",
                f"post@company{i}.example",
                rnd.choice(_CITIES),
            )
        )
    for j in range(1, PERSONS + 1):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        persons.append(
            (
                j,
                (j - 1) // 2 + 1,
                first,
                last,
                f"{first.lower()}.{last.lower()}{j}@mail.example",
                f"+47 {90000000 + j}",
                rnd.choice(["CEO", "CFO", "Buyer", "Engineer", "Sales"]),
            )
        )
    await _copy(
        conn, "demo_crm.contact", contacts, ("id", "name", "orgnr", "phone", "email", "city")
    )
    await _copy(
        conn,
        "demo_crm.person",
        persons,
        ("id", "contact_id", "firstname", "lastname", "email", "phone", "title"),
    )

    # ERP 1: every third phone (keys 1, 4, 7, ...) is stale and every 10th name is upper-case.
    erp1_customers = [
        (
            f"C{i:05d}",
            name if i % 10 else name.upper(),
            orgnr,
            phone if i % 3 != 1 else "+47 00000000",
            email,
            city,
            10000 + i,
            1,
        )
        for (i, name, orgnr, phone, email, city) in contacts
    ]
    await _copy(
        conn,
        "demo_erp1.customer",
        erp1_customers,
        (
            "key",
            "name",
            "vat_no",
            "phone",
            "email",
            "city",
            "credit_limit",
            "last_modified",
        ),
    )
    erp1_persons = [
        (f"P{j:05d}", f"C{cid:05d}", first, last if j % 9 else last.upper(), email, phone, 1)
        for (j, cid, first, last, email, phone, _title) in persons
    ]
    await _copy(
        conn,
        "demo_erp1.person",
        erp1_persons,
        (
            "key",
            "customer_key",
            "first_name",
            "last_name",
            "email",
            "mobile",
            "last_modified",
        ),
    )
    # ERP 2: ids are numbers; every third mail (keys 2, 5, 8, ...) is stale, every 4th
    # telephone (3, 7, ...) differs, and every 3rd town is unknown (not synced).
    erp2_customers = [
        (
            10000 + i,
            name,
            orgnr,
            phone if i % 4 != 3 else "+47 11111111",
            email if i % 3 != 2 else f"old{i}@legacy.example",
            city if i % 3 else "Unknown",
        )
        for (i, name, orgnr, phone, email, city) in contacts
    ]
    await _copy(
        conn,
        "demo_erp2.customer",
        erp2_customers,
        ("id", "company_name", "org_no", "telephone", "mail", "town"),
    )
    erp2_persons = [
        (50000 + j, 10000 + cid, first, last, email, phone if j % 4 else None)
        for (j, cid, first, last, email, phone, _title) in persons
    ]
    await _copy(
        conn,
        "demo_erp2.contact_person",
        erp2_persons,
        ("id", "customer_id", "given_name", "family_name", "mail", "phone"),
    )
    await conn.execute(
        """
        SELECT setval(pg_get_serial_sequence('demo_erp2.customer', 'id'), 20000);
        SELECT setval(pg_get_serial_sequence('demo_erp2.contact_person', 'id'), 60000);
        """
    )

    # Internal keys 1..1000 are the companies, 1001..3000 the persons; all linked on both ERPs.
    keys = [(i, "Contact", str(i)) for i in range(1, COMPANIES + 1)]
    keys += [(COMPANIES + j, "Person", str(j)) for j in range(1, PERSONS + 1)]
    await conn.copy_records_to_table(
        "internal_keys", records=keys, columns=("id", "crm_actor_type", "crm_record_id")
    )
    await conn.execute("SELECT setval('internal_keys_id_seq', $1)", COMPANIES + PERSONS)
    links: list[tuple[int, int, str, str, str | None]] = []
    for i in range(1, COMPANIES + 1):
        links.append((i, 1, "Customer", f"C{i:05d}", "1"))
        links.append((i, 2, "Customer", str(10000 + i), None))
    for j in range(1, PERSONS + 1):
        links.append((COMPANIES + j, 1, "Person", f"P{j:05d}", "1"))
        links.append((COMPANIES + j, 2, "Person", str(50000 + j), None))
    await conn.copy_records_to_table(
        "external_keys",
        records=links,
        columns=("internal_key_id", "connection_id", "erp_actor_type", "erp_key", "last_modified"),
    )


async def _copy(
    conn: Connection, table: str, records: Sequence[tuple[Any, ...]], columns: tuple[str, ...]
) -> None:
    """COPY ``records`` into ``schema.table``."""
    schema, name = table.split(".")
    await conn.copy_records_to_table(name, schema_name=schema, records=records, columns=columns)
