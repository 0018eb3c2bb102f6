"""The connector contract: one input object and one result object per operation.

Modelled on SuperOffice's ERP connector operations (TestConnection, GetSupportedActorTypes,
GetSupportedActorTypeFields, GetActors, SaveActors, CreateActor). A connector only talks to its
system; the engine owns retries, batching, rate limits, timeouts, logging and metrics.

New optional fields may be added to every input and result class; connectors must accept
inputs they do not fully understand, which keeps third-party connectors working across releases.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from connectors.model import Actor, FieldMetadata

# -- errors -------------------------------------------------------------------------------------


class ConnectorError(Exception):
    """Base class of the error taxonomy; raise a subclass so the engine knows what to do."""

    kind: ClassVar[str] = "permanent"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """The call may succeed later (timeouts, 5xx, 429, lost connections): the engine retries."""

    kind = "transient"


class PermanentError(ConnectorError):
    """The call will fail the same way again (bad data, 4xx): recorded on the outcome at once."""

    kind = "permanent"


class ConfigurationError(ConnectorError):
    """The connection is misconfigured (credentials, missing table): the task fails fast."""

    kind = "configuration"


# -- context ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the engine tells a connector about where it runs."""

    connection_id: int
    connection_name: str
    logger: Any = None
    service_database_url: str | None = None
    """The service's own PostgreSQL URL, for connectors that keep data next to erpsync."""


# -- operations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestConnectionInput:
    """Input of ``test_connection``."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True, slots=True)
class TestConnectionResult:
    """Result of ``test_connection``: ``ok`` and a human-readable message."""

    __test__ = False

    ok: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class ActorTypesInput:
    """Input of ``supported_actor_types``."""


@dataclass(frozen=True, slots=True)
class ActorTypesResult:
    """Actor type names the connection supports (ErpActorType or CrmActorType names)."""

    actor_types: Sequence[str]


@dataclass(frozen=True, slots=True)
class FieldsInput:
    """Input of ``fields``: which actor type to describe."""

    actor_type: str


@dataclass(frozen=True, slots=True)
class FieldsResult:
    """Field metadata of one actor type."""

    fields: Sequence[FieldMetadata]


@dataclass(frozen=True, slots=True)
class GetActorsInput:
    """Read actors by key. ``field_keys`` None means every field."""

    actor_type: str
    keys: Sequence[str]
    field_keys: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class GetActorsResult:
    """The actors found; keys that do not exist are simply absent."""

    actors: Sequence[Actor]


@dataclass(frozen=True, slots=True)
class SaveActorsInput:
    """Update existing actors; each carries only the fields to change."""

    actor_type: str
    actors: Sequence[Actor]


@dataclass(frozen=True, slots=True)
class ActorFailure:
    """One actor a save could not write, with the reason."""

    key: str
    message: str
    kind: Literal["transient", "permanent"] = "permanent"


@dataclass(frozen=True, slots=True)
class SaveActorsResult:
    """Saved actors (with their new ``last_modified``) and per-actor failures."""

    saved: Sequence[Actor]
    failures: Sequence[ActorFailure] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class CreateActorInput:
    """Create one actor (its ``key`` is empty). ``idempotency_key`` is stable across retries."""

    actor: Actor
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class CreateActorResult:
    """The created actor with its new key and ``last_modified``."""

    actor: Actor


# -- the contract -------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT", bound=BaseModel)


@runtime_checkable
class Connector(Protocol):
    """What the engine calls. Subclass :class:`BaseConnector` to implement it."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...
    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult: ...
    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult: ...
    async def fields(self, request: FieldsInput) -> FieldsResult: ...
    async def get_actors(self, request: GetActorsInput) -> GetActorsResult: ...
    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult: ...
    async def create_actor(self, request: CreateActorInput) -> CreateActorResult: ...


class BaseConnector(abc.ABC, Generic[ConfigT]):
    """Convenience base: stores the validated config and context; open/aclose default to no-ops."""

    name: ClassVar[str] = ""
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT, context: ConnectorContext) -> None:
        self.config = config
        self.context = context

    def __repr__(self) -> str:
        # Config models mark secrets as SecretStr, so their repr is safe to show.
        return f"{type(self).__name__}(connection={self.context.connection_id}, {self.config!r})"

    async def open(self) -> None:
        """Acquire resources (pools, sessions). Called once before any operation."""

    async def aclose(self) -> None:
        """Release resources. Called once at shutdown."""

    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult:
        """Check that the system answers; the default reads the supported actor types."""
        await self.supported_actor_types(ActorTypesInput())
        return TestConnectionResult(ok=True, message="ok")

    @abc.abstractmethod
    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult: ...

    @abc.abstractmethod
    async def fields(self, request: FieldsInput) -> FieldsResult: ...

    @abc.abstractmethod
    async def get_actors(self, request: GetActorsInput) -> GetActorsResult: ...

    @abc.abstractmethod
    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult: ...

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        """Create an actor; connectors that cannot create keep this default."""
        raise PermanentError(f"connector {self.name!r} cannot create actors")
