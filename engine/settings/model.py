"""The configuration as data: one frozen pydantic model per section, validated once.

:mod:`engine.settings.load` reads it from TOML and the environment; the field mappings of the
connections are :mod:`engine.mapping`'s.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from engine.mapping.model import ActorTypeMapping


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    """HTTP front door."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    shutdown_timeout: float = Field(20.0, gt=0, description="Seconds to drain on shutdown.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger bodies get 413.")
    max_internal_key_ids: int = Field(10_000, ge=1, description="More ids get 413.")
    batch_task_inserts: bool = Field(
        True,
        description="Insert the task rows of concurrent ForceResyncBatchTask requests together: "
        "one INSERT and one commit per batch (a batch is whatever arrived while the previous "
        "one was being written; no added delay).",
    )
    task_insert_batch_max: int = Field(
        256, ge=1, le=10_000, description="Most task rows in one batched INSERT."
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="`erpsync api` processes sharing the port (SO_REUSEPORT), each with its own "
        "pool and broker connection; needs a fixed port. `--processes` overrides it.",
    )
    uvloop: bool = Field(
        True,
        description="Run api, worker and serve on uvloop's event loop (faster sockets); "
        "false: the standard asyncio loop.",
    )
    gc_freeze: bool = Field(
        True,
        description="Once started, move every live object into Python's permanent GC "
        "generation (`gc.freeze()`), so full collections scan only what requests and "
        "deliveries allocate: shorter GC pauses on a busy front door.",
    )
    sync_max_keys: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Most records one synchronous ForceResync* call (ForceResync, "
        "ForceResyncNoBlankValues, ForceResyncExternal, ForceResyncExternalNoBlankValues) may "
        "cover; more (also a 'resync all' over more linked records) get 413 at once, telling "
        "the caller to use ForceResyncBatchTask.",
    )
    sync_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a synchronous ForceResync* call waits for its task; then it "
        "answers IsOk false, ErrorCode ResyncTimeout and the task id (the task keeps running; "
        "follow it with the Batch agent).",
    )
    sync_poll_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between reads of a waited-for task, in case its PostgreSQL "
        "notification (LISTEN erpsync_task_finished) is missed.",
    )


class DatabaseSettings(_Model):
    """PostgreSQL holding erpsync's state."""

    url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/erpsync")
    pool_min_size: int = Field(2, ge=1)
    pool_max_size: int = Field(10, ge=1)
    connect_timeout: float = Field(5.0, gt=0)
    idle_in_transaction_timeout: float = Field(
        60.0,
        ge=0,
        description="Seconds PostgreSQL lets one of the service's sessions sit idle inside a "
        "transaction before ending it (PostgreSQL's idle_in_transaction_session_timeout; 0: "
        "never). A frozen or paused process otherwise keeps its row locks, and every other "
        "worker and the sweeper wait on them, until its TCP connection dies. Keep it above "
        "broker.publish_timeout (the task.finished relay publishes inside its transaction).",
    )


class BrokerSettings(_Model):
    """RabbitMQ."""

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    prefix: str = Field(
        "erpsync", pattern=r"^[A-Za-z0-9_.\-]{1,100}$", description="Exchange/queue name prefix."
    )
    publish_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a confirm.")
    publisher_channels: int = Field(
        2,
        ge=1,
        le=16,
        description="Confirm channels the publisher spreads publishes over (the broker works "
        "on each channel in its own process, so 2 use a second core).",
    )
    prefetch: int = Field(8, ge=1, le=1000, description="Unacked deliveries per consumer.")
    small_lane_prefetch: int = Field(
        8,
        ge=1,
        le=1000,
        description="Unacked planned chunks of the small-task lane per worker (its own channel: "
        "small tasks keep their slots while a large task fills the others; each target's small "
        "push queue has that target's push_prefetch).",
    )
    delivery_limit: int = Field(10, ge=1, description="Deliveries before dead-lettering.")
    connect_timeout: float = Field(5.0, gt=0)


