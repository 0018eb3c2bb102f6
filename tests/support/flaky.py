"""A ``postgres`` connector that misbehaves on purpose: slow, transiently failing, rejecting keys.

Referenced from generated worker configs as ``"tests.support.flaky:FlakyConnector"``. Half of the
injected transient failures happen after the write went through (the caller cannot tell), which
is what makes idempotent writes necessary.
"""

from __future__ import annotations

import asyncio
import random

from pydantic import Field

from connectors.contract import (
    ActorFailure,
    CreateActorInput,
    CreateActorResult,
    GetActorsInput,
    GetActorsResult,
    SaveActorsInput,
    SaveActorsResult,
    TransientError,
)
from connectors.postgres import PostgresConfig, PostgresConnector


class FlakyConfig(PostgresConfig):
    """``postgres`` settings plus the faults to inject."""

    latency: float = Field(0.0, ge=0, description="Seconds added to every call.")
    fail_rate: float = Field(0.0, ge=0, le=1, description="Share of calls failing transiently.")
    fail_keys: list[str] = Field(default_factory=list, description="Saves rejected for good.")
    hang_after_write: float = Field(
        0.0, ge=0, le=1, description="Share of saves and creates that hang after the write."
    )
    seed: int | None = None


class FlakyConnector(PostgresConnector):
    """See the module docstring."""

    name = "flaky"
    config_model = FlakyConfig

    def __init__(self, config: FlakyConfig, context: object) -> None:
        super().__init__(config, context)  # type: ignore[arg-type]
        self.faults = config
        self._rng = random.Random(config.seed)

    async def _before(self) -> None:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        if self._rng.random() < self.faults.fail_rate / 2:
            raise TransientError("injected failure before the call")

    def _after(self) -> None:
        if self._rng.random() < self.faults.fail_rate / 2:
            raise TransientError("injected failure after the call went through")

    async def _hang(self) -> None:
        """The write went through; the answer never comes (the gate's timeout ends the call)."""
        if self._rng.random() < self.faults.hang_after_write:
            await asyncio.Event().wait()

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        await self._before()
        result = await super().get_actors(request)
        self._after()
        return result

    async def save_actors(self, request: SaveActorsInput) -> SaveActorsResult:
        await self._before()
        rejected = [a for a in request.actors if a.key in self.faults.fail_keys]
        accepted = [a for a in request.actors if a.key not in self.faults.fail_keys]
        result = await super().save_actors(SaveActorsInput(request.actor_type, accepted))
        await self._hang()
        self._after()
        failures = [ActorFailure(a.key, "rejected by the ERP (injected)") for a in rejected]
        return SaveActorsResult(saved=result.saved, failures=[*result.failures, *failures])

    async def create_actor(self, request: CreateActorInput) -> CreateActorResult:
        await self._before()
        result = await super().create_actor(request)
        await self._hang()
        self._after()
        return result
