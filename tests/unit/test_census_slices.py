"""The enforcer's census in slices (`lethe.agents.census_slices.CensusSchedule`), seen on
the gauges: a partition's counts show once its last slice is done, a census starts at most
once an interval, and a revoked partition's census under way is dropped with its counts.

The store is the in-memory driver state behind the two resumable scans the census reads; the
real store's scans are tested on RocksDB in tests/integration/test_faust_store.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lethe.agents.enforce import Enforcer
from lethe.app import LetheApp, create_app
from lethe.clock import LiveClock
from lethe.settings import Settings
from policy.driver import Driver
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.simulation import decode_line
from policy.state import RowState, SubjectState
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

ROWS = 300
NOW = micros("2025-06-01T00:00:00Z")


class ScannedStore:
    """A driver's in-memory state with the census's two scans, keys in order."""

    def __init__(self, store: MemoryStore) -> None:
        self.rows: list[tuple[bytes, RowState, SubjectState | None]] = []
        for number, row_id in enumerate(store.row_ids()):
            row = store.row(row_id)
            assert row is not None
            subject = None if row.subject is None else store.subject(row.subject)
            self.rows.append((b"%06d" % number, row, subject))
        self.subjects = [
            (key.encode(), state)
            for key in sorted(store.subjects())
            if (state := store.subject(key)) is not None
        ]

    def states_after(
        self, after: bytes | None
    ) -> Iterator[tuple[bytes, RowState, SubjectState | None]]:
        return (entry for entry in self.rows if after is None or entry[0] > after)

    def subject_states_after(self, after: bytes | None) -> Iterator[tuple[bytes, SubjectState]]:
        return (entry for entry in self.subjects if after is None or entry[0] > after)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LetheApp]:
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, app_id="lethe-unit", store="memory://", web_enabled=False)
    app.finalize()
    yield app


def enforcer(app: LetheApp, engine: Engine, tmp_path: Path, slice_s: float) -> Enforcer:
    """An enforcer over 300 rows, its census interval 30 s, each slice `slice_s` seconds."""
    store = MemoryStore()
    driver = Driver(engine, store)
    for number in range(ROWS):
        line = record("connection_logs", "c", "2024-12-01T00:00:00Z", {
            "id": number, "customer_id": number % 40, "ip_address": "x",
            "logged_at": "2024-03-01T00:00:00Z"})  # fmt: skip
        event = decode_line(engine, line)
        assert isinstance(event, ChangeEvent)
        driver.feed(event)
    settings = Settings(data_dir=tmp_path)
    return Enforcer(
        app, engine=engine, store=ScannedStore(store), clock=LiveClock(settings),  # type: ignore[arg-type]
        metrics=app.metrics, deadletters=app.channel(), audit_hash_key=b"k",
        census_interval=30.0, census_slice=slice_s,
    )  # fmt: skip


def tracked(app: LetheApp) -> float | None:
    return app.metrics.registry.get_sample_value(
        "lethe_rows_tracked",
        {"table": "public.connection_logs", "purpose": "user_identification"},
    )


def backlog(app: LetheApp) -> float | None:
    return app.metrics.registry.get_sample_value(
        "lethe_backlog_rows", {"table": "public.connection_logs", "action": "delete"}
    )


def test_a_census_in_slices_shows_the_partition_once_its_last_slice_is_done(
    app: LetheApp, demo_engine: Engine, tmp_path: Path
):
    """Slices of no time stop at every 64th row: 300 rows and 40 subjects take 5 ticks."""
    census = enforcer(app, demo_engine, tmp_path, slice_s=0.0).census
    assert census is not None
    for _ in range(4):
        census.take(0, NOW)
        assert tracked(app) == 0, "a census half done shows nothing of its partition"
    census.take(0, NOW)
    assert (tracked(app), backlog(app)) == (ROWS, ROWS)
    assert app.metrics.registry.get_sample_value("lethe_census_duration_seconds") > 0


def test_a_census_starts_once_an_interval_and_a_revoked_partition_drops_its_own(
    app: LetheApp, demo_engine: Engine, tmp_path: Path
):
    """Partitions 0 and 1 read the same rows here."""
    enforcing = enforcer(app, demo_engine, tmp_path, slice_s=10.0)
    census = enforcing.census
    assert census is not None
    store: ScannedStore = census.store  # type: ignore[assignment]
    census.take(0, NOW)
    assert tracked(app) == ROWS, "a slice long enough counts the partition at one tick"
    enforcing.forget([0])  # partition 0 revoked
    assert tracked(app) == 0
    census.take(0, NOW)
    assert tracked(app) == ROWS, "assigned again: counted at its first tick"

    census.slice_s = 0.0
    census.take(1, NOW)  # 63 rows counted, the census under way
    enforcing.forget([1])
    store.rows = store.rows[100:]  # 100 rows deleted while partition 1 was away
    for _ in range(4):
        census.take(1, NOW)
    assert tracked(app) == ROWS + 200, "revoked mid-census and assigned again: counted anew"

    store.rows = store.rows[:50]
    census.take(0, NOW)
    assert tracked(app) == ROWS + 200, "no second census of partition 0 within the interval"
    census.started_at[0] -= 30.0  # the interval has passed
    census.take(0, NOW)
    assert tracked(app) == 50 + 200