class EngineSettings(_Model):
    """The workers."""

    chunk_size: int = Field(200, ge=1, le=10_000, description="Internal keys per chunk message.")
    key_page_size: int = Field(5_000, ge=1, description="Keys read per page when planning.")
    small_task_records: int = Field(
        1_000,
        ge=0,
        description="Tasks of at most this many records run in the small-task lane (their own "
        "queue, consumed with its own prefetch), never queued behind a large task's chunks; "
        "0: every task in the bulk lane.",
    )
    heartbeat_interval: float = Field(
        15.0, gt=0, description="Seconds between heartbeats of the tasks a worker is running."
    )
    stale_after: float = Field(
        120.0, gt=0, description="A Started task without a heartbeat this long is picked up again."
    )
    sweep_interval: float = Field(
        5.0, gt=0, description="Seconds between sweeps for due retries and stale tasks."
    )
    max_starts: int = Field(
        10, ge=1, description="A stale task started this often already fails instead."
    )

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> EngineSettings:
        if self.stale_after <= 2 * self.heartbeat_interval:
            raise ValueError("stale_after must be more than twice heartbeat_interval")
        return self


class SyncSettings(_Model):
    """Continuous (incremental) sync, run by the worker processes (docs/engine.md)."""

    enabled: bool = Field(
        False, description="Run the incremental sync scheduler in the worker processes."
    )
    initial_status: Literal["running", "stopped"] = Field(
        "stopped",
        description="Engine status stored on first start; later ChangeEngineStatus decides.",
    )
    interval: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds between runs per connection, stored on first start; later "
        "ChangeEngineInterval decides.",
    )
    page_size: int = Field(500, ge=1, le=10_000, description="Changed actors read per page.")
    tick: float = Field(
        1.0, gt=0, le=60, description="Seconds between looks for due runs in each worker."
    )
    run_lease: float = Field(
        120.0,
        gt=0,
        description="Seconds a claimed run is held without progress before another worker "
        "may take it (renewed per page).",
    )
    overlap: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Seconds before the watermark each run reads again, on connections whose "
        "connector is not horizon-safe (a change committed late, stamped behind the watermark, "
        "is found there); only where positions read as times (docs/engine.md). A connection's "
        "sync_overlap overrides it.",
    )
    horizon_warn: float = Field(
        300.0,
        gt=0,
        description="Seconds a connector's changed_since horizon (the start of the oldest change "
        "still in flight, e.g. a long-open transaction) may be behind now before a run logs a "
        "warning naming the connection.",
    )


class RetrySettings(_Model):
    """Retries of transient failures toward one connection: in process, then delayed."""

    attempts: int = Field(3, ge=1, le=20, description="Calls per operation within one chunk run.")
    base_delay: float = Field(0.2, ge=0, description="First in-process backoff cap, seconds.")
    max_delay: float = Field(5.0, ge=0, description="Largest in-process backoff, seconds.")
    delayed_attempts: int = Field(
        5, ge=0, le=100, description="Delayed retries of a failed record before it fails for good."
    )
    delayed_base: float = Field(5.0, ge=0, description="First delayed-retry backoff cap, seconds.")
    delayed_max: float = Field(300.0, ge=0, description="Largest delayed-retry backoff, seconds.")


class BreakerSettings(_Model):
    """The circuit breaker toward one connection (per process)."""

    failure_threshold: int = Field(
        5, ge=1, description="Consecutive failed calls that open the breaker."
    )
    cooldown: float = Field(30.0, gt=0, description="Seconds the open breaker rejects calls.")
    half_open_probes: int = Field(
        1, ge=1, description="Calls let through after the cool-down; all must succeed to close."
    )


class WorkerSettings(_Model):
    """``erpsync worker`` processes: their health port and how they stop."""

    host: str | None = Field(None, description="Health endpoint host; server.host when unset.")
    port: int = Field(8081, ge=0, le=65535, description="Health endpoint port (0 = any free port).")
    drain_timeout: float = Field(
        15.0, gt=0, description="Seconds in-flight deliveries may take after SIGTERM/SIGINT."
    )
    consumer_check_interval: float = Field(
        5.0, gt=0, description="Seconds between checks that the consumers are attached."
    )


