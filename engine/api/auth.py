"""Who is calling: Basic, SOTicket, Bearer (JWT), or a browser session with its XSRF token.

Also enforces the "Online Restricted" rule: in online mode every ErpSync agent call needs an
``SO-AppToken`` naming a registered application that holds the ``ErpSync`` grant (else 403);
scopes the caller to the connections its user entry and application allow (403 for others);
and throttles failed password checks (429, see :mod:`engine.api.throttle`).
Secrets (passwords, tickets, tokens, cookies) are compared as digests in constant time and
never logged or echoed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import structlog
from aiohttp import web

from engine.api.errors import ApiError
from engine.api.passwords import hash_password, verify_password
from engine.api.throttle import LoginThrottle, client_address
from engine.observability.metrics import Metrics
from engine.settings import AuthSettings, JwtSettings
from engine.store import sessions as session_store

log = structlog.get_logger(__name__)

SESSION_COOKIE = "erpsync_session"
XSRF_COOKIE = "XSRF-TOKEN"
XSRF_HEADER = "X-XSRF-TOKEN"
APP_TOKEN_HEADER = "SO-AppToken"  # noqa: S105 - a header name
ERPSYNC_GRANT = "erpsync"
ERPSYNC_PREFIX = "/api/v1/Agents/ErpSync/"
API_PREFIX = "/api/"  # what needs credentials
# These check credentials themselves (login takes a password; the others need the cookie).
SELF_AUTHENTICATED = frozenset({"/api/session/login", "/api/session/logout", "/api/session"})
_MAX_CREDENTIAL = 8192
_CACHE_SIZE = 4096
_CACHE_TTL = 300.0


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a user name, the scheme that proved it, and the connections it
    may touch (None: all)."""

    user: str
    scheme: str  # "basic" | "ticket" | "bearer" | "session"
    connections: frozenset[int] | None = None

    def may_touch(self, connection_id: int) -> bool:
        return self.connections is None or connection_id in self.connections


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """A registered application (``SO-AppToken``): its grants and allowed connections."""

    name: str
    grants: frozenset[str]
    connections: frozenset[int] | None


def require_connection(principal: Principal, connection_id: int, action: str) -> None:
    """403 (SoSecurityException) unless ``principal`` may touch ``connection_id``."""
    if not principal.may_touch(connection_id):
        raise ApiError(
            403,
            f"User {principal.user!r} (or the calling application) may not {action} "
            f"connection {connection_id}",
        )


PRINCIPAL = web.RequestKey("principal", Principal)
USER_KEY = web.RequestKey("user", str)


def digest(secret: str) -> bytes:
    """The stored form of a session token, XSRF token, ticket or app token (SHA-256)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _hex_digest(value: str) -> bytes:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return b""  # a malformed configured digest matches nothing


def _find(candidates: list[tuple[bytes, Any]], secret: str) -> Any:
    """Constant-time search of configured digests (every entry is compared)."""
    wanted = digest(secret)
    found = None
    for stored, value in candidates:
        if hmac.compare_digest(stored, wanted):
            found = value
    return found


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """The session a request's cookie refers to."""

    user: str
    token_hash: bytes
    xsrf_hash: bytes | None

    def xsrf_matches(self, header: str | None) -> bool:
        """Double-submit check in constant time."""
        if not header or self.xsrf_hash is None:
            return False
        return hmac.compare_digest(digest(header), self.xsrf_hash)


