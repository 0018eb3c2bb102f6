"""An in-memory :class:`~engine.messaging.publishing.ChunkPublisher`: unit tests run the planner
and the chunk runner against it instead of RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.messaging.commands import new_message_id
from engine.messaging.publishing import ChunkRouting, PublishFailed


@dataclass(frozen=True, slots=True)
class Published:
    """One message as the broker would have queued it."""

    routing_key: str
    body: bytes
    message_id: str
    options: dict[str, Any]


class InMemoryPublisher(ChunkRouting):
    """Keeps every published message in :attr:`messages`, in publish order.

    ``refuse(routing_key, message_id)``, when given and true, makes that publish fail with
    :class:`PublishFailed` (as an unconfirmed publish does) and keeps nothing.
    """

    def __init__(
        self,
        push_targets: Sequence[int] = (),
        refuse: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.push_targets = frozenset(push_targets)
        self.messages: list[Published] = []
        self._refuse = refuse

    async def publish(
        self, routing_key: str, body: bytes, *, message_id: str | None = None, **options: Any
    ) -> str:
        """Keep the message (``options``: the broker publisher's headers, exchange, ...)."""
        message_id = message_id or new_message_id()
        if self._refuse is not None and self._refuse(routing_key, message_id):
            raise PublishFailed(f"refused {message_id}")
        self.messages.append(Published(routing_key, body, message_id, options))
        return message_id

    def message_ids(self, routing_key: str | None = None) -> list[str]:
        """Ids of the messages published (to ``routing_key`` only, when given)."""
        return [m.message_id for m in self.messages if routing_key in (None, m.routing_key)]
