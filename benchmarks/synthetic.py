"""``synthetic``: a stateless benchmark connector with a known cost per call.

Values are computed from the key, so any number of records costs no memory (the huge-batch
scenario measures the engine's RSS, not the fake systems'), every run finds the same differences
(repeated runs measure the same work), and separate worker processes agree without seeding.

* CRM role (``stale_fields`` empty): field ``f`` of key ``k`` is ``"f k"``.
* Target role: the same, except the ``stale_fields`` read ``"f k old"``; saves are accepted and
  forgotten, so every run writes those fields again (one save per batch).

``latency_ms`` is slept once per get/save call, so the limit is known: a target with
concurrency C sustains at most C / latency calls per second. With ``trace_path`` set, each call
appends ``connection op start end actors`` (wall-clock seconds) to that file, from which the
benchmarks compute per-target throughput.
"""

from __future__ import annotations

import asyncio
import time
from typing import IO

from pydantic import BaseModel, ConfigDict, Field

from connectors.contract import (
    ActorTypesInput,
    ActorTypesResult,
    BaseConnector,
    FieldsInput,
    FieldsResult,
    GetActorsInput,
    GetActorsResult,
    PermanentError,
    SaveActorsInput,
    SaveActorsResult,
)
from connectors.model import Actor, FieldMetadata

REFERENCE = "benchmarks.synthetic:SyntheticConnector"


class SyntheticConfig(BaseModel):
    """Settings of a ``synthetic`` connection."""

    model_config = ConfigDict(extra="forbid")

    actor_types: dict[str, list[str]] = Field(description="Actor types and their field keys.")
    stale_fields: list[str] = Field(
        default_factory=list, description="Fields a read reports as out of date."
    )
    latency_ms: float = Field(0.0, ge=0, description="Injected delay per get/save call.")
    trace_path: str | None = Field(None, description="Append one line per call to this file.")


class SyntheticConnector(BaseConnector[SyntheticConfig]):
    """Connector over computed values; see the module docstring."""

    name = "synthetic"
    config_model = SyntheticConfig

    _trace: IO[str] | None = None

    async def open(self) -> None:
        if self.config.trace_path:
            self._trace = open(self.config.trace_path, "a", encoding="utf-8")  # noqa: SIM115, ASYNC230

    async def aclose(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    async def _call(self, op: str, actors: int, start: float) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if self._trace is not None:
            cid = self.context.connection_id
            self._trace.write(f"{cid} {op} {start:.6f} {time.time():.6f} {actors}\n")
            self._trace.flush()

    def _fields(self, actor_type: str) -> list[str]:
        fields = self.config.actor_types.get(actor_type)
        if fields is None:
            raise PermanentError(f"unsupported actor type {actor_type!r}")
        return fields

    async def supported_actor_types(self, request: ActorTypesInput) -> ActorTypesResult:
        return ActorTypesResult(actor_types=list(self.config.actor_types))

    async def fields(self, request: FieldsInput) -> FieldsResult:
        keys = self._fields(request.actor_type)
        return FieldsResult(fields=[FieldMetadata(key=k, display_name=k) for k in keys])

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        start = time.time()
        known = self._fields(request.actor_type)
        wanted = list(request.field_keys) if request.field_keys is not None else known
        stale = set(self.config.stale_fields)
        actors = [
            Actor(
                actor_type=request.actor_type,
                key=key,
                fields={f: f"{f} {key} old" if f in stale else f"{f} {key}" for f in wanted},
                last_modified="1",
            )
            for key in request.keys
        ]
        await self._call("get", len(actors), start)
        return GetActorsResult(actors=actors)

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        start = time.time()
        self._fields(request.actor_type)
        saved = [Actor(request.actor_type, a.key, dict(a.fields), "2") for a in request.actors]
        await self._call("save", len(saved), start)
        return SaveActorsResult(saved=saved)
