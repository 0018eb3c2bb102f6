"""PostgreSQL's CPU per task row of the front door's batched INSERT (issue 19, session 9).

``python -m benchmarks.task_insert [--url postgresql://postgres@127.0.0.1:5432/postgres]``

Creates a throwaway database with erpsync's schema, then runs the task batcher's statement
(:data:`engine.store.task_batch.INSERT_MANY`) and the one it replaced (``ON CONFLICT`` and an
``ORDER BY`` of the rows' ordinality) in turn, ``--rounds`` times each, ``--batches`` of
``--rows`` rows, and prints the backend's CPU per row (``/proc/PID/schedstat``: the server must
run on this machine). Each statement commits on its own, as the batcher's do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid

import asyncpg
import orjson

from engine.messaging.commands import new_message_id
from engine.store.migrate import migrate
from engine.store.task_batch import INSERT_MANY, INSERT_MANY_KNOWN

BEFORE = """
INSERT INTO batch_tasks (name, source_connection_id, request, message_id, correlation_id,
                         description)
SELECT t.name, t.source_connection_id, t.request::jsonb, t.message_id, t.correlation_id,
       t.description
FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS t(name, source_connection_id, request, message_id, correlation_id,
                          description, ord)
ORDER BY t.ord
ON CONFLICT (message_id) DO NOTHING
RETURNING id, message_id
"""
STATEMENTS = {
    "before session 9 (ON CONFLICT, ORDER BY ordinality)": BEFORE,
    "INSERT_MANY_KNOWN (ON CONFLICT)": INSERT_MANY_KNOWN,
    "INSERT_MANY (now)": INSERT_MANY,
}


def _backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


async def _per_row(conn: asyncpg.Connection, pid: int, sql: str, batches: int, rows: int) -> float:
    request = orjson.dumps({"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))}).decode()
    started = _backend_cpu(pid)
    for _ in range(batches):
        await conn.fetch(
            sql,
            ["ForceResync"] * rows,
            [0] * rows,
            [request] * rows,
            [new_message_id() for _ in range(rows)],
            [None] * rows,
            ["From the CRM"] * rows,
        )
    return (_backend_cpu(pid) - started) / (batches * rows) * 1e6


async def _main(url: str, rounds: int, batches: int, rows: int) -> None:
    name = f"erpsync_bench_insert_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(url, database=name)
        try:
            await migrate(conn)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await _per_row(conn, pid, INSERT_MANY, 50, rows)  # warm up, plan the statements
            figures: dict[str, list[float]] = {label: [] for label in STATEMENTS}
            for _ in range(rounds):
                for label, sql in STATEMENTS.items():
                    figures[label].append(await _per_row(conn, pid, sql, batches, rows))
        finally:
            await conn.close()
        print(f"PostgreSQL backend CPU per task row, {batches} INSERTs of {rows} rows per round:")
        for label, values in figures.items():
            print(
                f"  {label:52} median {statistics.median(values):5.1f} us "
                f"(rounds: {', '.join(f'{v:.1f}' for v in values)})"
            )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(_main(args.url, args.rounds, args.batches, args.rows))


if __name__ == "__main__":
    main()
