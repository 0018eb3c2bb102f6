"""Front-door fixtures: an API service (real HTTP, RabbitMQ, PostgreSQL) with every auth scheme.

``front_door`` runs the API only (no workers), so accepted commands stay queued and their task
rows keep the exact request the front door bound; tests that need tasks to run use
``tests.support.service.Service`` with the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from tests.support.api import api_settings
from tests.support.service import Service


@pytest.fixture
async def front_door(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
) -> AsyncIterator[Service]:
    """The API alone (no workers) with Basic, tickets, JWT and app tokens configured.

    With no workers a synchronous ForceResync* can only time out: answer after 0.2 s, not the
    default 30 (the fuzz test's requests include "resync all" with an empty body)."""
    settings = api_settings(database, broker_prefix, stores, rsa_key)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"sync_timeout": 0.2})}
    )
    async with Service(settings, engine=False) as service:
        yield service
