"""The operators' tests' data: memory systems seeded with known differences."""

from __future__ import annotations

from typing import Any

import asyncpg

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support.service import link
from tests.support.settings import memory_settings


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore], count: int = 3) -> None:
    """``count`` CRM contacts linked on both ERPs; key 1 differs on both, key 2 on ERP 1."""
    crm, erp1, erp2 = stores[0], stores[1], stores[2]
    for i in range(1, count + 1):
        crm.put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}00", "email": f"{i}@crm"})
        erp1.put("Customer", f"E1-{i}", {"name": f"Co {i}", "phone": f"{i}00", "email": f"{i}@crm"})
        erp2.put("Customer", f"E2-{i}", {"company": f"Co {i}", "tel": f"{i}00", "mail": f"{i}@crm"})
        await link(
            db, i, "Contact", str(i), {1: ("Customer", f"E1-{i}"), 2: ("Customer", f"E2-{i}")}
        )
    erp1.put("Customer", "E1-1", {"name": "Co 1", "phone": "999", "email": "1@crm"})
    erp2.put("Customer", "E2-1", {"company": "Co 1", "tel": "100", "mail": "old@x"})
    erp1.put("Customer", "E1-2", {"name": "Old name", "phone": "200", "email": "2@crm"})


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore], **kw: Any) -> Settings:
    return memory_settings(database, prefix, {cid: s.name for cid, s in stores.items()}, **kw)


def slow_push_settings(database: str, prefix: str, stores: dict[int, MemoryStore]) -> Settings:
    """A task that runs for seconds: one record per chunk, and ERP 1 takes its push units one
    at a time, 2 s each; a stop then finds units waiting (one that skips nothing succeeds)."""
    return settings_for(
        database,
        prefix,
        stores,
        chunk_size=1,
        overrides={1: {"latency_ms": 1000}},
        connection_options={1: {"push_prefetch": 1}},
    )
