"""The demo's one-screen summary: per table, rows left, changes read, commands due, issued,
confirmed.

Its sources: the worker's /metrics text (read with prometheus_client's parser), the rows
now in the demo database, and the commands the demo's schedule (`lethe.demo.schedule`) says
are due by the enforcement clock's now. `confirmed` comes from
`lethe_commands_confirmed_total{table,action}` when the worker serves it; without it the
column shows a dash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table
from rich.text import Text

CHANGE_EVENTS = "lethe_change_events"
COMMANDS_ISSUED = "lethe_commands_issued"
COMMANDS_CONFIRMED = "lethe_commands_confirmed"
COMMANDS_REFUSED = "lethe_commands_refused"
ACTION_LETTERS = {"archive": "ar", "anonymise": "an", "delete": "de"}


@dataclass(frozen=True, slots=True)
class WorkerCounts:
    """The worker's counters by table (`public.<name>`); `confirmed` None when not served."""

    changes: Mapping[str, int] = field(default_factory=dict)
    issued: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """By table, then action."""
    refused: Mapping[str, int] = field(default_factory=dict)
    confirmed: Mapping[str, int] | None = None


def parse_metrics(text: str) -> WorkerCounts:
    """The counters the summary shows, from a Prometheus text exposition."""
    changes: dict[str, int] = defaultdict(int)
    issued: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    refused: dict[str, int] = defaultdict(int)
    confirmed: dict[str, int] | None = None
    for family in text_string_to_metric_families(text):
        if family.name == COMMANDS_CONFIRMED:
            confirmed = defaultdict(int)
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            table = sample.labels.get("table", "")
            count = int(sample.value)
            if family.name == CHANGE_EVENTS:
                changes[table] += count
            elif family.name == COMMANDS_ISSUED:
                issued[table][sample.labels.get("action", "")] += count
            elif family.name == COMMANDS_REFUSED:
                refused[table] += count
            elif family.name == COMMANDS_CONFIRMED and confirmed is not None:
                confirmed[table] += count
    return WorkerCounts(
        changes=dict(changes),
        issued={table: dict(actions) for table, actions in issued.items()},
        refused=dict(refused),
        confirmed=None if confirmed is None else dict(confirmed),
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one frame of the summary shows."""

    tables: Sequence[str]
    """`public.<name>`, in display order."""
    rows_at_start: Mapping[str, int]
    rows_now: Mapping[str, int]
    due: Mapping[str, int]
    counts: WorkerCounts
    heading: str
    """The clock line: where the enforcement clock stands, how fast it runs, the wall time."""
    status: str = ""
    """The worker's state, or why the metrics could not be read."""


def _short(table: str) -> str:
    return table.split(".", 1)[-1]


def _issued_detail(actions: Mapping[str, int]) -> str:
    return " ".join(
        f"{ACTION_LETTERS.get(action, action)} {count}"
        for action, count in sorted(actions.items())
        if count
    )


def render(snapshot: Snapshot) -> Group:
    """The summary as a rich renderable: the clock line, the table, the worker's status."""
    counts = snapshot.counts
    table = Table(title=None, expand=False, show_footer=True)
    totals: dict[str, int] = defaultdict(int)
    columns = [
        ("table", "left"),
        ("rows at start", "right"),
        ("rows now", "right"),
        ("changes read", "right"),
        ("due", "right"),
        ("issued", "right"),
        ("by action", "left"),
        ("confirmed", "right"),
        ("refused", "right"),
    ]
    lines: list[list[str]] = []
    for name in snapshot.tables:
        issued = counts.issued.get(name, {})
        values = {
            "rows at start": snapshot.rows_at_start.get(name, 0),
            "rows now": snapshot.rows_now.get(name, 0),
            "changes read": counts.changes.get(name, 0),
            "due": snapshot.due.get(name, 0),
            "issued": sum(issued.values()),
            "refused": counts.refused.get(name, 0),
        }
        if counts.confirmed is not None:
            values["confirmed"] = counts.confirmed.get(name, 0)
        for column, value in values.items():
            totals[column] += value
        lines.append(
            [
                _short(name),
                *(str(values[column]) if column in values else "-" for column, _ in columns[1:6]),
                _issued_detail(issued),
                str(values["confirmed"]) if "confirmed" in values else "-",
                str(values["refused"]),
            ]
        )
    footer = {column: str(totals[column]) for column in totals}
    footer["table"] = "all tables"
    footer.setdefault("confirmed", "-")
    for column, justify in columns:
        table.add_column(
            column,
            footer=footer.get(column, ""),
            justify=justify,  # type: ignore[arg-type]
        )
    for line in lines:
        table.add_row(*line)
    parts: list[Text | Table] = [Text(snapshot.heading, style="bold"), table]
    if snapshot.status:
        parts.append(Text(snapshot.status))
    return Group(*parts)
