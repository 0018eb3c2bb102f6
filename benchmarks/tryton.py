"""Tryton: records/s erpsync pushes into a real Tryton vs a bare JSON-RPC client (issue 16).

One ``trytond`` (party module, SQLite) serves both, alternately, in the same run. N parties are
seeded with a stale ``name``; the CRM is the synthetic connector (field ``f`` of key ``k`` is
``"f k"``), so each record needs one write. Before each measured run every name is made stale
again (not timed).

* erpsync: a "resync all" from the CRM on one worker process, Tryton as the one target with
  ``concurrency`` and ``batch_size``; the figure is N / (task created -> finished).
* bare client: the calls the connector makes per batch of ``batch_size``, with ``concurrency``
  batches in flight on one aiohttp session: ``search_read`` of the batch (compare with the CRM
  values), ``search_read`` of the sub-record ids, one ``write`` of the changed names,
  ``search_read`` of the new stamps. The figure is N / wall-clock time.

    python -m benchmarks.tryton [--smoke] [--repeats 3] [--records 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.reporting import Report, arguments
from benchmarks.scenario import Bench, run_main
from connectors.testing.tryton_server import TrytonClient, TrytonServer

TARGET_RATIO = 0.8
PARTY = "model.party.party"
READ = ["write_date", "create_date", "name", "contact_mechanisms.type", "contact_mechanisms.value"]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="parties (default 2000)")


async def seed(admin: TrytonClient, records: int) -> list[int]:
    """Parties 1..N with the CRM's phone and email and a stale name; their ids, in key order."""
    ids: list[int] = []
    for start in range(1, records + 1, 500):
        keys = range(start, min(start + 500, records + 1))
        ids += await admin.call(
            f"{PARTY}.create",
            [
                {
                    "name": f"name {k} old",
                    "contact_mechanisms": [
                        [
                            "create",
                            [
                                {"type": "phone", "value": f"phone {k}"},
                                {"type": "email", "value": f"email {k}"},
                            ],
                        ]
                    ],
                }
                for k in keys
            ],
        )
    return ids


async def make_stale(admin: TrytonClient, ids: list[int]) -> None:
    for start in range(0, len(ids), 500):
        args: list[Any] = []
        for key, party in enumerate(ids[start : start + 500], start=start + 1):
            args += [[party], {"name": f"name {key} old"}]
        await admin.call(f"{PARTY}.write", *args)


async def bare_run(
    client: TrytonClient, keys: dict[int, int], batch: int, concurrency: int
) -> None:
    """Push the CRM's names the way a hand-written integration would, batch by batch."""
    parties = list(keys)
    gate = asyncio.Semaphore(concurrency)

    async def one(chunk: list[int]) -> None:
        async with gate:
            domain = [["id", "in", chunk]]
            rows = await client.call(f"{PARTY}.search_read", domain, 0, None, None, READ)
            changed = [r["id"] for r in rows if r["name"] != f"name {keys[r['id']]}"]
            if not changed:
                return
            ids = [["id", "in", changed]]
            subs = ["addresses", "contact_mechanisms.type"]
            await client.call(f"{PARTY}.search_read", ids, 0, None, None, subs)
            args: list[Any] = []
            for party in changed:
                args += [[party], {"name": f"name {keys[party]}"}]
            await client.call(f"{PARTY}.write", *args)
            stamps = ["write_date", "create_date"]
            await client.call(f"{PARTY}.search_read", ids, 0, None, None, stamps)

    chunks = [parties[i : i + batch] for i in range(0, len(parties), batch)]
    await asyncio.gather(*(one(c) for c in chunks))


async def verify(admin: TrytonClient, ids: list[int]) -> None:
    rows = await admin.call(f"{PARTY}.search_read", [["id", "in", ids]], 0, None, None, ["name"])
    wrong = [r for r in rows if r["name"].endswith(" old")]
    assert len(rows) == len(ids), f"{len(ids) - len(rows)} parties missing"
    assert not wrong, f"{len(wrong)} parties not written"


async def link(db: Any, ids: list[int]) -> None:
    """Internal keys 1..N (CRM contacts "1".."N") linked to the parties on connection 1."""
    await db.execute(
        "INSERT INTO internal_keys (id, crm_actor_type, crm_record_id) "
        "SELECT g, 'Contact', g::text FROM generate_series(1, $1) g",
        len(ids),
    )
    await db.execute(
        "INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key) "
        "SELECT k, 1, 'Customer', p::text FROM unnest($1::bigint[]) WITH ORDINALITY AS t(p, k)",
        ids,
    )
    await db.execute("SELECT setval('internal_keys_id_seq', $1)", len(ids))


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (200 if args.smoke else 2_000)
    concurrency, batch = 8, 100
    report = Report(
        "tryton",
        args,
        {
            "records": records,
            "concurrency": concurrency,
            "batch_size": batch,
            "changed_fields_per_record": 1,
            "tryton": "trytond 7.0, party, SQLite, werkzeug threaded server",
            "worker_processes": 1,
        },
    )
    engine = report.figure("erpsync_records_per_s", "records/s (erpsync, task created->finished)")
    bare = report.figure("bare_records_per_s", "records/s (bare JSON-RPC client)")
    ratio = report.figure("ratio", "erpsync / bare client")
    with TrytonServer() as server:
        password = await server.create_user("erpsync")
        async with server.client() as admin, Bench("tryton") as bench:
            ids = await seed(admin, records)
            keys = {party: key for key, party in enumerate(ids, start=1)}
            await link(bench.conn, ids)
            config = bench.settings(targets=(1,), concurrency=concurrency, batch_size=batch)
            mapping = config.connections[0].actor_types[0]
            fields = {k: v for k, v in mapping.fields.items() if k != "city"}
            tryton = config.connections[0].model_copy(
                update={
                    "actor_types": [mapping.model_copy(update={"fields": fields})],
                    "connector": "tryton",
                    "name": "Tryton",
                    "settings": {
                        "url": server.url,
                        "database": server.database,
                        "username": "erpsync",
                        "password": password,
                        "max_connections": concurrency,
                        "actor_types": {"Customer": {"fields": ["name", "phone", "email"]}},
                    },
                }
            )
            config = config.model_copy(update={"connections": [tryton]})
            await bench.start("worker", config)
            async with bench.publisher(config) as publisher, server.client("erpsync") as client:
                # Warm-up of both (sessions, caches, Tryton's pool), not reported.
                await bench.wait_task(message_id=await bench.resync_all(publisher))
                await make_stale(admin, ids)
                await bare_run(client, keys, batch, concurrency)
                for _ in range(args.repeats):
                    await make_stale(admin, ids)
                    started = time.monotonic()
                    await bare_run(client, keys, batch, concurrency)
                    bare.add(records / (time.monotonic() - started))
                    await verify(admin, ids)
                    await make_stale(admin, ids)
                    task = await bench.wait_task(message_id=await bench.resync_all(publisher))
                    assert task["state"] == "Succeeded", dict(task)
                    assert task["writes_updated"] == records, dict(task)
                    elapsed = (task["finished_at"] - task["created_at"]).total_seconds()
                    engine.add(records / elapsed)
                    await verify(admin, ids)
                    ratio.add(engine.runs[-1] / bare.runs[-1])
    report.check(
        "erpsync records/s vs a bare client",
        f">= {TARGET_RATIO:.0%}",
        ratio.median,
        ratio.median >= TARGET_RATIO,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
