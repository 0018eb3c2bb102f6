"""Per-connection authorisation (403) and failed-login throttling (429), over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.api.passwords import hash_password
from engine.settings import Settings
from tests.support.api import APP_TOKEN, api_settings, basic, sha256_hex
from tests.support.service import RESYNC, TASK_INFO, Service

LIST = "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState"
STOP = "/api/v1/Agents/Batch/StopBatchJob"
LOGIN = "/api/session/login"
NARROW_APP = "app-token-for-connection-2-only"
LIMITED = basic("limited", "Limited1")
ERROR_KEYS = {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}


def access_settings(
    database: str,
    prefix: str,
    stores: dict[int, MemoryStore],
    key: rsa.RSAPrivateKey,
    memory: dict[str, Any] | None = None,
    **throttle: Any,
) -> Settings:
    """The front door's settings plus user ``limited`` (connection 1 only), an app allowed
    connection 2 only, and the given ``auth.login_throttle`` keys (``memory``: memory_settings'
    keyword arguments)."""
    base = api_settings(database, prefix, stores, key, **(memory or {}))
    limited = {
        "name": "limited",
        "password_hash": hash_password("Limited1", iterations=1000),
        "connections": [1],
    }
    narrow = {"name": "narrow", "token_sha256": sha256_hex(NARROW_APP), "connections": [2]}
    auth = base.auth.model_dump()
    # model_dump masks secrets: keep the configured objects, add to them.
    auth["users"] = [*base.auth.users, limited]
    auth["tickets"], auth["jwt"] = base.auth.tickets, base.auth.jwt
    auth["apps"] = [*base.auth.apps, narrow]
    auth["login_throttle"] = throttle
    return base.model_copy(update={"auth": type(base.auth).model_validate(auth)})


@pytest.fixture
async def guarded(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore], rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[Service]:
    settings = access_settings(
        database, broker_prefix, stores, rsa_key, client_header="X-Forwarded-For"
    )
    async with Service(settings, engine=False) as service:
        yield service


async def resync(service: Service, connection: int, headers: dict[str, str]) -> Any:
    return await service.client.post(
        RESYNC, json={"ErpConnectionId": connection, "InternalKeyIds": [1]}, headers=headers
    )


async def test_a_resync_of_a_forbidden_connection_is_403_and_creates_nothing(
    guarded: Service, db: asyncpg.Connection
) -> None:
    forbidden = await resync(guarded, 2, LIMITED)
    assert forbidden.status == 403
    body = await forbidden.json()
    assert set(body) == ERROR_KEYS and body["ErrorType"] == "SoSecurityException"
    assert body["ErrorMessage"] == (
        "User 'limited' (or the calling application) may not resync from connection 2"
    )
    as_xml = await resync(guarded, 2, {**LIMITED, "Accept": "application/xml"})
    assert as_xml.status == 403 and as_xml.content_type == "application/xml"
    text = await as_xml.text()
    assert "<ErrorType>SoSecurityException</ErrorType>" in text and text.startswith("<")
    crm = await guarded.client.post(RESYNC, json={"InternalKeyIds": [1]}, headers=LIMITED)
    assert crm.status == 403  # a missing ErpConnectionId is the CRM, connection 0
    allowed = await resync(guarded, 1, LIMITED)
    assert allowed.status == 204
    own = int(allowed.headers["X-Batch-Task-Id"])
    assert await db.fetchval("SELECT array_agg(id) FROM batch_tasks") == [own]

    # An application's list narrows what its caller may touch (tje0 has no list of its own).
    narrowed = {**basic("tje0", "Tje0"), "SO-AppToken": NARROW_APP}
    assert (await resync(guarded, 1, narrowed)).status == 403
    assert (await resync(guarded, 2, narrowed)).status == 204
    assert (
        await resync(guarded, 1, {**basic("tje0", "Tje0"), "SO-AppToken": APP_TOKEN})
    ).status == 204
    other = int(await db.fetchval("SELECT max(id) FROM batch_tasks WHERE source_connection_id = 2"))

    # Tasks of a connection the caller may not touch can be neither read nor stopped.
    for path in (TASK_INFO, STOP):
        refused = await guarded.client.post(path, json={"Id": other}, headers=LIMITED)
        assert refused.status == 403, path
        assert (await refused.json())["ErrorType"] == "SoSecurityException"
    assert await db.fetchval("SELECT stopped_at FROM batch_tasks WHERE id = $1", other) is None
    assert (await guarded.client.post(TASK_INFO, json={"Id": own}, headers=LIMITED)).status == 200
    listed = await guarded.client.post(LIST, json={}, headers=LIMITED)
    assert {task["Statistics"]["SourceConnectionId"] for task in await listed.json()} == {1}
    everything = await guarded.client.post(LIST, json={}, headers=basic("tje0", "Tje0"))
    assert len(await everything.json()) == 3


async def test_the_dashboard_read_api_shows_only_the_connections_a_caller_may_touch(
    guarded: Service, db: asyncpg.Connection
) -> None:
    admin = basic("tje0", "Tje0")
    task_of = {}
    for source in (1, 2):
        response = await resync(guarded, source, admin)
        assert response.status == 204
        task_of[source] = int(response.headers["X-Batch-Task-Id"])
    for task_id in task_of.values():  # each task wrote to and failed on both ERPs
        for connection in (1, 2):
            await db.execute(
                "INSERT INTO record_outcomes (task_id, internal_key_id, connection_id, status, "
                "error) VALUES ($1, 1, $2, 'failed', 'refused')",
                task_id,
                connection,
            )
            await db.execute(
                "INSERT INTO sync_log (task_id, connection_id, internal_key_id, erp_actor_type, "
                "erp_field, crm_field, target_is_crm, direction, old_value, new_value) "
                "VALUES ($1, $2, 1, 'Customer', 'name', 'name', false, 'to_erp', 'a', 'b')",
                task_id,
                connection,
            )

    async def get(path: str, headers: dict[str, str] = LIMITED) -> Any:
        return await guarded.client.get(f"/api/v1/erpsync{path}", headers=headers)

    listed = await (await get("/tasks")).json()
    assert [task["Id"] for task in listed] == [task_of[1]]
    assert len(await (await get("/tasks", admin)).json()) == 2
    for path in (f"/tasks/{task_of[2]}", f"/tasks/{task_of[2]}/failures"):
        refused = await get(path)
        assert refused.status == 403, path
        assert (await refused.json())["ErrorType"] == "SoSecurityException"
    shown = await (await get(f"/tasks/{task_of[1]}")).json()
    assert [t["ConnectionId"] for t in shown["Targets"]] == [1]
    assert {f["ConnectionId"] for f in shown["Failures"]} == {1}
    failures = await (await get(f"/tasks/{task_of[1]}/failures")).json()
    assert {f["ConnectionId"] for f in failures} == {1}
    assert (await get(f"/tasks/{task_of[1]}/failures?connection=2")).status == 403
    admin_view = await (await get(f"/tasks/{task_of[1]}", admin)).json()
    assert [t["ConnectionId"] for t in admin_view["Targets"]] == [1, 2]

    log = await (await get("/synclog")).json()
    assert len(log) == 2 and {row["ConnectionId"] for row in log} == {1}
    assert (await get("/synclog?connection=2")).status == 403
    assert len(await (await get("/synclog", admin)).json()) == 4

    connections = await (await get("/connections")).json()
    assert [c["Id"] for c in connections] == [1]
    assert {0, 1, 2} < {c["Id"] for c in await (await get("/connections", admin)).json()}


def client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.250, {address}"}  # the proxy appended the last one


async def timed(service: Service, path: str, **kw: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    response = await service.client.post(path, **kw)
    return response, time.perf_counter() - started


async def test_twenty_wrong_passwords_block_that_client_only(guarded: Service) -> None:
    attacker, other, baseline = client("203.0.113.7"), client("203.0.113.8"), client("203.0.113.9")
    good_login = {"Username": "tje0", "Password": "Tje0"}
    before, before_s = await timed(guarded, LOGIN, json=good_login, headers=baseline)
    assert before.status == 204

    statuses, retry_after = [], []
    for i in range(20):
        response = await guarded.client.post(
            LIST, json={}, headers={**basic("tje0", f"wrong{i}"), **attacker}
        )
        statuses.append(response.status)
        body = await response.json()
        assert set(body) == ERROR_KEYS
        if response.status == 429:
            assert body["ErrorType"] == "TooManyRequestsException"
            retry_after.append(int(response.headers["Retry-After"]))
    assert statuses == [401] * 10 + [429] * 10  # auth.login_throttle.client_failures = 10
    assert all(0 < seconds <= 60 for seconds in retry_after)

    # While blocked, the right password does not help that client, by Basic or by login.
    right = await guarded.client.post(LIST, json={}, headers={**basic("tje0", "Tje0"), **attacker})
    assert right.status == 429 and "Retry-After" in right.headers
    login = await guarded.client.post(LOGIN, json=good_login, headers=attacker)
    assert login.status == 429

    # Another client authenticates as before, with the same user name, as fast as before.
    guarded.client.session.cookie_jar.clear()
    after, after_s = await timed(guarded, LOGIN, json=good_login, headers=other)
    assert after.status == 204
    assert after_s < 3 * before_s + 1.0, (before_s, after_s)
    listed = await guarded.client.post(LIST, json={}, headers={**basic("tje0", "Tje0"), **other})
    assert listed.status == 200

    metrics = await (await guarded.client.get("/metrics")).text()
    assert 'erpsync_logins_throttled_total{by="client"} 12.0' in metrics


async def test_a_client_address_header_counts_only_when_configured(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore], rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = access_settings(database, broker_prefix, stores, rsa_key, client_failures=3)
    async with Service(settings, engine=False) as service:
        for i in range(3):
            wrong = {**LIMITED, **basic("limited", "nope"), **client(f"203.0.113.{i}")}
            assert (await service.client.post(LIST, json={}, headers=wrong)).status == 401
        # Not configured: a made-up X-Forwarded-For does not make a new client.
        spoofed = {**LIMITED, **client("203.0.113.99")}
        assert (await service.client.post(LIST, json={}, headers=spoofed)).status == 429
