"""The worker's Kafka consumer: Faust's own, except that after every rebalance each
change-topic partition without a committed offset is read from its beginning.

Why: in faust-streaming 0.15.3 with aiokafka 0.14.0 a rebalance (a second worker
joining, a worker leaving) can hand records to Faust that it then discards: a fetch
started before the rebalance was given Faust's live set of active partitions, which
the rebalance empties, and aiokafka reads an empty set as "every partition"
(`aiokafka/consumer/fetcher.py` `fetched_records`); Faust drops what it fetched while
the flow is stopped, or for partitions not yet resumed (`faust/transport/consumer.py`
`getmany`, ~739-774), and relies on `perform_seek()` (~565) to read them again. That
seek goes to the committed offset only when it is above 0
(`aiokafka/consumer/consumer.py` `seek_to_committed`, ~897-902). A partition nothing
was ever committed for keeps the position after the dropped records: they are
lost, with no log line. It happens when the event loop stalls during a rebalance
(GC, a busy machine) while the first records of such a partition arrive.

What Lethe does: every seek to committed offsets (`seek_to_committed`, which Faust
calls from `perform_seek` when it resumes the streams after a rebalance,
`faust/tables/recovery.py` ~316-322 and ~649-656, and when it drops a fetch taken
while the flow was stopped) also seeks each assigned partition whose committed offset
is missing (or 0) to its beginning, before Faust resumes the flow. Such a partition
has had nothing committed, so reading it again from its beginning can only repeat
records (counted twice), never skip one. Only partitions whose offsets Faust
commits are concerned: table changelogs (Faust's recovery positions them itself)
and topics read without acks are left alone.

The worker uses it through `lethe.app.LetheApp`; an operator has nothing to set. The
log says at INFO which partitions were sent back to their beginning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; partitions without a committed offset restart at their
    beginning whenever Faust seeks to committed offsets."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        await self.seek_uncommitted_to_beginning(committed)
        return committed

    async def seek_uncommitted_to_beginning(self, committed: Mapping[TP, int | None]) -> None:
        """Seek every partition in `committed` (partition -> committed offset, as aiokafka
        returns it) whose offset is missing or 0 to its beginning, if Faust commits
        offsets for its topic (read with acks, not a table changelog).

        aiokafka skips a committed 0 as well as a missing one, so both are sent back:
        0 means nothing was read either. Topics read without acks (Faust's own
        `<app id>-__assignor-__leader`) never have a commit and are left where they are.
        If a new rebalance took the partitions away meanwhile, nothing is done: that
        rebalance ends with its own seek.
        """
        uncommitted = sorted(
            tp
            for tp, offset in committed.items()
            if not offset
            and self.app.topics.acks_enabled_for(tp.topic)
            and not self._is_changelog_tp(tp)
        )
        if not uncommitted:
            return
        try:
            await self._thread.seek_to_beginning(*uncommitted)
        except IllegalStateError:
            log.info(
                "Partitions without committed offset were reassigned before they could be "
                "read from their beginning; the next rebalance seeks them: %s",
                _names(uncommitted),
            )
            return
        log.info(
            "Reading %d partition(s) without committed offset from their beginning: %s",
            len(uncommitted),
            _names(uncommitted),
        )


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with Lethe's `Consumer`."""

    Consumer: ClassVar[Any] = Consumer


def _names(tps: list[TP]) -> str:
    """`topic[0,1], other[0]` for partitions sorted by topic."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(
        f"{topic}[{','.join(map(str, partitions))}]" for topic, partitions in by_topic.items()
    )
