"""Completion notifications and RetryFailed over real RabbitMQ and PostgreSQL (issue 17).

Every finished task gets exactly one task.finished event on the events exchange, whichever code
path finished it; a webhook that fails twice gets the event again until it acknowledges it, each
POST signed; RetryFailed makes a task of exactly the failed records, per target.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.memory import MemoryStore
from engine.settings import NotificationSettings, Settings
from tests.support import services
from tests.support.cli import operator_env, run_cli
from tests.support.events import Event, EventQueue
from tests.support.service import AUTH, Service, seed_stale
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

RETRY_FAILED = "/api/v1/Agents/ErpSync/RetryFailed"
DELIVERIES = "/api/v1/erpsync/webhook-deliveries"
SECRET = "a-webhook-secret-of-some-length"
DOCS = Path(__file__).parents[2] / "docs"


def notifying(settings: Settings, **notifications: Any) -> Settings:
    """``settings`` with a fast relay and these notification settings."""
    values = {"relay_interval": 0.1, **notifications}
    return settings.model_copy(
        update={"notifications": NotificationSettings.model_validate(values)}
    )


def settings_for(
    database: str, prefix: str, stores: dict[int, MemoryStore], **erp2: Any
) -> Settings:
    return memory_settings(
        database,
        prefix,
        {cid: s.name for cid, s in stores.items()},
        overrides={2: erp2} if erp2 else None,
        chunk_size=4,
    )


async def unpublished(db: asyncpg.Connection) -> tuple[int, int]:
    """(events, of them not yet confirmed by the broker)."""
    row = await db.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM task_events"
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def test_each_finished_task_gets_exactly_one_event(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 10)
    settings = notifying(settings_for(database, broker_prefix, stores), first_failures=5)
    async with EventQueue(broker_prefix) as queue, Service(settings) as service:
        ok = await service.resync(0, list(range(1, 11)))
        unknown = await service.resync(0, [999])
        # a command published straight to RabbitMQ, naming an unknown source: tasks.fail path
        await services.publish_command(
            broker_prefix,
            b'{"ErpConnectionId": 77, "CorrelationId": "order-service/77"}',
            "cmd-77",
        )
        assert (await service.finished(ok))["State"] == "Succeeded"
        assert (await service.finished(unknown))["State"] == "Failed"
        await wait_for(lambda: unpublished(db), lambda c: c == (3, 0), what="3 events published")
        received = await wait_for(queue.drain, lambda r: len(r) >= 3, what="3 events received")
        third = await db.fetchval("SELECT id FROM batch_tasks WHERE message_id = 'cmd-77'")
        assert queue.by_task() == {ok: 1, unknown: 1, third: 1}
        events = {e.body["TaskId"]: e for e in received}
        first = events[ok]
        assert first.message_id == f"task-finished-{ok}" == first.body["MessageId"]
        assert first.body["Event"] == "task.finished"
        assert first.body["State"] == "Succeeded"
        assert first.body["Counts"]["DoneRecords"] == 10
        assert first.body["Counts"]["Updated"] == 20  # both ERPs were stale
        assert first.body["FirstFailures"] == []
        assert events[unknown].body["State"] == "Failed"
        assert events[unknown].body["Counts"]["UnknownKeys"] == 1
        assert events[third].body["CorrelationId"] == "order-service/77"
        assert events[third].correlation_id == "order-service/77"
        assert "Unknown ErpConnectionId 77" in events[third].body["Response"]
        metrics = await (await service.client.get("/metrics")).text()
        assert 'erpsync_outbox_pending{kind="events"} 0.0' in metrics
        assert "erpsync_task_events_published_total 3.0" in metrics
        assert await queue.drain() == received  # nothing more came
        schema = orjson.loads((DOCS / "task-finished-event.schema.json").read_bytes())
        for event in received:
            jsonschema.Draft202012Validator(schema).validate(event.body)


async def test_a_webhook_failing_twice_gets_the_event_until_it_acknowledges(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    requests: list[tuple[dict[str, str], bytes]] = []
    refused: list[bytes] = []

    async def receiver(request: web.Request) -> web.Response:
        requests.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if len(requests) <= 2 else 204)

    async def broken(request: web.Request) -> web.Response:
        refused.append(await request.read())
        raise web.HTTPFound("/elsewhere")  # a redirect is not an acknowledgement

    app = web.Application()
    app.router.add_post("/hook", receiver)
    app.router.add_post("/broken", broken)
    await seed_stale(db, stores, 3)
    async with TestServer(app, host="127.0.0.1") as server:
        hook = {
            "name": "ops",
            "url": str(server.make_url("/hook?token=t0ps3cret")),
            "secret": SECRET,
            "timeout": 5,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
        }
        given_up = {
            **hook,
            "name": "broken",
            "url": str(server.make_url("/broken")),
            "max_attempts": 2,
        }
        settings = notifying(
            settings_for(database, broker_prefix, stores), webhooks=[hook, given_up]
        )
        async with Service(settings) as service:
            task_id = await service.resync(0, [1, 2, 3])
            await service.finished(task_id)
            row = await wait_for(
                lambda: db.fetchrow(
                    "SELECT * FROM webhook_deliveries WHERE task_id = $1 AND webhook = 'ops'",
                    task_id,
                ),
                lambda r: r is not None and r["delivered_at"] is not None,
                what="the webhook delivery to be acknowledged",
            )
            assert row is not None and row["attempts"] == 3 and row["last_status"] == 204
            gave_up = await wait_for(
                lambda: db.fetchrow(
                    "SELECT * FROM webhook_deliveries WHERE task_id = $1 AND webhook = 'broken'",
                    task_id,
                ),
                lambda r: r is not None and r["gave_up_at"] is not None,
                what="the broken webhook's delivery to be given up",
            )
            assert gave_up is not None
            assert gave_up["attempts"] == 2 and gave_up["last_status"] == 302
            assert gave_up["last_error"] == "HTTP 302" and len(refused) == 2
            metrics = await (await service.client.get("/metrics")).text()
            assert 'erpsync_outbox_pending{kind="webhooks_given_up"} 1.0' in metrics
            assert 'erpsync_webhook_attempts_total{outcome="retried",webhook="ops"} 2.0' in metrics
            assert (
                'erpsync_webhook_attempts_total{outcome="gave_up",webhook="broken"} 1.0' in metrics
            )
            response = await service.client.get(f"{DELIVERIES}?task_id={task_id}", headers=AUTH)
            assert response.status == 200
            shown, failed = sorted(await response.json(), key=lambda d: d["Webhook"] != "ops")
            assert failed["Webhook"] == "broken" and failed["State"] == "given_up"
            assert failed["NextAttempt"] is None and failed["GaveUp"] is not None
            assert shown["Webhook"] == "ops" and shown["State"] == "delivered"
            assert shown["Attempts"] == 3 and shown["LastStatus"] == 204
            assert shown["NextAttempt"] is None
    assert len(requests) == 3
    bodies = {body for _, body in requests}
    assert len(bodies) == 1  # the same event every time
    event = orjson.loads(bodies.pop())
    assert event["TaskId"] == task_id and event["State"] == "Succeeded"
    for headers, body in requests:
        timestamp = headers["X-Erpsync-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert headers["X-Erpsync-Signature"] == "sha256=" + expected.hexdigest()
        assert headers["X-Erpsync-Message-Id"] == f"task-finished-{task_id}"
        assert headers["X-Erpsync-Event"] == "task.finished"


async def retry(service: Service, task_id: int, **headers: str) -> Any:
    return await service.client.post(
        RETRY_FAILED, json={"Id": task_id}, headers={**AUTH, **headers}
    )


async def outcomes(db: asyncpg.Connection, task_id: int) -> dict[tuple[int, str], list[int]]:
    """(connection, status) -> internal keys, of one task."""
    rows = await db.fetch(
        "SELECT connection_id, status, internal_key_id FROM record_outcomes WHERE task_id = $1 "
        "ORDER BY internal_key_id",
        task_id,
    )
    out: dict[tuple[int, str], list[int]] = {}
    for r in rows:
        out.setdefault((r[0], r[1]), []).append(r[2])
    return out


async def test_retry_failed_retries_exactly_the_failed_records_on_their_target(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_stale(db, stores, 10)
    rejected = [f"B{i}" for i in range(1, 8)]
    failing = settings_for(database, broker_prefix, stores, fail_keys=rejected)
    async with Service(notifying(failing)) as service:
        first = await service.resync(0, list(range(1, 11)))
        info = await service.finished(first)
        assert info["State"] == "Failed" and info["Statistics"]["Failed"] == 7
        response = await retry(service, first)
        assert response.status == 200, await response.text()
        second = await response.json()
        assert response.headers["X-Batch-Task-Id"] == str(second)
        info = await service.finished(second)
        # the target still rejects them: the same 7 fail again, and ERP 1 was not touched
        assert info["State"] == "Failed" and info["Statistics"]["Failed"] == 7
        assert orjson.loads(info["Request"]) == {
            "ErpConnectionId": 0,
            "InternalKeyIds": [1, 2, 3, 4, 5, 6, 7],
            "TargetKeys": {"2": [1, 2, 3, 4, 5, 6, 7]},
            "RetryOf": first,
        }
        assert await outcomes(db, second) == {(2, "failed"): [1, 2, 3, 4, 5, 6, 7]}
        assert info["ProgressPercent"] == 100

    accepting = settings_for(database, broker_prefix, stores)
    async with Service(notifying(accepting)) as service:
        response = await retry(service, second, Accept="application/xml")
        assert response.status == 200
        text = await response.text()
        third = int(response.headers["X-Batch-Task-Id"])
        assert f">{third}</int>" in text
        info = await service.finished(third)
        assert info["State"] == "Succeeded", info
        assert info["Statistics"]["DoneRecords"] == 7
        assert await outcomes(db, third) == {(2, "updated"): [1, 2, 3, 4, 5, 6, 7]}
        for i in range(1, 8):
            assert stores[2].get("Customer", f"B{i}") == {
                "company": f"Co {i}",
                "tel": str(i),
                "mail": f"{i}@c",
            }

        # the refusals: nothing failed, unknown task, unfinished task
        nothing = await retry(service, third)
        assert nothing.status == 422
        assert "no failed records" in (await nothing.json())["ErrorMessage"]
        unknown = await retry(service, 987654)
        assert unknown.status == 404
        new = await db.fetchval(
            "INSERT INTO batch_tasks (name, source_connection_id, request) "
            "VALUES ('ForceResyncBatchTask', 0, '{}') RETURNING id"
        )
        running = await retry(service, new)
        assert running.status == 409
        assert "once it has finished" in (await running.json())["ErrorMessage"]


async def resend(service: Service, delivery_id: int | str) -> Any:
    return await service.client.post(f"{DELIVERIES}/{delivery_id}/resend", headers=AUTH)


async def test_a_given_up_delivery_is_resent_by_the_api_and_the_cli(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    posts: list[int] = []
    accepting = False

    async def receiver(request: web.Request) -> web.Response:
        posts.append(orjson.loads(await request.read())["TaskId"])
        return web.Response(status=204 if accepting else 503)

    app = web.Application()
    app.router.add_post("/hook", receiver)
    await seed_stale(db, stores, 2)
    async with TestServer(app, host="127.0.0.1") as server:
        hook = {
            "name": "ops",
            "url": str(server.make_url("/hook")),
            "secret": SECRET,
            "max_attempts": 1,
        }
        settings = notifying(settings_for(database, broker_prefix, stores), webhooks=[hook])
        async with Service(settings) as service:
            first, second = [await service.resync(0, [key]) for key in (1, 2)]
            for task_id in (first, second):
                await service.finished(task_id)

            async def deliveries() -> dict[int, asyncpg.Record]:
                rows = await db.fetch("SELECT * FROM webhook_deliveries")
                return {r["task_id"]: r for r in rows}

            given_up = await wait_for(
                deliveries,
                lambda d: len(d) == 2 and all(r["gave_up_at"] is not None for r in d.values()),
                what="both deliveries to be given up",
            )
            one, two = given_up[first]["id"], given_up[second]["id"]
            assert sorted(posts) == [first, second]
            accepting = True

            response = await resend(service, one)
            assert response.status == 200, await response.text()
            shown = await response.json()
            assert (shown["Id"], shown["TaskId"], shown["Webhook"]) == (one, first, "ops")
            assert shown["State"] == "pending" and shown["Attempts"] == 0
            assert shown["GaveUp"] is None and shown["NextAttempt"] is not None
            delivered = await wait_for(
                deliveries,
                lambda d: d[first]["delivered_at"] is not None,
                what="the resent delivery to be acknowledged",
            )
            assert delivered[first]["attempts"] == 1 and delivered[first]["last_status"] == 204
            assert delivered[second]["gave_up_at"] is not None  # only the one asked for

            again = await resend(service, one)
            assert again.status == 409
            assert "is delivered" in (await again.json())["ErrorMessage"]
            assert (await resend(service, 987654)).status == 404
            assert (await resend(service, "abc")).status == 400
            gone = await db.fetchval(
                "INSERT INTO webhook_deliveries (task_id, webhook, gave_up_at) "
                "VALUES ($1, 'removed', now()) RETURNING id",
                second,
            )
            unconfigured = await resend(service, gone)
            assert unconfigured.status == 409
            assert "no longer configured" in (await unconfigured.json())["ErrorMessage"]
            assert await db.fetchval(
                "SELECT gave_up_at IS NOT NULL FROM webhook_deliveries WHERE id = $1", gone
            )

            env = operator_env(str(service.server.make_url("/")))
            code, out, err = await run_cli("tasks", "deliveries", str(second), env=env)
            assert code == 0, err
            rows = [line.split()[:4] for line in out.splitlines() if "given_up" in line]
            assert rows == [  # newest first
                [str(gone), str(second), "removed", "given_up"],
                [str(two), str(second), "ops", "given_up"],
            ]
            code, out, err = await run_cli("tasks", "deliveries", "--resend", str(two), env=env)
            assert code == 0, err
            assert out.strip() == f"delivery {two} of task {second} to webhook 'ops' is due again"
            await wait_for(
                deliveries,
                lambda d: d[second]["delivered_at"] is not None,
                what="the delivery resent by the CLI to be acknowledged",
            )
            code, out, err = await run_cli("tasks", "deliveries", "--resend", str(two), env=env)
            assert code == 1
            assert f"409: Webhook delivery {two} is delivered" in err
    assert sorted(posts) == [first, first, second, second]


async def test_the_sweeper_forgets_settled_events_and_deliveries_past_their_retention(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    for task_id in (1, 2, 3):  # 3 was never sent
        await db.execute(
            "INSERT INTO task_events (task_id, body, published_at) VALUES ($1, '{}', "
            "CASE WHEN $1::bigint < 3 THEN now() - interval '3 hours' END)",
            task_id,
        )
    await db.execute(
        "INSERT INTO webhook_deliveries (task_id, webhook, delivered_at, gave_up_at) VALUES "
        "(1, 'ops', now() - interval '3 hours', NULL), (2, 'ops', NULL, NULL), "
        "(3, 'ops', NULL, now() - interval '3 hours')"
    )
    settings = notifying(
        settings_for(database, broker_prefix, stores), events_kept=3600, deliveries_kept=7200
    )
    settings = settings.model_copy(
        update={"engine": settings.engine.model_copy(update={"sweep_interval": 0.1})}
    )
    async with Service(settings):
        await wait_for(
            lambda: db.fetchval("SELECT count(*) FROM webhook_deliveries"),
            lambda n: n == 1,
            what="the settled deliveries to be purged",
        )
        await wait_for(
            lambda: db.fetchval("SELECT count(*) FROM task_events"),
            lambda n: n == 2,
            what="the sent event without undelivered deliveries to be purged",
        )
    assert [r[0] for r in await db.fetch("SELECT task_id FROM task_events ORDER BY 1")] == [2, 3]
    assert await db.fetchval("SELECT task_id FROM webhook_deliveries") == 2  # still pending


async def test_the_relay_is_woken_when_a_task_finishes_not_a_relay_interval_later(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    posted: list[int] = []

    async def receiver(request: web.Request) -> web.Response:
        posted.append(orjson.loads(await request.read())["TaskId"])
        return web.Response(status=204)

    async def posts() -> list[int]:
        return posted

    app = web.Application()
    app.router.add_post("/hook", receiver)
    await seed_stale(db, stores, 2)
    async with TestServer(app, host="127.0.0.1") as server:
        hook = {"name": "ops", "url": str(server.make_url("/hook")), "secret": SECRET}
        # A minute between polls: the event and the webhook can only come this soon by LISTEN.
        settings = notifying(
            settings_for(database, broker_prefix, stores), relay_interval=60, webhooks=[hook]
        )
        async with EventQueue(broker_prefix) as queue, Service(settings) as service:
            for key in (1, 2):  # the second finishes after the first pass ran
                task_id = await service.resync(0, [key])
                await service.finished(task_id)

                def has_event(received: list[Event], task_id: int = task_id) -> bool:
                    return any(e.body["TaskId"] == task_id for e in received)

                def has_post(posted: list[int], task_id: int = task_id) -> bool:
                    return task_id in posted

                got = await wait_for(queue.drain, has_event, timeout=15, what="the event, soon")
                assert [e.body["TaskId"] for e in got].count(task_id) == 1
                await wait_for(posts, has_post, timeout=15, what="the webhook POST, soon")
