"""The due index drops the timers of rows deleted or re-armed long before those timers' instants."""

from __future__ import annotations

from policy.store import STALE_SLACK, DueIndex, RowId


def rid(key: int) -> RowId:
    return (f"customer:{key // 5}", "public.connection_logs", (("id", key),))


def drain(index: DueIndex, until: int) -> list[tuple[int, RowId]]:
    popped = []
    while (timer := index.pop(until)) is not None:
        popped.append(timer)
    return popped


def test_rows_deleted_before_their_timer_leave_no_timers_behind() -> None:
    """As in the soak: each row's delete is sent, its re-issue timer set 300 s ahead, and the
    delete confirmed (the row disarmed) long before that: 20,000 rows, 100 live at a time."""
    index = DueIndex()
    for key in range(20_000):
        index.arm(rid(key), 300 + key)
        if key >= 100:
            index.arm(rid(key - 100), None)
    assert len(index) == 100
    assert index.timers() <= 2 * 100 + STALE_SLACK
    assert drain(index, 10**9) == [(300 + key, rid(key)) for key in range(19_900, 20_000)]


def test_dropping_stale_timers_keeps_each_live_row_at_its_last_instant() -> None:
    index = DueIndex()
    for key in range(3_000):
        index.arm(rid(key), 1_000 + key)
    for key in range(3_000):
        if key % 3:
            index.arm(rid(key), None)
    for key in range(0, 3_000, 3):  # re-armed later, then back to where they were
        index.arm(rid(key), 9_000 + key)
    for key in range(0, 3_000, 6):
        index.arm(rid(key), 1_000 + key)
    assert index.timers() <= 2 * len(index) + STALE_SLACK
    expected = sorted(
        [(1_000 + key, rid(key)) for key in range(0, 3_000, 6)]
        + [(9_000 + key, rid(key)) for key in range(3, 3_000, 6)]
    )
    assert drain(index, 20_000) == expected
