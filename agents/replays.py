"""Drop the change events a Debezium connector sends again after a restart.

Kafka Connect stores a source connector's position every `offset.flush.interval.ms`; a
connector that stops without storing it (its worker killed, a crash) starts again from the
last stored one and sends every change since once more, with the same `source.sequence`
(measured: same LSN, sequence and txId, a later envelope `ts_ms`). Forwarded again, such a
replay undoes what came after it: a create replayed after the row's delete brings the row
back to life in the enforcer, which then issues a second delete for a row already deleted.

The rule (`is_replay`, `advance`), per change-topic partition: the mark is the highest
position forwarded (`SourcePosition.order`). A change whose position is at or below the
mark is a replay: dropped, counted in `lethe_change_events_replayed_total{table}`. A
snapshot read is never a replay (the reads of one snapshot share its one position) and
sets the mark to its own position, even a lower one: a snapshot starts the connector's
stream anew and what it streams next follows it (a connector reset or recreated on a new
database would otherwise have its changes dropped). A change without position is never
dropped and leaves the mark alone.

The marks live in memory, and in the Faust table `change-positions` (`<topic>:<partition>`
-> the mark, co-partitioned with the change topics) so a restarted worker keeps them. A
partition's mark is written there when the worker has read the partition to its end (the
record is the last the broker had when it was fetched), else at most once per `interval_s`,
and only after the producer is flushed: every record forwarded (and every `locations` write)
up to the mark is then in Kafka. A worker that is behind thus writes one record per second
per partition at most; one that keeps up writes after each burst of changes, so the stored
mark is the in-memory one whenever the connector and the worker are idle.

Why only after a flush: a worker that dies re-reads the change records after its last
committed offset (Kafka delivers at least once); were the stored mark ahead of what was
delivered, such a record would be taken for a replay and lost. A stored mark behind the
truth costs at worst a record forwarded twice, which the enforcer absorbs (the same command
id). Marks of revoked partitions are dropped from memory and read from the table again at
their next use, for the same reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import faust
import orjson
from faust.types import TP

from policy.events import SourcePosition

log = logging.getLogger(__name__)

TABLE: Final = "change-positions"
INTERVAL_S: Final = 1.0

Highwater = Callable[[str, int], int | None]
"""The offset after the last record of a partition, as the consumer last heard (None: not
known)."""


def is_replay(mark: SourcePosition | None, position: SourcePosition | None) -> bool:
    """Whether a change at `position` is one the connector sent already (see the module)."""
    if mark is None or position is None or position.snapshot:
        return False
    return position.order <= mark.order


def advance(mark: SourcePosition | None, position: SourcePosition | None) -> SourcePosition | None:
    """The mark once the change at `position` is forwarded."""
    if position is None:
        return mark
    if mark is None or position.snapshot or position.order > mark.order:
        return position
    return mark


def encode(mark: SourcePosition) -> bytes:
    return orjson.dumps([mark.commit, mark.lsn, mark.snapshot])


def decode(data: bytes) -> SourcePosition:
    commit, lsn, snapshot = orjson.loads(data)
    return SourcePosition(commit, lsn, snapshot)


class ReplayMarks:
    """The marks of the change-topic partitions this worker reads (see the module).

    `replayed(...)` before forwarding a change, `forwarded(...)` after; `store(...)` then
    writes the partition's mark to the table when it is due. Call them from the agent's
    stream (a table write needs the current event)."""

    __slots__ = (
        "_clock",
        "_ends",
        "_flush",
        "_highwater",
        "_interval_s",
        "_marks",
        "_stored",
        "_table",
    )

    def __init__(
        self,
        table: Any,
        flush: Callable[[], Awaitable[None]],
        *,
        highwater: Highwater | None = None,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._flush = flush
        self._highwater = highwater
        self._interval_s = interval_s
        self._clock = clock
        self._marks: dict[tuple[str, int], SourcePosition | None] = {}
        self._stored: dict[tuple[str, int], tuple[float, SourcePosition | None]] = {}
        self._ends: dict[tuple[str, int], int] = {}

    @property
    def table(self) -> Any:
        """The Faust table the marks are stored in."""
        return self._table

    @classmethod
    def install(
        cls,
        app: faust.App,
        partitions: int,
        *,
        flush: Callable[[], Awaitable[None]] | None = None,
        highwater: Highwater | None = None,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> ReplayMarks:
        """Declare the table on `app` (`partitions`: the change topics' count) and drop the
        marks of revoked partitions; `flush` and `highwater` default to the app's producer
        and consumer."""
        table = app.Table(
            TABLE,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            help="Change topic partition (<topic>:<partition>) -> the highest source "
            "position forwarded and delivered.",
        )
        flush = flush or (lambda: app.producer.flush())

        def consumer_highwater(topic: str, partition: int) -> int | None:
            try:
                return app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned (any more), or no consumer yet: not known
                return None

        marks = cls(
            table,
            flush,
            highwater=highwater or consumer_highwater,
            interval_s=interval_s,
            clock=clock,
        )

        def forget_revoked(sender: Any, /, *args: Any, signal: Any, **rest: Any) -> None:
            revoked: set[TP] = args[0] if args else rest.get("revoked", set())
            marks.forget({(tp.topic, tp.partition) for tp in revoked})

        app.on_partitions_revoked.connect(forget_revoked)
        return marks

    def mark(self, topic: str, partition: int) -> SourcePosition | None:
        where = (topic, partition)
        if where not in self._marks:
            stored = self._table.get(_key(where))
            self._marks[where] = None if stored is None else decode(stored)
            self._stored[where] = (self._clock(), self._marks[where])
        return self._marks[where]

    def replayed(self, topic: str, partition: int, position: SourcePosition | None) -> bool:
        return is_replay(self.mark(topic, partition), position)

    def forwarded(self, topic: str, partition: int, position: SourcePosition | None) -> None:
        self._marks[(topic, partition)] = advance(self.mark(topic, partition), position)

    def due(self, topic: str, partition: int, offset: int) -> bool:
        """Whether `store` would write the partition's mark now: it moved, and the record at
        `offset` is the partition's last or `interval_s` passed since the last write. Cheap:
        the agent asks after every record."""
        where = (topic, partition)
        mark = self._marks.get(where)
        if mark is None:
            return False
        stored_at, stored = self._stored.get(where, (float("-inf"), None))
        if mark == stored:
            return False
        return self._clock() - stored_at >= self._interval_s or self._at_end(where, offset)

    async def store(self, topic: str, partition: int, offset: int) -> None:
        """Write the partition's mark when it is `due`; flush the producer first."""
        if not self.due(topic, partition, offset):
            return
        where = (topic, partition)
        mark = self._marks[where]
        assert mark is not None
        try:
            await self._flush()
        except Exception:  # e.g. the producer stopping: the mark waits, which is safe
            log.warning("Flushing the producer failed; the replay mark of %s[%s] waits", *where)
            return
        self._table[_key(where)] = encode(mark)
        self._stored[where] = (self._clock(), mark)

    def _at_end(self, where: tuple[str, int], offset: int) -> bool:
        """Whether `offset` is the partition's last record, as the consumer last heard. The
        end it heard is kept: while `offset` is below it, the record is not the last (a
        partition's end only grows), and the consumer is not asked again."""
        if self._highwater is None:
            return False
        end = self._ends.get(where)
        if end is None or offset + 1 >= end:
            end = self._highwater(*where)
            if end is None:
                return False
            self._ends[where] = end
        return offset + 1 >= end

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for where in partitions:
            self._marks.pop(where, None)
            self._stored.pop(where, None)
            self._ends.pop(where, None)


def _key(where: tuple[str, int]) -> bytes:
    return f"{where[0]}:{where[1]}".encode()
