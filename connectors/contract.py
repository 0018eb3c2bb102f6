"""The connector contract: one input object and one result object per operation.

Modelled on SuperOffice's ERP connector operations (TestConnection, GetSupportedActorTypes,
GetSupportedActorTypeFields, GetActors, SaveActors, CreateActor; optionally
GetActorsByTimestamp, SearchActors and GetList/GetListItems). A connector only talks to its
system; the engine owns retries, batching, rate limits, timeouts, logging and metrics.

The optional operations (changed-since, search, list items) are **experimental**: the engine
does not call them yet (changed-since is meant for incremental sync, issue 18), so their inputs
and results may still change.

New optional fields may be added to every input and result class; connectors must accept
inputs they do not fully understand, which keeps third-party connectors working across releases.
"""

from __future__ import annotations

import abc
import enum
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from connectors.model import Actor, FieldMetadata, ListItem

# -- errors -------------------------------------------------------------------------------------


class ConnectorError(Exception):
    """Base class of the error taxonomy; raise a subclass so the engine knows what to do.

    ``message`` is shown to operators and stored on outcomes: never put secrets, tokens or
    whole response bodies in it. ``retry_after`` (seconds) asks the engine to wait at least
    that long before retrying a :class:`TransientError` (e.g. from a ``Retry-After`` header).
    Anything else a connector raises is treated as permanent and logged as a bug.
    """

    kind: ClassVar[str] = "permanent"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        extra = f", retry_after={self.retry_after:g}" if self.retry_after is not None else ""
        return f"{type(self).__name__}({self.message!r}{extra})"


class TransientError(ConnectorError):
    """The call may succeed later (timeouts, 5xx, 429, lost connections): the engine retries."""

    kind = "transient"


class PermanentError(ConnectorError):
    """The call will fail the same way again (bad data, 4xx): recorded on the outcome at once."""

    kind = "permanent"


class ConfigurationError(ConnectorError):
    """The connection is misconfigured (credentials, missing table): no retry; an operator
    must fix the configuration (``erpsync connectors check`` shows what is wrong)."""

    kind = "configuration"


# -- context ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the engine tells a connector about where it runs."""

    connection_id: int
    connection_name: str
    logger: Any = field(default=None, repr=False)
    """A structlog-style logger bound to the connection (``logger.info("event", key=value)``)."""
    service_database_url: str | None = field(default=None, repr=False)
    """The service's own PostgreSQL URL (holds a password), for connectors that keep data next
    to erpsync."""


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


@dataclass(frozen=True, slots=True)
class ChangedSinceInput:
    """Input of the optional ``get_actors_changed_since`` (SuperOffice's GetActorsByTimestamp).

    ``since`` is a ``last_modified`` value this connector returned before (or None for
    everything); actors modified **on or after** it are returned, oldest first. ``cursor`` is
    the ``next_cursor`` of the previous page, if any; ``limit`` caps the page size.
    """

    actor_type: str
    since: str | None
    field_keys: Sequence[str] | None = None
    cursor: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class ChangedSinceResult:
    """One page of changed actors; ``next_cursor`` is None on the last page.

    ``horizon``: a connector that holds its reads back to before the oldest change still in
    flight (an open transaction) says from when (aware); None when nothing held the read back
    or the connector does not tell. The engine reports how far behind now it is.
    """

    actors: Sequence[Actor]
    next_cursor: str | None = None
    horizon: datetime | None = None


@dataclass(frozen=True, slots=True)
class SearchActorsInput:
    """Input of the optional ``search_actors`` (SuperOffice's SearchActors/SearchActorByParent).

    ``text`` is free text (empty may return everything); ``parent_actor_type`` and
    ``parent_key`` restrict the search to the children of one actor.
    """

    actor_type: str
    text: str = ""
    field_keys: Sequence[str] | None = None
    parent_actor_type: str | None = None
    parent_key: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class SearchActorsResult:
    """The actors matching a search."""

    actors: Sequence[Actor]


@dataclass(frozen=True, slots=True)
class ListItemsInput:
    """Input of the optional ``list_items`` (SuperOffice's GetList/GetListItems).

    ``item_keys`` None means the whole list; otherwise resolve only those items.
    """

    list_name: str
    item_keys: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class ListItemsResult:
    """Items of a list (the options of a ``FieldType.List`` field)."""

    items: Sequence[ListItem]


# -- the contract -------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT", bound=BaseModel)


@runtime_checkable
class Connector(Protocol):
    """What the engine calls. Subclass :class:`BaseConnector` to implement it.

    The engine builds one instance per connection as ``cls(config, context)``, where ``config``
    is an instance of ``config_model`` already validated, then calls :meth:`open` once, the
    operations any number of times (concurrently, up to the connection's ``concurrency``), and
    :meth:`aclose` once at shutdown. Each operation may be cancelled at any ``await``.
    """

    # Read-only in the protocol, so a class attribute of a narrower type satisfies them.
    @property
    def name(self) -> str:
        """The connector's name (its entry-point name, by convention)."""
        ...

    @property
    def config_model(self) -> type[BaseModel]:
        """The pydantic model of the connection's ``settings``; secrets as ``SecretStr``."""
        ...

    async def open(self) -> None:
        """Acquire resources (HTTP sessions, pools). Raise ConfigurationError if unusable."""
        ...

    async def aclose(self) -> None:
        """Release what :meth:`open` acquired. Must be safe to call after a failed open."""
        ...

    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult:
        """Check that the system answers and accepts the credentials."""
        ...

    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        """Actor type names this connection offers."""
        ...

    async def fields(self, request: FieldsInput) -> FieldsResult:
        """Field metadata of one actor type."""
        ...

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        """Read actors by key; unknown keys are left out of the result."""
        ...

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        """Update existing actors (only the given fields); report per-actor failures."""
        ...

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        """Create one actor and return it with its new key."""
        ...