LogLevel = Literal["debug", "info", "warning", "error"]


class LoggingSettings(_Model):
    """structlog output."""

    level: LogLevel = "info"
    format: Literal["auto", "console", "json"] = "auto"
    levels: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="Levels of single loggers, by dotted name (a name covers its children), "
        'overriding `level`, e.g. `{ "engine.api.routes" = "warning" }` drops the '
        '`resync queued` line of every accepted request, `{ "engine.sync" = "debug" }` '
        "shows the engine's debug lines alone. In the environment: `name=level` pairs separated "
        "by commas (`engine.api.routes=warning,engine.sync=debug`).",
    )

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_from_text(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, level = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not name=level")
            pairs[name.strip()] = level.strip().lower()
        return pairs

    @model_validator(mode="after")
    def _logger_names(self) -> LoggingSettings:
        for name in self.levels:
            if not name or any(not part for part in name.split(".")):
                raise ValueError(f"levels: {name!r} is not a dotted logger name")
        return self


_CONNECTIONS_DOC = (
    "Connection ids (0 is the CRM) this {who} may resync and whose tasks it may read or stop; "
    "unset: every connection (SuperOffice's AllAccess)."
)


class User(_Model):
    """A Basic-auth user; ``password_hash`` comes from ``erpsync hash-password``."""

    name: str = Field(min_length=1)
    password_hash: SecretStr
    connections: list[int] | None = Field(
        None, description=_CONNECTIONS_DOC.format(who="user (by name, whatever the scheme)")
    )


class Ticket(_Model):
    """A configured SOTicket: the SHA-256 (hex) of the ticket string and the user it stands for."""

    user: str = Field(min_length=1, description="The user the ticket authenticates as.")
    ticket_sha256: SecretStr = Field(
        description="sha256 hex of the ticket (`erpsync` never stores it)."
    )


class JwtKey(_Model):
    """A key that may sign Bearer tokens: an HMAC secret or a PEM public key."""

    kid: str | None = Field(None, description="Matched against the token's `kid` header when set.")
    algorithm: Literal[
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"
    ] = Field("RS256", description="The signature algorithm this key verifies.")
    key: SecretStr = Field(description="HMAC secret, or a PEM-encoded public key.")


class JwtSettings(_Model):
    """Bearer tokens (JWT): accepted only when ``keys`` is not empty."""

    keys: list[JwtKey] = Field(default_factory=list, description="Keys that may sign tokens.")
    issuer: str | None = Field(None, description="Required `iss`; unset means any issuer.")
    audience: str | None = Field(None, description="Required `aud`; unset means no `aud` check.")
    leeway: float = Field(30.0, ge=0, le=600, description="Clock skew allowed, in seconds.")
    user_claim: str = Field("sub", min_length=1, description="Claim naming the user.")


class App(_Model):
    """A registered application (``SO-AppToken``) and the grants it holds."""

    name: str = Field(min_length=1, description="The application's name (shown in logs).")
    token_sha256: SecretStr = Field(description="sha256 hex of the application token.")
    grants: list[str] = Field(default_factory=list, description='e.g. ["ErpSync"].')
    connections: list[int] | None = Field(
        None,
        description=_CONNECTIONS_DOC.format(who="application")
        + " A request carrying its SO-AppToken gets what both the user and the app may touch.",
    )


class LoginThrottleSettings(_Model):
    """Failed password checks (Basic, dashboard login) per client and per user name."""

    client_failures: int = Field(
        10,
        ge=1,
        description="Failed password checks from one client within `window` after which that "
        "client gets 429 (the password is not checked) until the oldest failure ages out.",
    )
    user_failures: int = Field(
        50,
        ge=0,
        description="Failed password checks for one user name within `window`, from any client, "
        "after which unverified password checks for that name get 429 (0: no per-user limit). "
        "Higher than client_failures, so that one client cannot lock a user out.",
    )
    window: float = Field(60.0, gt=0, le=86_400, description="Sliding window, seconds.")
    max_tracked: int = Field(
        10_000,
        ge=100,
        description="Clients and user names tracked at most, per api process (least recently "
        "failed forgotten first).",
    )
    client_header: str | None = Field(
        None,
        min_length=1,
        description="Header a trusted reverse proxy sets to the client address (e.g. "
        "X-Forwarded-For; its last entry is used). Unset: the TCP peer address. Set it only "
        "when every request comes through that proxy: clients can write the header themselves.",
    )


class AuthSettings(_Model):
    """Who may call the API."""

    users: list[User] = Field(default_factory=list)
    tickets: list[Ticket] = Field(
        default_factory=list, description="Configured SOTickets (hashed) and their users."
    )
    jwt: JwtSettings = Field(
        default_factory=JwtSettings, description="Bearer (JWT) verification; off without keys."
    )
    online: bool = Field(
        False,
        description="Online mode: no Basic; ErpSync calls need an SO-AppToken with the grant.",
    )
    apps: list[App] = Field(
        default_factory=list, description="Registered applications (SO-AppToken) and grants."
    )
    login_throttle: LoginThrottleSettings = Field(
        default_factory=LoginThrottleSettings,
        description="Throttling of failed password checks (429 with Retry-After).",
    )


class SessionSettings(_Model):
    """Browser sessions (cookie + X-XSRF-TOKEN), stored hashed in PostgreSQL."""

    ttl: float = Field(8 * 3600.0, gt=0, description="Seconds a session lives after login.")
    secure_cookies: bool = Field(False, description="Set the Secure flag (serve over HTTPS).")
    ticket_ttl: float = Field(
        3600.0, gt=0, description="Seconds a ticket issued by /api/session/ticket is valid."
    )
    idempotency_ttl: float = Field(
        24 * 3600.0, gt=0, description="Seconds an Idempotency-Key is remembered."
    )


class ConnectionSettings(_Model):
    """A connected system: the connector, its settings, and the engine's limits toward it."""

    id: int
    name: str = Field(min_length=1)
    connector: str = Field(min_length=1, description="Entry-point name or 'module:Class'.")
    settings: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(8, ge=1, le=1000, description="Concurrent calls, per process.")
    batch_size: int = Field(100, ge=1, le=10_000, description="Actors per connector call.")
    push_prefetch: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Push units of this target a worker holds at once (its push queue's "
        "prefetch); none: 2 x ceil(concurrency / ceil(engine.chunk_size / batch_size)), "
        "at least 2.",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds per connector call.")
    rate_limit: float | None = Field(
        None, gt=0, description="Connector calls per second, per process (none: unlimited)."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Retries of transient connector errors."
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings, description="The circuit breaker toward this connection."
    )
    sync_overlap: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="Seconds before the watermark the continuous sync reads again on this "
        "connection; none: 0 when its connector is horizon-safe, else sync.overlap.",
    )
    actor_types: list[ActorTypeMapping] = Field(default_factory=list)

    def mapping_for(self, erp_actor_type: str) -> ActorTypeMapping | None:
        for mapping in self.actor_types:
            if mapping.erp == erp_actor_type:
                return mapping
        return None


class WebhookSettings(_Model):
    """One receiver of task.finished events over HTTP (POST, HMAC-SHA256 signed)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="Identifies the webhook in its deliveries (stored; keep it when editing).",
    )
    url: SecretStr = Field(
        description="http(s) URL the event is POSTed to (secret: it may carry a token)."
    )
    secret: SecretStr = Field(
        description="HMAC-SHA256 key signing each delivery (at least 16 characters)."
    )
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds per POST.")
    max_attempts: int = Field(
        10, ge=1, le=100, description="POSTs of one event before it is given up."
    )
    backoff_base: float = Field(
        1.0, gt=0, description="First retry's backoff cap, seconds (full jitter, doubling)."
    )
    backoff_max: float = Field(300.0, gt=0, description="Largest backoff cap, seconds.")

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        parts = urlsplit(self.url.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        if len(self.secret.get_secret_value()) < 16:
            raise ValueError("secret must be at least 16 characters")
        return self


class NotificationSettings(_Model):
    """task.finished events: on RabbitMQ always, to webhooks when configured."""

    first_failures: int = Field(
        10, ge=0, le=1000, description="Failed records listed in an event (FirstFailures)."
    )
    relay_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between each worker's passes over the outbox (events, webhooks) "
        "at the most: a pass also runs as soon as a task finishes (PostgreSQL LISTEN).",
    )
    events_kept: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Seconds a task.finished event is kept after the broker confirmed it (kept "
        "longer while a webhook delivery of it is not delivered).",
    )
    deliveries_kept: float = Field(
        30 * 24 * 3600.0,
        gt=0,
        description="Seconds a webhook delivery is kept once delivered or given up (a given-up one "
        "can be resent until then).",
    )
    webhooks: list[WebhookSettings] = Field(
        default_factory=list, description="Webhooks receiving every task.finished event."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationSettings:
        names = [w.name for w in self.webhooks]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"webhooks[{i}].name {name!r} is used twice")
        return self


class Settings(_Model):
    """The whole configuration."""

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    engine: EngineSettings = EngineSettings()
    worker: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()
    sessions: SessionSettings = SessionSettings()
    notifications: NotificationSettings = NotificationSettings()
    sync: SyncSettings = SyncSettings()
    crm: ConnectionSettings
    connections: list[ConnectionSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_ids(self) -> Settings:
        if self.crm.id != 0:
            raise ValueError("crm.id must be 0 (the CRM is connection 0)")
        if self.crm.actor_types:
            raise ValueError("crm.actor_types: mappings belong to the ERP connections")
        seen: set[int] = set()
        for i, conn in enumerate(self.connections):
            if conn.id < 1:
                raise ValueError(f"connections[{i}].id must be >= 1 (0 is the CRM)")
            if conn.id in seen:
                raise ValueError(f"connections[{i}].id {conn.id} is used twice")
            seen.add(conn.id)
            erp_types = [m.erp for m in conn.actor_types]
            if len(set(erp_types)) != len(erp_types):
                raise ValueError(f"connections[{i}].actor_types lists an ERP actor type twice")
        idle = self.database.idle_in_transaction_timeout
        if idle and idle <= self.broker.publish_timeout:
            raise ValueError(
                f"database.idle_in_transaction_timeout ({idle}) must be more than "
                f"broker.publish_timeout ({self.broker.publish_timeout}), or 0"
            )
        known = seen | {0}
        lists = [("users", i, u.connections) for i, u in enumerate(self.auth.users)]
        lists += [("apps", i, a.connections) for i, a in enumerate(self.auth.apps)]
        for kind, i, connections in lists:
            unknown = sorted(set(connections or ()) - known)
            if unknown:
                raise ValueError(
                    f"auth.{kind}[{i}].connections names unknown connection ids {unknown}"
                )
        return self

    def connection(self, connection_id: int) -> ConnectionSettings | None:
        """Connection by id (0 is the CRM)."""
        if connection_id == 0:
            return self.crm
        for conn in self.connections:
            if conn.id == connection_id:
                return conn
        return None

    @property
    def all_connections(self) -> list[ConnectionSettings]:
        return [self.crm, *self.connections]

    def push_prefetch(self, connection: ConnectionSettings) -> int:
        """Prefetch of a target's push queue: enough units to keep its ``concurrency`` busy.

        A unit of ``chunk_size`` records makes ``ceil(chunk_size / batch_size)`` concurrent
        calls at a time; twice the units that fill ``concurrency`` keeps the next one ready while
        one finishes (its tail and commit).
        """
        if connection.push_prefetch is not None:
            return connection.push_prefetch
        calls_per_unit = -(-self.engine.chunk_size // connection.batch_size)
        return max(2, 2 * -(-connection.concurrency // calls_per_unit))


def redact_url(url: str) -> str:
    """Hide the password in a URL so it can be shown or logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
