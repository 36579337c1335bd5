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
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

CHANGE_EVENTS = "lethe_change_events"
COMMANDS_ISSUED = "lethe_commands_issued"
COMMANDS_CONFIRMED = "lethe_commands_confirmed"
COMMANDS_REFUSED = "lethe_commands_refused"
DEAD_LETTERS = "lethe_dead_letters"


@dataclass(frozen=True, slots=True)
class WorkerCounts:
    """The worker's counters by table (`public.<name>`); `confirmed` None when not served."""

    changes: Mapping[str, int] = field(default_factory=dict)
    issued: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """By table, then action."""
    refused: Mapping[str, int] = field(default_factory=dict)
    confirmed: Mapping[str, int] | None = None
    dead_letters: int = 0
    """Records the worker could not use (`lethe_dead_letters_total`, all topics and reasons)."""


def parse_metrics(text: str) -> WorkerCounts:
    """The counters the summary shows, from a Prometheus text exposition."""
    changes: dict[str, int] = defaultdict(int)
    issued: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    refused: dict[str, int] = defaultdict(int)
    confirmed: dict[str, int] | None = None
    dead_letters = 0
    for family in text_string_to_metric_families(text):
        name = family.name.removesuffix("_total")
        if name == COMMANDS_CONFIRMED:
            confirmed = defaultdict(int)
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            table = sample.labels.get("table", "")
            count = int(sample.value)
            if name == CHANGE_EVENTS:
                changes[table] += count
            elif name == COMMANDS_ISSUED:
                issued[table][sample.labels.get("action", "")] += count
            elif name == COMMANDS_REFUSED:
                refused[table] += count
            elif name == COMMANDS_CONFIRMED and confirmed is not None:
                confirmed[table] += count
            elif name == DEAD_LETTERS:
                dead_letters += count
    return WorkerCounts(
        changes=dict(changes),
        issued={table: dict(actions) for table, actions in issued.items()},
        refused=dict(refused),
        confirmed=None if confirmed is None else dict(confirmed),
        dead_letters=dead_letters,
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


COLUMNS = ("rows start", "rows now", "changes", "due", "issued", "confirmed", "refused")
"""The numeric columns of the summary, after the table's name."""
HEADERS = {"rows start": "rows at\nstart", "rows now": "rows\nnow", "changes": "changes\nread"}


def table_values(snapshot: Snapshot, table: str) -> dict[str, int | None]:
    """One table's line of the summary; `confirmed` None when the worker does not count it."""
    counts = snapshot.counts
    return {
        "rows start": snapshot.rows_at_start.get(table, 0),
        "rows now": snapshot.rows_now.get(table, 0),
        "changes": counts.changes.get(table, 0),
        "due": snapshot.due.get(table, 0),
        "issued": sum(counts.issued.get(table, {}).values()),
        "confirmed": None if counts.confirmed is None else counts.confirmed.get(table, 0),
        "refused": counts.refused.get(table, 0),
    }


def issued_by_action(counts: WorkerCounts) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for actions in counts.issued.values():
        for action, count in actions.items():
            totals[action] += count
    return dict(sorted(totals.items()))


def render(snapshot: Snapshot) -> Group:
    """The summary as a rich renderable: the clock line, one line per table and their totals,
    the commands issued by action, the worker's status."""
    lines = {table: table_values(snapshot, table) for table in snapshot.tables}
    totals: dict[str, int | None] = {}
    for column in COLUMNS:
        found = [values[column] for values in lines.values()]
        totals[column] = None if None in found else sum(v for v in found if v is not None)
    table = Table(box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False)
    table.add_column("table", footer="all tables", no_wrap=True)
    for column in COLUMNS:
        table.add_column(
            HEADERS.get(column, column), footer=_cell(totals[column]), justify="right", no_wrap=True
        )
    for name, values in lines.items():
        table.add_row(_short(name), *(_cell(values[column]) for column in COLUMNS))
    actions = issued_by_action(snapshot.counts)
    by_action = ", ".join(f"{action} {count}" for action, count in actions.items())
    parts: list[Text | Table] = [
        Text(snapshot.heading, style="bold"),
        table,
        Text(f"issued by action: {by_action or 'none yet'}"),
    ]
    if snapshot.counts.dead_letters:
        parts.append(
            Text(
                f"dead letters: {snapshot.counts.dead_letters} records the worker could not use "
                "(lethe.deadletter; its log says why)",
                style="bold red",
            )
        )
    if snapshot.status:
        parts.append(Text(snapshot.status))
    return Group(*parts)


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)