class Authenticator:
    """Checks credentials; Basic checks are cached so PBKDF2 runs once per credential."""

    def __init__(
        self,
        settings: AuthSettings,
        pool: Callable[[], asyncpg.Pool],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pool()``: the database pool holding sessions and issued tickets, once started."""
        self.online = settings.online
        self._pool = pool
        self._metrics = metrics
        self._users = {u.name: u.password_hash.get_secret_value() for u in settings.users}
        self._user_connections = {
            u.name: frozenset(u.connections) for u in settings.users if u.connections is not None
        }
        self._tickets = [
            (_hex_digest(t.ticket_sha256.get_secret_value()), t.user) for t in settings.tickets
        ]
        self._apps = [
            (
                _hex_digest(a.token_sha256.get_secret_value()),
                RegisteredApp(
                    a.name,
                    frozenset(g.lower() for g in a.grants),
                    None if a.connections is None else frozenset(a.connections),
                ),
            )
            for a in settings.apps
        ]
        self._throttle = LoginThrottle(settings.login_throttle, clock)
        self._client_header = settings.login_throttle.client_header
        self._jwt = settings.jwt
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._checking: dict[tuple[bytes, str], asyncio.Future[str | None]] = {}
        # Verified against when the user is unknown, so timing does not reveal user names.
        self._dummy_hash: str | None = None

    @property
    def schemes(self) -> list[str]:
        """Schemes offered in ``WWW-Authenticate``."""
        offered = [] if self.online else ['Basic realm="erpsync", charset="UTF-8"']
        offered.append('SOTicket realm="erpsync"')
        if self._jwt.keys:
            offered.append('Bearer realm="erpsync"')
        return offered

    async def prepare(self) -> None:
        """Compute the dummy hash off the event loop (called once at start-up)."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))

    def client(self, request: web.Request) -> str:
        """The calling client's address (the trusted proxy's header only when configured)."""
        header = request.headers.get(self._client_header) if self._client_header else None
        return client_address(request.remote, header)

    def _refuse_if_throttled(self, client: str, user: str | None) -> None:
        """429 without looking at the password while the client (or user) has failed too often."""
        throttled = self._throttle.retry_after(client, user)
        if throttled is None:
            return
        what, seconds = throttled
        self._metrics.login_throttled(what)
        log.debug("login throttled", client=client, by=what)
        subject = "from this client" if what == "client" else "for this user name"
        raise ApiError(
            429,
            f"Too many failed logins {subject}; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )

    async def check_password(self, user: str, password: str, client: str) -> bool:
        """Verify a user's password (constant time; unknown users cost the same); 429 while
        ``client`` or ``user`` is throttled."""
        self._refuse_if_throttled(client, user)
        # Counted as failed until it succeeds: concurrent guesses cannot all pass the check above.
        self._throttle.failed(client, user)
        encoded = self._users.get(user)
        if encoded is None:
            await self.prepare()
        ok = await asyncio.to_thread(verify_password, password, encoded or self._dummy_hash or "")
        ok = ok and encoded is not None
        if ok:
            self._throttle.succeeded(client, user)
        return ok

    def scope(self, principal: Principal, app: RegisteredApp | None) -> Principal:
        """The principal with the connections its user entry and its application allow."""
        allowed = self._user_connections.get(principal.user)
        if app is not None and app.connections is not None:
            allowed = app.connections if allowed is None else allowed & app.connections
        if allowed is None:
            return principal
        return Principal(principal.user, principal.scheme, allowed)

    async def basic(self, value: str, client: str) -> str | None:
        """Verify a Basic credential (the part after the scheme); return the user name.

        A throttled client is refused even with a cached credential; a throttled user name only
        when its password would have to be checked (a cached credential was verified already).
        """
        self._refuse_if_throttled(client, None)
        # Keyed BLAKE2b is a MAC, as HMAC-SHA256 was, in a third of the time (no OpenSSL
        # digest lookup per call); the fingerprint only keys this process's cache.
        fingerprint = hashlib.blake2b(value.encode(), key=self._secret, digest_size=32).digest()
        cached = self._cache.get(fingerprint)
        if cached is not None and cached[1] > time.monotonic():
            self._cache.move_to_end(fingerprint)
            return cached[0]
        # Concurrent requests with the same credential from the same client share one check.
        key = (fingerprint, client)
        check = self._checking.get(key)
        if check is None:
            check = asyncio.ensure_future(self._check_basic(value, fingerprint, client))
            self._checking[key] = check
            check.add_done_callback(lambda _: self._checking.pop(key, None))
        return await asyncio.shield(check)

    async def _check_basic(self, value: str, fingerprint: bytes, client: str) -> str | None:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep or not await self.check_password(user, password, client):
            return None
        self._cache[fingerprint] = (user, time.monotonic() + _CACHE_TTL)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return user

    async def ticket(self, request: web.Request, value: str) -> str | None:
        """A configured ticket, or one issued by ``POST /api/session/ticket`` and not expired."""
        value = value.strip()
        user: str | None = _find(self._tickets, value)
        if user is not None:
            return user
        found = await session_store.find(self._pool(), "ticket", digest(value))
        return None if found is None else found.user

    async def session(self, request: web.Request) -> BrowserSession | None:
        """The live session named by the request's session cookie, if any."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        token_hash = digest(token)
        found = await session_store.find(self._pool(), "session", token_hash)
        if found is None:
            return None
        return BrowserSession(found.user, token_hash, found.xsrf_hash)

    def bearer(self, token: str) -> str:
        """Verify a JWT (signature, ``exp``, issuer, audience); the user claim, or 401."""
        return verify_jwt(self._jwt, token.strip())

    def app(self, token: str | None) -> RegisteredApp | None:
        """The registered application with this token; None when unknown."""
        if not token:
            return None
        found: RegisteredApp | None = _find(self._apps, token.strip())
        return found

    def needs_credentials(self, path: str) -> bool:
        """Every path under ``/api/`` but the session routes (they check credentials
        themselves)."""
        return path.startswith(API_PREFIX) and path not in SELF_AUTHENTICATED

    async def principal(self, request: web.Request) -> Principal:
        """Who is calling (401, 403 or 429 as :class:`ApiError`), scoped to the connections
        its user entry and its application allow; the Online Restricted rule applied."""
        principal = await self._authenticate(request)
        app = self.app(request.headers.get(APP_TOKEN_HEADER))
        restricted = self.online and request.path.startswith(ERPSYNC_PREFIX)
        if restricted and (app is None or ERPSYNC_GRANT not in app.grants):
            log.warning("online restricted call refused", user=principal.user)
            raise ApiError(
                403,
                "The ErpSync agent is Online Restricted: the calling application "
                f"({APP_TOKEN_HEADER}) must be registered with the ErpSync grant",
            )
        return self.scope(principal, app)

    def _unauthorized(self, message: str) -> ApiError:
        return ApiError(401, message, headers={"WWW-Authenticate": ", ".join(self.schemes)})

    async def _authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if header is None:
            session = await self.session(request)
            if session is None:
                raise self._unauthorized("Authorization header missing")
            if not session.xsrf_matches(request.headers.get(XSRF_HEADER)):
                raise self._unauthorized(f"Session requests need a matching {XSRF_HEADER} header")
            # Defence in depth (Fetch Metadata): browsers mark requests from other sites.
            if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
                raise ApiError(403, "Cross-site requests may not use the browser session")
            return Principal(session.user, "session")
        if len(header) > _MAX_CREDENTIAL:
            raise self._unauthorized("Authorization header is too long")
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            if self.online:
                raise self._unauthorized("Basic authentication is not available in online mode")
            user = await self.basic(value, self.client(request))
            if user is None:
                raise self._unauthorized("Invalid user name or password")
            return Principal(user, "basic")
        if scheme == "soticket":
            user = await self.ticket(request, value)
            if user is None:
                raise self._unauthorized("Invalid or expired ticket")
            return Principal(user, "ticket")
        if scheme == "bearer":
            return Principal(self.bearer(value), "bearer")
        # The scheme is not echoed: a misconfigured client may have put a secret there.
        raise self._unauthorized("Unsupported authorization scheme; use Basic, SOTicket or Bearer")


def verify_jwt(settings: JwtSettings, token: str) -> str:
    """Verify ``token`` with PyJWT against the configured keys; return the user claim."""
    if not settings.keys:
        raise _bearer_error("Bearer tokens are not accepted here (no keys configured)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _bearer_error("Bearer token is not a well-formed JWT") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    candidates = [
        k
        for k in settings.keys
        if k.algorithm == algorithm and (k.kid is None or kid is None or k.kid == kid)
    ]
    if not candidates:
        raise _bearer_error("Bearer token is signed with an unknown key or algorithm")
    required = ["exp", settings.user_claim]
    if settings.issuer is not None:
        required.append("iss")
    if settings.audience is not None:
        required.append("aud")
    for key in candidates:
        try:
            claims = jwt.decode(
                token,
                key.key.get_secret_value(),
                algorithms=[key.algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": required, "verify_aud": settings.audience is not None},
            )
        except jwt.InvalidSignatureError:
            continue  # try the next key with this algorithm
        except jwt.ExpiredSignatureError:
            raise _bearer_error("Bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise _bearer_error("Bearer token is not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise _bearer_error("Bearer token comes from an untrusted issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _bearer_error(f"Bearer token lacks the {exc.claim!r} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _bearer_error("Bearer token is invalid") from None
        user = claims.get(settings.user_claim)
        if not isinstance(user, str) or not user:
            raise _bearer_error(f"Bearer token's {settings.user_claim!r} claim is not a name")
        return user
    raise _bearer_error("Bearer token signature does not verify")


def _bearer_error(message: str) -> ApiError:
    return ApiError(
        401,
        message,
        headers={"WWW-Authenticate": 'Bearer realm="erpsync", error="invalid_token"'},
    )