@runtime_checkable
class SupportsChangedSince(Protocol):
    """Optional capability: list actors changed on or after a ``last_modified`` value.

    Stable: the continuous sync calls it (its contract: docs/connectors.md); see also
    :meth:`BaseConnector.changed_since_horizon_safe`.
    """

    async def get_actors_changed_since(self, request: ChangedSinceInput) -> ChangedSinceResult:
        """One page of actors changed on or after ``request.since``, oldest first."""
        ...


@runtime_checkable
class SupportsSearch(Protocol):
    """Optional capability: free-text search of actors.

    Experimental: the engine does not call it.
    """

    async def search_actors(self, request: SearchActorsInput) -> SearchActorsResult:
        """Actors matching ``request.text`` (and parent, when given)."""
        ...


@runtime_checkable
class SupportsListItems(Protocol):
    """Optional capability: the items of named lists (options of List fields).

    Experimental: only the API's read-through calls it, for the texts of List values.
    """

    async def list_items(self, request: ListItemsInput) -> ListItemsResult:
        """Items of ``request.list_name``."""
        ...


class Capability(enum.StrEnum):
    """What a connector can do beyond reading and saving actors."""

    create = "create"
    changed_since = "changed_since"
    search = "search"
    list_items = "list_items"


_OPTIONAL_METHODS = {
    Capability.changed_since: "get_actors_changed_since",
    Capability.search: "search_actors",
    Capability.list_items: "list_items",
}


def capabilities(connector: object) -> frozenset[Capability]:
    """Detect the optional capabilities of a connector class or instance.

    An optional operation counts when the class defines it as a coroutine function;
    ``create`` counts unless the class keeps :class:`BaseConnector`'s refusing default.
    """
    cls = connector if isinstance(connector, type) else type(connector)
    found = set()
    create = getattr(cls, "create_actor", None)
    if inspect.iscoroutinefunction(create) and create is not BaseConnector.create_actor:
        found.add(Capability.create)
    for capability, method in _OPTIONAL_METHODS.items():
        if inspect.iscoroutinefunction(getattr(cls, method, None)):
            found.add(capability)
    return frozenset(found)


class BaseConnector(abc.ABC, Generic[ConfigT]):
    """Convenience base for :class:`Connector`: keeps the config and context.

    Implement :meth:`supported_actor_types`, :meth:`fields`, :meth:`get_actors` and
    :meth:`save_actors`; override :meth:`open`/:meth:`aclose` to manage resources and
    :meth:`create_actor` when the system can create actors. Add optional operations
    (``get_actors_changed_since``, which the continuous sync calls; ``search_actors`` and
    ``list_items``, experimental) by defining them; :func:`capabilities` detects them.
    """

    name: ClassVar[str] = ""
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT, context: ConnectorContext) -> None:
        self.config = config
        self.context = context

    def __repr__(self) -> str:
        # Only the class and connection: config values (URLs, user names) stay out of logs.
        # Secrets are SecretStr in config models, but authors may forget; a repr need not tell.
        return f"<{type(self).__name__} connection={self.context.connection_id}>"

    async def open(self) -> None:
        """Acquire resources (pools, sessions). Called once before any operation."""

    async def aclose(self) -> None:
        """Release resources. Called once at shutdown, also after a failed :meth:`open`."""

    def changed_since_horizon_safe(self, actor_type: str) -> bool:
        """Whether ``get_actors_changed_since`` of this actor type is *horizon-safe*: no change
        can still commit at or before a position it returned (reads are held back to before the
        oldest change in flight, or positions are given at commit). The engine then re-reads no
        overlap before the watermark unless the connection's ``sync_overlap`` says otherwise.
        The default: not safe."""
        return False

    async def test_connection(self, request: TestConnectionInput) -> TestConnectionResult:
        """Check that the system answers; the default reads the supported actor types."""
        await self.supported_actor_types(ActorTypesInput())
        return TestConnectionResult(ok=True, message="ok")

    @abc.abstractmethod
    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        """Actor type names this connection offers (ErpActorType or CrmActorType names)."""

    @abc.abstractmethod
    async def fields(self, request: FieldsInput) -> FieldsResult:
        """Field metadata of ``request.actor_type``; PermanentError for an unknown type."""

    @abc.abstractmethod
    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        """Actors with ``request.keys``; leave unknown keys out, never raise for them."""

    @abc.abstractmethod
    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        """Write the given fields of existing actors; unknown keys become failures."""

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        """Create an actor; connectors that cannot create keep this default."""
        raise PermanentError(f"connector {self.name!r} cannot create actors")
