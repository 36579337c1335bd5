"""A census of a partition taken in slices, so that counting a large partition never stalls
its enforcer.

A census (`policy.census.take_census`) reads every row of the partition, about 10 µs a row:
in one scan, 1.26 s for 125,000 rows (10^6 rows over 8 partitions, measured), during which
the worker's event loop serves nothing else: no sweep, no command, no other partition.
`CensusRun` takes it instead at the partition's ticks, at most `CENSUS_SLICE_SHARE` of the
tick interval of scanning at each (50 ms at the default 1 s), resuming after the last row
(then subject) key it counted, and gives the census when the last slice is done. Every row
counts as of the instant the run started; a row written behind the scan's position while the
run goes on is counted as it was (or not at all, if new), as a gauge up to one census
interval old allows. `CensusSchedule` starts each partition's census at most once an interval
and shows it on the census gauges (`lethe.metrics.CensusBoard`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from lethe.metrics import CensusBoard, WorkerMetrics
from policy.census import Census, take_census
from policy.engine import Engine
from policy.instants import Instant
from policy.state import RowState, SubjectState

CENSUS_SLICE_SHARE: Final = 0.05
"""The share of the tick interval a census scans at each tick of a partition before its
enforcer goes on: 50 ms at the default LETHE_TICK_INTERVAL of 1 s."""
_CHECK_EVERY: Final = 64
"""Rows (or subjects) between two looks at the clock."""

log = logging.getLogger("lethe.agents.enforce")


class Scannable(Protocol):
    """What a census reads (`lethe.faust_store.FaustStore`): resumable scans of the current
    partition's rows and subject states, in key order."""

    def states_after(
        self, after: bytes | None
    ) -> Iterator[tuple[bytes, RowState, SubjectState | None]]: ...

    def subject_states_after(self, after: bytes | None) -> Iterator[tuple[bytes, SubjectState]]: ...


@dataclass(slots=True)
class CensusRun:
    """A census of one partition under way, as of `now` (enforcement clock, µs)."""

    now: Instant
    census: Census = field(default_factory=Census)
    rows_after: bytes | None = None
    """The last row key counted (None: none yet)."""
    rows_done: bool = False
    subjects_after: bytes | None = None
    """The last subject key counted (None: none yet)."""
    subjects_done: bool = False
    scanned_s: float = 0.0
    """Seconds spent scanning so far, over every slice."""

    def scan(self, engine: Engine, store: Scannable, slice_s: float) -> bool:
        """Count on from where the last slice stopped, for about `slice_s` seconds (the
        partition of the event being processed); True once every row and subject is
        counted (`census` is then the partition's census)."""
        started = time.monotonic()
        deadline = started + slice_s
        try:
            if not self.rows_done:
                rows = take_census(engine, self._rows(store, deadline), (), self.now)
                self.census = self.census.merge(rows)
            if self.rows_done and not self.subjects_done:
                holds = take_census(engine, (), self._subjects(store, deadline), self.now)
                self.census = self.census.merge(holds)
            return self.subjects_done
        finally:
            self.scanned_s += time.monotonic() - started

    def _rows(
        self, store: Scannable, deadline: float
    ) -> Iterator[tuple[RowState, SubjectState | None]]:
        for count, (key, row, subject) in enumerate(store.states_after(self.rows_after), 1):
            if count % _CHECK_EVERY == 0 and time.monotonic() > deadline:
                return
            self.rows_after = key
            yield row, subject
        self.rows_done = True

    def _subjects(self, store: Scannable, deadline: float) -> Iterator[SubjectState]:
        subjects = store.subject_states_after(self.subjects_after)
        for count, (key, state) in enumerate(subjects, 1):
            if count % _CHECK_EVERY == 0 and time.monotonic() > deadline:
                return
            self.subjects_after = key
            yield state
        self.subjects_done = True


class CensusSchedule:
    """The census of each partition this worker enforces, for the census gauges
    (`policy.census`): a census starts as of the enforcement clock's now at a tick of its
    partition, at most every `interval` seconds, and is taken in slices of `slice_s` seconds,
    one per tick (`CensusRun`); the gauges follow when its last slice is done. A failure is
    logged and the census starts again at the next interval."""

    def __init__(
        self,
        engine: Engine,
        store: Scannable,
        metrics: WorkerMetrics,
        interval: float,
        slice_s: float = CENSUS_SLICE_SHARE,
    ) -> None:
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.interval = interval
        self.slice_s = slice_s
        """Seconds a census scans at each tick of its partition."""
        self.started_at: dict[int, float] = {}
        """Per partition, when its last census started (monotonic seconds)."""
        self.runs: dict[int, CensusRun] = {}
        """Per partition, the census under way."""
        purposes = {table: plan.purposes for table, plan in engine.plans.items()}
        self.board = CensusBoard(metrics, purposes)

    def take(self, partition: int, now: Instant) -> None:
        """At a tick of `partition` (the partition of the event being processed), as of `now`
        (enforcement clock, µs): start its census if one is due, scan a slice, and show the
        partition's counts once the census is done."""
        run = self.runs.get(partition)
        if run is None:
            started = time.monotonic()
            if started - self.started_at.get(partition, -self.interval) < self.interval:
                return
            self.started_at[partition] = started
            run = self.runs[partition] = CensusRun(now)
        try:
            done = run.scan(self.engine, self.store, self.slice_s)
        except Exception:
            del self.runs[partition]
            log.exception("The census of partition %s failed; trying at its next", partition)
            return
        if done:
            del self.runs[partition]
            self.board.report(partition, run.census, now)
            self.metrics.census_duration.set(run.scanned_s)

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: their census under way is dropped and their counts
        leave the gauges (one assigned again is counted anew at its first tick)."""
        partitions = list(partitions)
        for partition in partitions:
            self.started_at.pop(partition, None)
            self.runs.pop(partition, None)
        self.board.forget(partitions)
