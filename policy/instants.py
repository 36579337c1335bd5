"""Instants as integer microseconds since 1970-01-01T00:00:00Z, and calendar periods on them.

The engine works on plain ints on its hot path: comparing and adding them is far
cheaper than `datetime` arithmetic. Conversions to and from `datetime`/`date` and
the `...Z` text form live here, and the one implementation of calendar arithmetic
(`add_period`): months first with the day clamped to the end of a shorter month, then
days and seconds; a result beyond year 9999 stops at MAX_INSTANT.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

from policy.periods import Period

Instant = int
"""Microseconds since the Unix epoch, UTC."""

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
"""`date.toordinal()` of 1970-01-01: days since the epoch = ordinal - EPOCH_ORDINAL."""
_ONE_US = timedelta(microseconds=1)
_from_ordinal = date.fromordinal
MIN_INSTANT: Instant = (1 - EPOCH_ORDINAL) * US_PER_DAY
"""0001-01-01T00:00:00Z, the first instant a `datetime` can show."""
MAX_INSTANT: Instant = (date.max.toordinal() + 1 - EPOCH_ORDINAL) * US_PER_DAY - 1
"""9999-12-31T23:59:59.999999Z, the last instant a `datetime` can show. Calendar arithmetic
that would pass it stops there (a due date beyond year 9999 is effectively never), and
`to_datetime` shows later instants as it."""


def from_datetime(moment: datetime) -> Instant:
    """A `datetime` as an instant; a naive one is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _ONE_US


def from_date(day: date) -> Instant:
    """A calendar day as the instant of its 00:00 UTC."""
    return (day.toordinal() - EPOCH_ORDINAL) * US_PER_DAY


def to_datetime(instant: Instant) -> datetime:
    """An instant as an aware UTC `datetime`, held to MIN_INSTANT..MAX_INSTANT (no overflow)."""
    if instant > MAX_INSTANT:
        instant = MAX_INSTANT
    elif instant < MIN_INSTANT:
        instant = MIN_INSTANT
    return EPOCH + timedelta(microseconds=instant)


def format_instant(instant: Instant) -> str:
    """`2026-03-01T10:00:00Z` (fractional seconds only when there are some)."""
    return to_datetime(instant).replace(tzinfo=None).isoformat() + "Z"


def parse_instant(text: str) -> Instant:
    """Parse `2031-01-01T00:00:00Z`, an offset form, or a bare date (00:00 UTC).

    Raises ValueError with a message that says what form is expected.
    """
    try:
        if len(text) == 10:
            return from_date(date.fromisoformat(text))
        return from_datetime(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 instant; write it like 2031-01-01T00:00:00Z"
        ) from None


def _add_months_by_date(instant: Instant, months: int) -> Instant:
    days, rest = divmod(instant, US_PER_DAY)
    try:
        day = _from_ordinal(days + EPOCH_ORDINAL)
        year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
        dom = day.day
        if dom > 28:
            dom = min(dom, calendar.monthrange(year, month0 + 1)[1])
        return (date(year, month0 + 1, dom).toordinal() - EPOCH_ORDINAL) * US_PER_DAY + rest
    except (ValueError, OverflowError):
        return MAX_INSTANT if months >= 0 else MIN_INSTANT


_TABLE_FIRST_YEAR = 1900
_MONTH_STARTS: tuple[int, ...] = tuple(
    date(year, month, 1).toordinal() - EPOCH_ORDINAL
    for year in range(_TABLE_FIRST_YEAR, 2601)
    for month in range(1, 13)
)
"""Days since the epoch of the 1st of each month from 1900 to 2600 (an immutable table)."""
_TABLE_BASE = _TABLE_FIRST_YEAR * 12
_TABLE_LAST = len(_MONTH_STARTS) - 1


def add_months(instant: Instant, months: int) -> Instant:
    """`months` calendar months after `instant`, the day clamped to the month's end."""
    days = instant // US_PER_DAY
    try:
        day = _from_ordinal(days + EPOCH_ORDINAL)
    except (ValueError, OverflowError):
        return _add_months_by_date(instant, months)
    index = day.year * 12 + day.month - 1 + months - _TABLE_BASE
    if not 0 <= index < _TABLE_LAST:
        return _add_months_by_date(instant, months)
    start = _MONTH_STARTS[index]
    dom = day.day
    if dom > 28:
        length = _MONTH_STARTS[index + 1] - start
        if dom > length:
            dom = length
    return instant + (start + dom - 1 - days) * US_PER_DAY


def add_period(instant: Instant, period: Period) -> Instant:
    """`period` after `instant`, in UTC calendar arithmetic (see the module docstring)."""
    if period.months:
        instant = add_months(instant, period.months)
    return min(instant + period.days * US_PER_DAY + period.seconds * US_PER_SECOND, MAX_INSTANT)
