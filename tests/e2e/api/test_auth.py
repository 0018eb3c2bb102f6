"""Every authentication scheme, online app grants, browser sessions with XSRF, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import jwt
import orjson
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from tests.support.api import (
    APP_TOKEN,
    APP_TOKEN_NO_GRANT,
    AUDIENCE,
    ISSUER,
    TICKET,
    api_settings,
    basic,
    make_jwt,
    rsa_public_pem,
)
from tests.support.service import RESYNC, Service

LIST = "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState"


def forged_hs256(secret: bytes) -> str:
    """An HS256 token keyed with the RSA *public* key (the classic algorithm-confusion attack)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}
    signing_input = (
        b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}))
        + b"."
        + b64(orjson.dumps(claims))
    )
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


async def status_of(service: Service, headers: dict[str, str], path: str = LIST) -> int:
    response = await service.client.post(path, json={}, headers=headers)
    if response.status >= 400:
        body = await response.json()
        assert set(body) == {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
    return response.status


async def test_basic(front_door: Service) -> None:
    assert await status_of(front_door, basic("tje0", "Tje0")) == 200
    for headers in (
        basic("tje0", "wrong"),
        basic("nobody", "Tje0"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic"},
        {"Authorization": "Digest username=tje0"},
        {"Authorization": ""},
        {},
    ):
        response = await front_door.client.post(LIST, json={}, headers=headers)
        assert response.status == 401, headers
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Basic") and "SOTicket" in challenge and "Bearer" in challenge
        assert (await response.json())["ErrorType"] == "SoAuthenticationException"


async def test_soticket_in_any_casing_configured_and_issued(front_door: Service) -> None:
    for scheme in ("SOTicket", "SoTicket", "soticket", "SOTICKET"):
        assert await status_of(front_door, {"Authorization": f"{scheme} {TICKET}"}) == 200
    assert await status_of(front_door, {"Authorization": "SOTicket 7T:wrong"}) == 401
    assert await status_of(front_door, {"Authorization": "SOTicket "}) == 401

    issued = await front_door.client.post("/api/session/ticket", headers=basic("tje0", "Tje0"))
    assert issued.status == 200
    assert issued.headers["Cache-Control"] == "no-store"
    ticket = (await issued.json())["Ticket"]
    assert ticket.startswith("7T:")
    assert await status_of(front_door, {"Authorization": f"SoTicket {ticket}"}) == 200
    anonymous = await front_door.client.post("/api/session/ticket")
    assert anonymous.status == 401


async def test_bearer_jwt(front_door: Service, rsa_key: rsa.RSAPrivateKey) -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    good = [make_jwt(), make_jwt(rsa_key, "RS256", kid="rsa1"), make_jwt(rsa_key, "RS256")]
    for token in good:
        assert await status_of(front_door, bearer(token)) == 200
    bad = {
        "expired": (make_jwt(expires_in=-60), "expired"),
        "wrong audience": (make_jwt(aud="someone-else"), "audience"),
        "wrong issuer": (make_jwt(iss="https://evil.test"), "issuer"),
        "wrong key": (make_jwt("another-secret-0123456789abcdef-xyz"), "signature"),
        "no subject": (make_jwt(sub=None), "sub"),
        "unknown kid": (make_jwt(rsa_key, "RS256", kid="other"), "unknown key"),
        "alg none": (jwt.encode({"sub": "x", "exp": 9999999999}, "", algorithm="none"), ""),
        "algorithm confusion": (forged_hs256(rsa_public_pem(rsa_key).encode()), "signature"),
        "garbage": ("not.a.jwt", "well-formed"),
        "empty": ("", ""),
    }
    for name, (token, mentions) in bad.items():
        response = await front_door.client.post(LIST, json={}, headers=bearer(token))
        body = await response.json()
        assert response.status == 401, name
        assert mentions in body["ErrorMessage"], (name, body)
        assert token not in body["ErrorMessage"] or not token
        assert "Bearer" in response.headers["WWW-Authenticate"]


@pytest.fixture
async def online_service(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore], rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[Service]:
    settings = api_settings(database, broker_prefix, stores, rsa_key, online=True)
    async with Service(settings, engine=False) as service:
        yield service


async def test_online_mode_needs_an_app_with_the_erpsync_grant(
    online_service: Service, db: asyncpg.Connection
) -> None:
    client, user = online_service.client, {"Authorization": f"Bearer {make_jwt()}"}
    body: dict[str, Any] = {"InternalKeyIds": [1]}
    no_app = await client.post(RESYNC, json=body, headers=user)
    no_grant = await client.post(
        RESYNC, json=body, headers={**user, "SO-AppToken": APP_TOKEN_NO_GRANT}
    )
    unknown_app = await client.post(RESYNC, json=body, headers={**user, "SO-AppToken": "nope"})
    granted = await client.post(RESYNC, json=body, headers={**user, "SO-AppToken": APP_TOKEN})
    ticket = await client.post(
        RESYNC, json=body, headers={"Authorization": f"SOTicket {TICKET}", "SO-AppToken": APP_TOKEN}
    )
    basic_online = await client.post(
        RESYNC, json=body, headers={**basic("tje0", "Tje0"), "SO-AppToken": APP_TOKEN}
    )
    batch_agent = await client.post(LIST, json={}, headers=user)  # not Online Restricted

    assert [no_app.status, no_grant.status, unknown_app.status] == [403, 403, 403]
    assert (await no_grant.json())["ErrorType"] == "SoSecurityException"
    assert "Online Restricted" in (await no_app.json())["ErrorMessage"]
    assert [granted.status, ticket.status] == [204, 204]
    assert basic_online.status == 401
    assert "Basic" not in basic_online.headers["WWW-Authenticate"]
    assert batch_agent.status == 200
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 2


def cookie_attributes(response: aiohttp.ClientResponse, name: str) -> str:
    return next(
        header for header in response.headers.getall("Set-Cookie") if header.startswith(name + "=")
    )


async def test_browser_session_with_xsrf_double_submit(
    front_door: Service, db: asyncpg.Connection
) -> None:
    client = front_door.client
    wrong = await client.post("/api/session/login", json={"Username": "tje0", "Password": "x"})
    assert wrong.status == 401 and (await wrong.json())["Error"] is True
    assert (await client.get("/api/session")).status == 401

    login = await client.post("/api/session/login", json={"Username": "tje0", "Password": "Tje0"})
    assert login.status == 204
    session_cookie = cookie_attributes(login, "erpsync_session")
    xsrf_cookie = cookie_attributes(login, "XSRF-TOKEN")
    for attributes in (session_cookie, xsrf_cookie):
        assert "SameSite=Strict" in attributes and "Path=/" in attributes
    assert "HttpOnly" in session_cookie and "HttpOnly" not in xsrf_cookie
    xsrf = login.cookies["XSRF-TOKEN"].value
    session_token = login.cookies["erpsync_session"].value
    # Only digests are stored.
    stored = await db.fetchrow("SELECT * FROM api_sessions")
    assert stored is not None
    assert session_token.encode() not in bytes(stored["token_hash"])
    assert xsrf.encode() not in bytes(stored["xsrf_hash"])

    me = await client.get("/api/session")
    assert me.status == 200 and await me.json() == {"User": "tje0"}
    body = {"InternalKeyIds": [1]}
    missing = await client.post(RESYNC, json=body)
    tampered = xsrf[:-1] + ("B" if xsrf.endswith("A") else "A")  # never the token itself
    wrong_token = await client.post(RESYNC, json=body, headers={"X-XSRF-TOKEN": tampered})
    right = await client.post(RESYNC, json=body, headers={"X-XSRF-TOKEN": xsrf})
    cross_site = await client.post(
        RESYNC, json=body, headers={"X-XSRF-TOKEN": xsrf, "Sec-Fetch-Site": "cross-site"}
    )
    assert [missing.status, wrong_token.status, right.status] == [401, 401, 204]
    assert cross_site.status == 403
    assert "X-XSRF-TOKEN" in (await missing.json())["ErrorMessage"]

    no_xsrf_logout = await client.post("/api/session/logout")
    assert no_xsrf_logout.status == 401
    logout = await client.post("/api/session/logout", headers={"X-XSRF-TOKEN": xsrf})
    assert logout.status == 204
    # The old cookie and token no longer work, even when replayed by hand.
    client.session.cookie_jar.clear()
    replay = {"Cookie": f"erpsync_session={session_token}", "X-XSRF-TOKEN": xsrf}
    assert (await client.post(RESYNC, json=body, headers=replay)).status == 401
    assert (await client.get("/api/session", headers=replay)).status == 401
    assert await db.fetchval("SELECT count(*) FROM api_sessions") == 0


async def test_sessions_work_across_api_processes(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    settings = api_settings(database, broker_prefix, stores, rsa_key)
    async with Service(settings, engine=False) as one, Service(settings, engine=False) as two:
        login = await one.client.post(
            "/api/session/login", json={"username": "tje0", "password": "Tje0"}
        )
        assert login.status == 204
        token = login.cookies["erpsync_session"].value
        xsrf = login.cookies["XSRF-TOKEN"].value
        headers = {"Cookie": f"erpsync_session={token}", "X-XSRF-TOKEN": xsrf}
        response = await two.client.post(LIST, json={}, headers=headers)
        assert response.status == 200
        assert (await two.client.post("/api/session/logout", headers=headers)).status == 204
        assert (await one.client.get("/api/session", headers=headers)).status == 401


async def test_secrets_never_reach_logs_or_error_bodies(front_door: Service) -> None:
    password, token = "S3cret-Passw0rd!", make_jwt(aud="other")
    with structlog.testing.capture_logs() as logs:
        responses = [
            await front_door.client.post(RESYNC, json={}, headers=basic("tje0", password)),
            await front_door.client.post(
                RESYNC, json={}, headers={"Authorization": f"Bearer {token}"}
            ),
            await front_door.client.post(
                RESYNC, json={}, headers={"Authorization": "SOTicket 7T:secret-ticket"}
            ),
            await front_door.client.post(
                "/api/session/login", json={"Username": "tje0", "Password": password}
            ),
        ]
        bodies = [await r.text() for r in responses]
    text = repr(logs) + "".join(bodies)
    for secret in (password, token, "secret-ticket", AUDIENCE + "x"):
        assert secret not in text
    assert all(r.status == 401 for r in responses)
