"""``memory``: an in-process connector for tests, demos and benchmarks.

Actors live in a named :class:`MemoryStore` shared by every connector configured with the same
``store`` name in the process, so tests can seed and inspect it directly. Latency and failures can
be injected through the config to exercise the engine's gates.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

import connectors as sdk

_clock = itertools.count(1)
_last_us = 0


@dataclass
class MemoryStore:
    """Actors by actor type and key, plus counters tests can assert on."""

    name: str
    actors: dict[str, dict[str, dict[str, sdk.FieldValue]]] = field(default_factory=dict)
    modified: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: int = 0
    saves: int = 0
    creates: int = 0
    created_by_idempotency_key: dict[str, str] = field(default_factory=dict)
    outage: Literal["transient", "permanent", "configuration"] | None = None
    """Like the connection's ``fail``, switched on and off while a resync runs (tests)."""
    epoch_us: bool = False
    """Stamp changes with epoch microseconds (a time the continuous sync's overlap can go back
    from) instead of the process-wide counter."""

    def stamp(self) -> int:
        """The next position: after every earlier one of the process."""
        if not self.epoch_us:
            return next(_clock)
        global _last_us
        _last_us = max(time.time_ns() // 1000, _last_us + 1)
        return _last_us

    _stores: ClassVar[dict[str, MemoryStore]] = {}

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """Return the process-wide store called ``name``, creating it when new."""
        store = cls._stores.get(name)
        if store is None:
            store = cls._stores[name] = cls(name)
        return store

    @classmethod
    def drop(cls, name: str) -> None:
        """Forget a store (tests call this to clean up)."""
        cls._stores.pop(name, None)

    def put(
        self,
        actor_type: str,
        key: str,
        values: Mapping[str, sdk.FieldValue],
        stamp: int | None = None,
    ) -> None:
        """Insert or replace an actor; ``stamp`` sets its position (a change committed late:
        stamped before changes already read)."""
        self.actors.setdefault(actor_type, {})[key] = dict(values)
        self.modified[(actor_type, key)] = self.stamp() if stamp is None else stamp

    def get(self, actor_type: str, key: str) -> dict[str, sdk.FieldValue] | None:
        """Return a copy of an actor's fields, or None."""
        values = self.actors.get(actor_type, {}).get(key)
        return None if values is None else dict(values)


class MemoryField(BaseModel):
    """What ``fields`` reports of one field beyond its key (default: Text, Normal access)."""

    model_config = ConfigDict(extra="forbid")

    type: sdk.FieldType = sdk.FieldType.Text
    access: sdk.FieldAccess = sdk.FieldAccess.Normal
    display_name: str = ""
    list_name: str = ""
    default_value: str | None = None


class MemoryConfig(BaseModel):
    """Settings of a ``memory`` connection."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Name of the in-process store; equal names share data.")
    actor_types: dict[str, list[str]] = Field(
        description="Supported actor types and their field keys."
    )
    latency_ms: float = Field(0.0, ge=0, description="Injected delay per call.")
    fail: Literal["transient", "permanent", "configuration"] | None = Field(
        None, description="Make every get/save/create raise this kind of error."
    )
    fail_rate: float = Field(
        0.0, ge=0, le=1, description="Share of get/save/create calls failing transiently."
    )
    seed: int | None = Field(None, description="Seed of the failure draws (reproducible runs).")
    fail_keys: list[str] = Field(
        default_factory=list, description="Keys whose saves fail permanently."
    )
    lists: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Named lists for list_items: item key -> text."
    )
    metadata: dict[str, dict[str, MemoryField]] = Field(
        default_factory=dict,
        description="Field metadata by actor type and field key (type, access, list, default).",
    )


class MemoryConnector(sdk.BaseConnector[MemoryConfig]):
    """Connector over a :class:`MemoryStore`."""

    name = "memory"
    config_model = MemoryConfig

    def __init__(self, config: MemoryConfig, context: sdk.ConnectorContext) -> None:
        super().__init__(config, context)
        self._rng = random.Random(config.seed)  # noqa: S311 - failure injection, not security

    @property
    def store(self) -> MemoryStore:
        return MemoryStore.named(self.config.store)

    async def _call(self) -> None:
        self.store.calls += 1
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        fail = self.store.outage or self.config.fail
        if fail == "transient":
            raise sdk.TransientError(f"memory store {self.config.store!r} is unavailable")
        if fail == "permanent":
            raise sdk.PermanentError(f"memory store {self.config.store!r} rejects the call")
        if fail == "configuration":
            raise sdk.ConfigurationError(f"memory store {self.config.store!r} is misconfigured")
        if self.config.fail_rate and self._rng.random() < self.config.fail_rate:
            raise sdk.TransientError(f"memory store {self.config.store!r} failed (injected)")

    def _check_type(self, actor_type: str) -> list[str]:
        try:
            return self.config.actor_types[actor_type]
        except KeyError:
            raise sdk.PermanentError(f"unsupported actor type {actor_type!r}") from None

    async def test_connection(self, request: sdk.TestConnectionInput) -> sdk.TestConnectionResult:
        """Not ok while the store has an outage or the connection ``fail``s."""
        try:
            await self._call()
        except sdk.ConnectorError as exc:
            return sdk.TestConnectionResult(ok=False, message=exc.message)
        return sdk.TestConnectionResult(ok=True, message=f"memory store {self.config.store!r}")

    async def supported_actor_types(self, request: sdk.ActorTypesInput) -> sdk.ActorTypesResult:
        return sdk.ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: sdk.FieldsInput) -> sdk.FieldsResult:
        keys = self._check_type(request.actor_type)
        described = self.config.metadata.get(request.actor_type, {})
        return sdk.FieldsResult(fields=[self._field(k, described.get(k)) for k in keys])

    @staticmethod
    def _field(key: str, described: MemoryField | None) -> sdk.FieldMetadata:
        if described is None:
            return sdk.FieldMetadata(key=key, display_name=key)
        return sdk.FieldMetadata(
            key=key,
            display_name=described.display_name or key,
            type=described.type,
            access=described.access,
            list_name=described.list_name,
            default_value=described.default_value,
        )

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        known = self._check_type(request.actor_type)
        await self._call()
        wanted = list(request.field_keys) if request.field_keys is not None else known
        table = self.store.actors.get(request.actor_type, {})
        actors = []
        for key in request.keys:
            values = table.get(key)
            if values is not None:
                actors.append(
                    sdk.Actor(
                        actor_type=request.actor_type,
                        key=key,
                        fields={f: values.get(f) for f in wanted},
                        last_modified=str(self.store.modified[(request.actor_type, key)]),
                    )
                )
        return sdk.GetActorsResult(actors=actors)

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        known = set(self._check_type(request.actor_type))
        await self._call()
        table = self.store.actors.setdefault(request.actor_type, {})
        saved: list[sdk.Actor] = []
        failures: list[sdk.ActorFailure] = []
        for actor in request.actors:
            unknown = set(actor.fields) - known
            if actor.key in self.config.fail_keys:
                failures.append(sdk.ActorFailure(actor.key, "rejected by configuration"))
            elif actor.key not in table:
                failures.append(
                    sdk.ActorFailure(actor.key, f"no {request.actor_type} {actor.key!r}")
                )
            elif unknown:
                failures.append(sdk.ActorFailure(actor.key, f"unknown fields {sorted(unknown)}"))
            else:
                table[actor.key].update(actor.fields)
                stamp = self.store.stamp()
                self.store.modified[(request.actor_type, actor.key)] = stamp
                self.store.saves += 1
                saved.append(
                    sdk.Actor(request.actor_type, actor.key, dict(actor.fields), str(stamp))
                )
        return sdk.SaveActorsResult(saved=saved, failures=failures)

    async def create_actor(self, request: sdk.CreateActorInput) -> sdk.CreateActorResult:
        actor = request.actor
        self._check_type(actor.actor_type)
        await self._call()
        store = self.store
        key = (
            store.created_by_idempotency_key.get(request.idempotency_key)
            if (request.idempotency_key)
            else None
        )
        if key is None:
            key = actor.key or uuid.uuid4().hex[:12]
            store.put(actor.actor_type, key, actor.fields)
            store.creates += 1
            if request.idempotency_key:
                store.created_by_idempotency_key[request.idempotency_key] = key
        stamp = str(store.modified[(actor.actor_type, key)])
        return sdk.CreateActorResult(
            actor=sdk.Actor(actor.actor_type, key, store.get(actor.actor_type, key) or {}, stamp)
        )

    # -- optional operations --------------------------------------------------------------------

    def _actor(self, actor_type: str, key: str, wanted: list[str]) -> sdk.Actor:
        values = self.store.actors[actor_type][key]
        stamp = self.store.modified[(actor_type, key)]
        return sdk.Actor(actor_type, key, {f: values.get(f) for f in wanted}, str(stamp))

    async def get_actors_changed_since(
        self, request: sdk.ChangedSinceInput
    ) -> sdk.ChangedSinceResult:
        """Actors whose stamp is on or after ``since``, oldest first, paged by stamp."""
        known = self._check_type(request.actor_type)
        await self._call()
        wanted = list(request.field_keys) if request.field_keys is not None else known
        try:
            since = int(request.since) if request.since else 0
            after = int(request.cursor) if request.cursor else None
        except ValueError:
            raise sdk.PermanentError(f"not a memory timestamp: {request.since!r}") from None
        stamps = sorted(
            (stamp, key)
            for (actor_type, key), stamp in self.store.modified.items()
            if actor_type == request.actor_type
            and stamp >= since
            and (after is None or stamp > after)
        )
        page = stamps[: request.limit] if request.limit else stamps
        more = len(page) < len(stamps)
        actors = [self._actor(request.actor_type, key, wanted) for _, key in page]
        return sdk.ChangedSinceResult(actors=actors, next_cursor=str(page[-1][0]) if more else None)

    async def search_actors(self, request: sdk.SearchActorsInput) -> sdk.SearchActorsResult:
        """Actors with a field value containing ``text`` (case-insensitive)."""
        known = self._check_type(request.actor_type)
        await self._call()
        wanted = list(request.field_keys) if request.field_keys is not None else known
        text = request.text.casefold()
        table = self.store.actors.get(request.actor_type, {})
        keys = [
            key
            for key, values in table.items()
            if not text or any(text in (v or "").casefold() for v in values.values())
        ]
        if request.limit:
            keys = keys[: request.limit]
        return sdk.SearchActorsResult(
            actors=[self._actor(request.actor_type, key, wanted) for key in keys]
        )

    async def list_items(self, request: sdk.ListItemsInput) -> sdk.ListItemsResult:
        """Items of a list from the ``lists`` setting."""
        try:
            items = self.config.lists[request.list_name]
        except KeyError:
            raise sdk.PermanentError(f"unknown list {request.list_name!r}") from None
        keys = list(items) if request.item_keys is None else request.item_keys
        return sdk.ListItemsResult(items=[sdk.ListItem(k, items[k]) for k in keys if k in items])
