"""The yardstick of scenario 1: a straightforward FastStream + aiohttp + asyncpg front door.

Issue 7 sets the front door's target at 3,500 req/s, "about twice what a straightforward
FastStream + aiohttp + asyncpg implementation of the same endpoint reaches on this machine
(~1,850 req/s)". This VM's speed changes from one hour to the next, so ``front_door.py`` runs
this implementation in the same run, and judges the front door against it as well as against
the fixed figure.

What it does per request, the obvious way: check the Basic credential (a constant-time compare
with the configured password, no hashing: the cheapest honest check), validate the JSON body
with a pydantic model, insert the task row with its own statement and commit (asyncpg pool),
publish a persistent command with FastStream's ``RabbitBroker`` (aio-pika, publisher confirms,
``mandatory``) and answer 204 with the task id. No batching, no caching, no tuning.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from pydantic import BaseModel, Field, ValidationError

from benchmarks.bare_app import bare_app
from engine.messaging.topology import RESYNC_ROUTING_KEY, Names
from engine.settings import Settings

BROKER = web.AppKey("broker", RabbitBroker)
POOL = web.AppKey("pool", asyncpg.Pool)

INSERT = """
INSERT INTO batch_tasks (name, source_connection_id, request, message_id, description)
VALUES ('ErpSync.ForceResync', $1, $2::jsonb, $3, 'Force resync (reference implementation)')
RETURNING id
"""


class ResyncIn(BaseModel):
    """The request body."""

    ErpConnectionId: int = 0
    InternalKeyIds: list[int] = Field(default_factory=list)


def reference_app(settings: Settings, user: str, password: str) -> web.Application:
    """The straightforward front door, on the same database and broker prefix."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    exchange = RabbitExchange(
        Names(settings.broker.prefix).exchange, type=ExchangeType.DIRECT, durable=True
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(settings.database.url.get_secret_value())
        broker = RabbitBroker(settings.broker.url.get_secret_value())
        await broker.connect()
        # Once, before the first request: concurrent first publishes would race to declare it.
        await broker.declare_exchange(exchange)
        app[BROKER] = broker
        yield
        await broker.stop()
        await app[POOL].close()

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"Error": True, "ErrorMessage": "Unauthorized"}, status=401)
        try:
            body = ResyncIn.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"Error": True, "ErrorMessage": str(exc)}, status=400)
        message_id = uuid.uuid4().hex
        task_id = await request.app[POOL].fetchval(
            INSERT, max(body.ErpConnectionId, 0), body.model_dump_json(), message_id
        )
        await request.app[BROKER].publish(
            {**body.model_dump(), "TaskId": task_id},
            exchange=exchange,
            routing_key=RESYNC_ROUTING_KEY,
            persist=True,
            mandatory=True,
            message_id=message_id,
        )
        return web.Response(status=204, headers={"X-Batch-Task-Id": str(task_id)})

    return bare_app(resources, handle)
