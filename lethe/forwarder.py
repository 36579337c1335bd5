"""What the agents write `<app id>-subject-events` through: the `Forwarder` protocol, the
failure that stops a worker, and `ChannelForwarder`, over a Faust channel (the unit tests).
The worker's own is `lethe.forwarding.KafkaForwarder`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Headers = Sequence[tuple[str, bytes]]


class ForwardFailed(Exception):
    """The broker refused a forwarded record for good; the worker must restart from its
    committed offsets."""


class Forwarder(Protocol):
    """Writes `<app id>-subject-events`."""

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        """Hand over one record (placed by its key, or in `partition`); delivered later.
        `ForwardFailed` once a record was refused for good: nothing more is sent (a tick
        must not vouch for events that were lost)."""

    async def before_tick(self) -> None:
        """Return once a tick sent next lands after every record sent so far."""

    async def delivered(self) -> None:
        """Return once every record sent so far is delivered; `ForwardFailed` if one was not
        (the replay marks are stored only past delivered forwards)."""


class ChannelForwarder:
    """Sends through Faust (`channel.send`): the unit tests' in-memory channels."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        await self.channel.send(key=key, value=value, headers=list(headers), partition=partition)

    async def before_tick(self) -> None:
        await self.channel.app.producer.flush()

    async def delivered(self) -> None:
        await self.channel.app.producer.flush()
