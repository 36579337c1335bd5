"""Producing from an agent without losing a record: retry with a capped backoff.

The source record is acknowledged only after the agent returns, so while the broker
refuses a record the agent waits (and its consumer lag grows, which metrics show)
instead of dropping it. Each failure is logged with what was being sent (topics and
offsets, never record values).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from faust.types import ChannelT

log = logging.getLogger(__name__)

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0


async def send_retrying(
    channel: ChannelT[bytes], key: bytes | None, value: bytes | None, what: str
) -> Any:
    """Hand the record to the producer, retrying until it takes it; return its delivery
    (a future the caller awaits)."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await channel.send(key=key, value=value)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Could not send %s; retrying in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def deliver_retrying(
    channel: ChannelT[bytes], key: bytes | None, value: bytes | None, what: str
) -> None:
    """Send the record and wait until the broker has it, retrying until it does."""
    delay = RETRY_FIRST_S
    while True:
        try:
            await (await channel.send(key=key, value=value))
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Could not deliver %s; retrying in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
