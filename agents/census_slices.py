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
interval old allows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from policy.census import Census, take_census
from policy.engine import Engine
from policy.instants import Instant
from policy.state import RowState, SubjectState

CENSUS_SLICE_SHARE: Final = 0.05
"""The share of the tick interval a census scans at each tick of a partition before its
enforcer goes on: 50 ms at the default LETHE_TICK_INTERVAL of 1 s."""
_CHECK_EVERY: Final = 64
"""Rows (or subjects) between two looks at the clock."""


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
