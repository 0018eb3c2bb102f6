"""The benchmarks' services and settings: a CRM and ERP targets on the synthetic connector, one
user for the front door, on the PostgreSQL and RabbitMQ of ``BENCH_DATABASE_URL`` /
``BENCH_AMQP_URL`` (default: the local services)."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks.synthetic import REFERENCE as SYNTHETIC
from engine.settings import Settings
from tests.support import services
from tests.support.settings import CRM_FIELDS, customers

ADMIN_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
USER, PASSWORD = "bench", "bench-password"
# pbkdf2 hash of PASSWORD (cheap iteration count: the cache makes it a one-off cost anyway).
AUTH_HEADER = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
RESYNC_PATH = "/api/v1/Agents/ErpSync/ForceResyncBatchTask"
TASK_INFO_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfo"


def settings(
    database: str,
    prefix: str,
    *,
    port: int = 0,
    targets: Sequence[int] = (1, 2),
    latency_ms: dict[int, float] | None = None,
    concurrency: int = 8,
    batch_size: int = 100,
    chunk_size: int = 200,
    prefetch: int = 8,
    trace_path: Path | None = None,
    log_level: str = "info",
) -> Settings:
    """A CRM and ERP targets on the synthetic connector; each target has a stale ``phone``.

    Mapping per target (Customer <-> Contact): name, phone and email to the ERP, city none, so a
    resync from the CRM reads each batch, then saves one changed field per record.
    """
    latency_ms = latency_ms or {}

    def conn(cid: int, stale: list[str], fields: list[str]) -> dict[str, Any]:
        return {
            "id": cid,
            "name": "CRM" if cid == 0 else f"ERP {cid}",
            "connector": SYNTHETIC,
            "concurrency": concurrency,
            "batch_size": batch_size,
            "timeout": 30,
            "settings": {
                "actor_types": {"Contact" if cid == 0 else "Customer": fields},
                "stale_fields": stale,
                "latency_ms": latency_ms.get(cid, 0.0),
                "trace_path": str(trace_path) if trace_path else None,
            },
        }

    erps = []
    for cid in targets:
        erp = conn(cid, ["phone"], CRM_FIELDS)
        erp["actor_types"] = customers(
            name="name to_erp", phone="phone to_erp", email="email to_erp", city="city none"
        )
        erps.append(erp)
    return Settings.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": 10},
            "database": {
                "url": services.database_url(database, ADMIN_DATABASE_URL),
                "pool_min_size": 2,
                "pool_max_size": 10,
            },
            "broker": {"url": AMQP_URL, "prefix": prefix, "prefetch": prefetch},
            "engine": {"chunk_size": chunk_size},
            "logging": {"level": log_level, "format": "json"},
            "auth": {"users": [{"name": USER, "password_hash": _password_hash()}]},
            "crm": conn(0, [], CRM_FIELDS),
            "connections": erps,
        }
    )


def _password_hash() -> str:
    from engine.api.passwords import hash_password

    return hash_password(PASSWORD, iterations=1000)


def settings_json(value: Settings) -> bytes:
    """Settings as JSON with secrets revealed (for the child process only)."""
    data = value.model_dump(mode="json")
    data["database"]["url"] = value.database.url.get_secret_value()
    data["broker"]["url"] = value.broker.url.get_secret_value()
    for user, model in zip(data["auth"]["users"], value.auth.users, strict=True):
        user["password_hash"] = model.password_hash.get_secret_value()
    return orjson.dumps(data)
