"""Producing from an agent without losing a record: retry with a capped backoff.

The source record is acknowledged only after the agent returns, so while the broker
refuses a record the agent waits (and its consumer lag grows, which metrics show)
instead of dropping it. Each failure is logged with what was being sent (topics and
offsets, never record values).

A dead letter is the exception: it carries the raw record, which can be what makes it fail
(a record too large for the dead-letter topic once base64-encoded). It is tried at most
`DEAD_LETTER_ATTEMPTS` times, or once when the error cannot heal (`retriable` false, as
aiokafka's errors say, timeouts excepted; behind Faust's `ProducerSendError`, its cause);
then the dead letter goes without its raw key and value (its reason, the sizes and the error
instead), retried until the broker has it, so the agent is never blocked for good by one
record and the record is still accounted for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faust.types import ChannelT

from lethe.forwarding import gives_up

log = logging.getLogger(__name__)

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0
DEAD_LETTER_ATTEMPTS: Final = 8
"""Tries of a dead letter with its raw record before it goes without (about a minute of
backoff), for an error that may heal."""


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


async def deliver_dead_letter(
    channel: ChannelT[bytes],
    key: bytes | None,
    value: bytes,
    without_raw: Callable[[str], bytes],
    what: str,
) -> bool:
    """Deliver a dead letter; after `DEAD_LETTER_ATTEMPTS` failures (at once for an error that
    cannot heal) deliver `without_raw(error)` instead, retrying until the broker has it.
    Returns True when the raw record was left out."""
    delay = RETRY_FIRST_S
    for attempt in range(1, DEAD_LETTER_ATTEMPTS + 1):
        try:
            await (await channel.send(key=key, value=value))
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not _may_heal(exc) or attempt == DEAD_LETTER_ATTEMPTS:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning(
                    "Could not deliver %s with its raw record (%s, attempt %d of %d); "
                    "sending it without the raw key and value",
                    what,
                    error,
                    attempt,
                    DEAD_LETTER_ATTEMPTS,
                )
                await deliver_retrying(channel, None, without_raw(error), what)
                return True
            log.warning("Could not deliver %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
    raise AssertionError("unreachable")  # pragma: no cover


def _may_heal(error: BaseException) -> bool:
    """A timeout or lost connection may heal; so may an error that does not say it cannot.
    Faust raises the client's error as the cause of its own `ProducerSendError`, which says
    nothing: the innermost cause decides (a too-large record was tried 8 times, about 90 s of
    a stalled agent per record, while its cause said it cannot heal)."""
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, KafkaTimeoutError | KafkaConnectionError | TimeoutError | ConnectionError):
        return True
    return bool(getattr(error, "retriable", True))


PIPELINE_RECORDS: Final = 500
PIPELINE_BYTES: Final = 16 * 1024 * 1024


class DeadLetterPipeline:
    """Dead letters delivered in the background, so that a flood of bad records does not
    cost a round trip to the broker each: the agent hands one over (`submit`) and goes on
    with the next record; the consumer commits only after every dead letter handed over so
    far is delivered (`settle`, from `lethe.consumer.Consumer._commit`), so a record whose
    dead letter is not on `lethe.deadletter` yet is never committed (at a crash it is read
    again and dead-lettered again: at least once). Dead letters may reach the topic out of
    order; each says its topic, partition and offset.

    At most `max_records` dead letters, or `max_bytes` of them, are in flight: past that,
    `submit` waits for the oldest to be delivered. Measured with 10,000 bad records on the
    local stack (docs/reliability.md, row 5): awaited one by one, the agent managed ~60 per
    second on a loaded 2-core machine."""

    def __init__(
        self, max_records: int = PIPELINE_RECORDS, max_bytes: int = PIPELINE_BYTES
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._tasks: dict[asyncio.Task[None], int] = {}
        self.failed = False
        """A delivery failed or was cancelled: nothing is committed from then on (`settle`)."""

    @property
    def pending(self) -> int:
        """Dead letters handed over and not delivered yet."""
        return len(self._tasks)

    async def submit(self, delivery: Coroutine[Any, Any, None], size: int) -> None:
        """Deliver in the background (`delivery` retries until the broker has the dead
        letter); wait first while too many are in flight."""
        while self._tasks and (
            len(self._tasks) >= self.max_records
            or sum(self._tasks.values()) + size > self.max_bytes
        ):
            await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.ensure_future(delivery)
        self._tasks[task] = size
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            self.failed = True
        elif task.exception() is not None:
            self.failed = True
            log.error("A dead letter's delivery failed", exc_info=task.exception())

    async def settle(self, stopping: Callable[[], bool] | None = None) -> bool:
        """Wait until every dead letter handed over so far is delivered; True then. False
        if one ever failed or was cancelled (its record must not be committed: it is read
        again at the next start), or if `stopping()` turns true and some are still in flight
        `lethe.forwarding.STOPPING_WAIT_S` later."""
        started = time.monotonic()
        while self._tasks and not self.failed:
            await asyncio.wait(list(self._tasks), timeout=0.5)
            if gives_up(stopping, started):
                log.warning(
                    "Stopping with %d dead letter(s) not delivered; their records are not "
                    "committed and are read again at the next start",
                    len(self._tasks),
                )
                return False
        return not self.failed
