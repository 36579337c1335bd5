"""Wait for Faust's view of a table's changelog before an agent touches the table.

Faust checks, at an agent's first access to a table, that the table's changelog topic has as
many partitions as the topic the agent reads (`PartitionsMismatch` otherwise), from the
consumer's metadata. Right after a changelog topic is created (a worker's first start) that
metadata can still show it incomplete: measured here, a tick of a new worker's enforce agent
failed so (`bench/delay_bench.py`). An event failing so would be dead-lettered as a bug and its
row never tracked: a missed first record. So each agent waits, before its first record, until
the metadata shows every table's changelog with its source's partition count; and a
`PartitionsMismatch` raised later still does not dead-letter the record: the agent waits and
processes the same record again (`retry_on_partitions_mismatch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from faust.exceptions import PartitionsMismatch

log = logging.getLogger(__name__)

T = TypeVar("T")

WAIT_S: Final = 0.5
LOG_EVERY_S: Final = 30.0


async def await_changelogs(app: Any, tables: Iterable[Any], partitions: int) -> None:
    """Return once the consumer's metadata shows each table's changelog with `partitions`
    partitions (measured: a just-created one was seen with 0), or does not know it; log an
    error every 30 s while it does not (the agent waits, reading nothing)."""
    waited = 0.0
    names = [table.changelog_topic_name for table in tables]
    while True:
        seen = {name: app.consumer.topic_partitions(name) for name in names}
        if all(count is None or count == partitions for count in seen.values()):
            return  # None: a topic the metadata does not know (yet), as Faust's own check allows
        if waited and waited % LOG_EVERY_S < WAIT_S:
            log.error(
                "Waiting %.0fs for the changelog topics to show %d partitions each, as the "
                "topic the agent reads; the broker's metadata shows %s. If a count stays "
                "wrong, the topic was changed by hand: recreate it with %d partitions.",
                waited,
                partitions,
                seen,
                partitions,
            )
        await asyncio.sleep(WAIT_S)
        waited += WAIT_S


async def retry_on_partitions_mismatch(handle: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `handle` until it does not raise `PartitionsMismatch`, waiting between tries."""
    delay = WAIT_S
    while True:
        try:
            return await handle()
        except PartitionsMismatch as exc:
            log.error("%s: %s; processing the same record again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LOG_EVERY_S)
