"""Calendar arithmetic on instants (`policy.instants.add_period`), the one implementation.

Expected instants are written out by hand. Dates beyond 2600 go through the exact
date path instead of the table of month starts, so both paths are checked.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policy.instants import (
    MAX_INSTANT,
    MIN_INSTANT,
    add_period,
    format_instant,
    parse_instant,
    to_datetime,
)
from policy.periods import Period


@pytest.mark.parametrize(
    ("start", "period", "expected"),
    [
        ("2024-02-29T10:00:00Z", "P1Y", "2025-02-28T10:00:00Z"),
        ("2024-02-29T10:00:00Z", "P4Y", "2028-02-29T10:00:00Z"),
        ("2025-01-31T00:00:00Z", "P1M", "2025-02-28T00:00:00Z"),
        ("2024-01-31T00:00:00Z", "P1M", "2024-02-29T00:00:00Z"),
        ("2024-03-31T08:00:00Z", "P6M", "2024-09-30T08:00:00Z"),
        ("2023-11-30T10:00:00Z", "P15M", "2025-02-28T10:00:00Z"),
        ("2024-01-31T00:00:00Z", "P1M1D", "2024-03-01T00:00:00Z"),  # months first, then days
        ("2024-06-30T18:00:00Z", "P180D", "2024-12-27T18:00:00Z"),
        ("2024-12-31T23:00:00Z", "PT2H", "2025-01-01T01:00:00Z"),
        ("1969-12-31T12:00:00Z", "P1M", "1970-01-31T12:00:00Z"),
        ("2899-01-31T00:00:00Z", "P1M", "2899-02-28T00:00:00Z"),  # beyond the table
        ("2896-01-31T00:00:00Z", "P1M", "2896-02-29T00:00:00Z"),
        ("2900-02-28T00:00:00Z", "P4Y", "2904-02-28T00:00:00Z"),  # 2900: no leap day
        ("1800-03-31T00:00:00Z", "P11M", "1801-02-28T00:00:00Z"),  # before the table
    ],
)
def test_calendar_periods(start: str, period: str, expected: str) -> None:
    assert format_instant(add_period(parse_instant(start), Period.parse(period))) == expected


@pytest.mark.parametrize(
    ("start", "period"),
    [
        ("9999-06-30T00:00:00Z", "P1Y"),  # the month arithmetic passes year 9999
        ("9999-12-30T00:00:00Z", "P90D"),  # the exact part passes it
        ("9999-12-31T23:00:00Z", "PT2H"),
        ("9000-01-01T00:00:00Z", "P2000Y"),
    ],
)
def test_a_due_date_beyond_year_9999_stops_at_the_last_instant(start: str, period: str) -> None:
    due = add_period(parse_instant(start), Period.parse(period))
    assert due == MAX_INSTANT
    assert format_instant(due) == "9999-12-31T23:59:59.999999Z"


def test_instants_outside_the_years_0001_to_9999_show_as_the_ends_instead_of_overflowing() -> None:
    assert to_datetime(MAX_INSTANT + 10**15) == datetime.max.replace(tzinfo=UTC)
    assert to_datetime(MIN_INSTANT - 1) == datetime.min.replace(tzinfo=UTC)
    assert format_instant(MIN_INSTANT) == "0001-01-01T00:00:00Z"
