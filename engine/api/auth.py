"""Authentication of API calls (Basic with salted hashes; more schemes in docs/api.md)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.errors import ApiError, Handler
from engine.api.passwords import hash_password, verify_password
from engine.settings import AuthSettings

REALM = 'Basic realm="erpsync", charset="UTF-8"'
USER_KEY = web.RequestKey("user", str)

_CACHE_SIZE = 4096
_CACHE_TTL = 300.0


class Authenticator:
    """Checks credentials; successful checks are cached so PBKDF2 runs once per credential."""

    def __init__(self, settings: AuthSettings) -> None:
        self._users = {u.name: u.password_hash.get_secret_value() for u in settings.users}
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        # Verified against when the user is unknown, so timing does not reveal user names.
        self._dummy_hash = hash_password(secrets.token_hex(8), iterations=600_000)

    async def basic(self, value: str) -> str | None:
        """Verify a Basic credential (the part after the scheme); return the user name."""
        fingerprint = hmac.new(self._secret, value.encode(), hashlib.sha256).digest()
        cached = self._cache.get(fingerprint)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            self._cache.move_to_end(fingerprint)
            return cached[0]
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        encoded = self._users.get(user)
        ok = await asyncio.to_thread(verify_password, password, encoded or self._dummy_hash)
        if not ok or encoded is None:
            return None
        self._cache[fingerprint] = (user, now + _CACHE_TTL)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return user


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": REALM})


def auth_middleware(authenticator: Authenticator, prefix: str = "/api/") -> Middleware:
    """Require valid credentials on every path under ``prefix``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(prefix):
            return await handler(request)
        header = request.headers.get("Authorization")
        if not header:
            raise _unauthorized("Authorization header missing")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise _unauthorized(f"Unsupported authorization scheme {scheme[:20]!r}")
        user = await authenticator.basic(value)
        if user is None:
            raise _unauthorized("Invalid user name or password")
        request[USER_KEY] = user
        return await handler(request)

    return middleware
