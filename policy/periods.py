"""ISO-8601 calendar periods.

A period such as `P1Y`, `P15M`, `P180D` or `P1Y6M` is added field by field
(`policy.instants.add_period`): years and months first, with the day clamped to
the end of a shorter month (one year after 2024-02-29 is 2025-02-28; one month
after 2025-01-31 is 2025-02-28), then days and the time part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERIOD = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


class PeriodSyntaxError(ValueError):
    """The text is not an ISO-8601 duration such as P1Y, P15M, P30D or PT12H."""


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A calendar period: months (years are 12 months) plus an exact part in seconds."""

    months: int = 0
    days: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse `P1Y`, `P13M`, `P180D`, `P2W`, `PT36H`, `P1Y6M`; raise PeriodSyntaxError."""
        match = _PERIOD.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise PeriodSyntaxError(
                f"{text!r} is not an ISO-8601 duration; write it like P1Y, P15M, P180D or PT12H"
            )
        part = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        return cls(
            months=part["years"] * 12 + part["months"],
            days=part["weeks"] * 7 + part["days"],
            seconds=part["hours"] * 3600 + part["minutes"] * 60 + part["seconds"],
        )

    def __str__(self) -> str:
        if self.is_zero:
            return "PT0S"
        years, months = divmod(self.months, 12)
        date = "".join(
            f"{n}{unit}" for n, unit in ((years, "Y"), (months, "M"), (self.days, "D")) if n
        )
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        time = "".join(
            f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n
        )
        return "P" + date + ("T" + time if time else "")

    @property
    def is_zero(self) -> bool:
        return self.months == 0 and self.days == 0 and self.seconds == 0

    def upper_bound_days(self) -> float:
        """The longest this period can last, in days (a month counted as 31 days)."""
        return self.months * 31 + self.days + self.seconds / 86400

    def lower_bound_days(self) -> float:
        """The shortest this period can last, in days (a month counted as 28 days)."""
        return self.months * 28 + self.days + self.seconds / 86400
