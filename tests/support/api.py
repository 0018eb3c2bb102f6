"""Front-door credentials and settings: every auth scheme (Basic, tickets, JWT, app tokens)."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from engine.settings import AuthSettings, ConnectionSettings, Settings
from tests.support.settings import PASSWORD_HASH_TJE0, memory_settings

HS_SECRET = "test-only-hmac-secret-0123456789abcdef"  # demo value for tests
ISSUER, AUDIENCE = "https://sod.superoffice.test", "erpsync-test"
TICKET = "7T:dGVzdC10aWNrZXQ="
APP_TOKEN, APP_TOKEN_NO_GRANT = "app-secret-with-grant", "app-secret-without-grant"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def rsa_public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def make_jwt(
    key: Any = HS_SECRET,
    algorithm: str = "HS256",
    *,
    sub: str | None = "ada",
    iss: str = ISSUER,
    aud: str = AUDIENCE,
    expires_in: float = 300,
    kid: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": iss, "aud": aud, "iat": now, "exp": now + int(expires_in)}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def auth_settings(rsa_key: rsa.RSAPrivateKey, *, online: bool = False) -> AuthSettings:
    return AuthSettings.model_validate(
        {
            "users": [{"name": "tje0", "password_hash": PASSWORD_HASH_TJE0}],
            "tickets": [{"user": "ticket-user", "ticket_sha256": sha256_hex(TICKET)}],
            "jwt": {
                "keys": [
                    {"algorithm": "HS256", "key": HS_SECRET},
                    {"kid": "rsa1", "algorithm": "RS256", "key": rsa_public_pem(rsa_key)},
                ],
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "leeway": 0,
            },
            "online": online,
            "apps": [
                {"name": "erp-app", "token_sha256": sha256_hex(APP_TOKEN), "grants": ["ErpSync"]},
                {"name": "other-app", "token_sha256": sha256_hex(APP_TOKEN_NO_GRANT)},
            ],
        }
    )


def api_settings(
    database: str,
    prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    *,
    online: bool = False,
    **kw: Any,
) -> Settings:
    base = memory_settings(database, prefix, {c: s.name for c, s in stores.items()}, **kw)
    # Connection 589 exists so that the spec's sample request (ErpConnectionId 589) is valid.
    sample = ConnectionSettings(
        id=589,
        name="Sample ERP",
        connector="memory",
        settings={"store": stores[2].name, "actor_types": {"Customer": ["company"]}},
    )
    return base.model_copy(
        update={
            "auth": auth_settings(rsa_key, online=online),
            "connections": [*base.connections, sample],
        }
    )
