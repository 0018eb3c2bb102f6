"""Typed configuration, as data (:mod:`.model`), read from TOML and the environment (:mod:`.load`).

``from engine.settings import Settings, load_settings`` is the way in; the field-mapping types
live in :mod:`engine.mapping` (re-exported here for existing imports).
"""

from engine.mapping.model import ActorTypeMapping, Direction, FieldMapping
from engine.settings.load import (
    DEFAULT_CONFIG,
    SECTIONS,
    SHORT_ENV,
    ConfigError,
    environment_section,
    load_settings,
)
from engine.settings.model import (
    App,
    AuthSettings,
    BreakerSettings,
    BrokerSettings,
    ConnectionSettings,
    DatabaseSettings,
    EngineSettings,
    JwtKey,
    JwtSettings,
    LoggingSettings,
    LoginThrottleSettings,
    NotificationSettings,
    RetrySettings,
    ServerSettings,
    SessionSettings,
    Settings,
    SyncSettings,
    Ticket,
    User,
    WebhookSettings,
    WorkerSettings,
    redact_url,
)

__all__ = [
    "DEFAULT_CONFIG",
    "SECTIONS",
    "SHORT_ENV",
    "ActorTypeMapping",
    "App",
    "AuthSettings",
    "BreakerSettings",
    "BrokerSettings",
    "ConfigError",
    "ConnectionSettings",
    "DatabaseSettings",
    "Direction",
    "EngineSettings",
    "FieldMapping",
    "JwtKey",
    "JwtSettings",
    "LoggingSettings",
    "LoginThrottleSettings",
    "NotificationSettings",
    "RetrySettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "SyncSettings",
    "Ticket",
    "User",
    "WebhookSettings",
    "WorkerSettings",
    "environment_section",
    "load_settings",
    "redact_url",
]
