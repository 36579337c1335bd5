"""The demo's live summary: a worker's /metrics text and row counts give the numbers shown."""

from __future__ import annotations

from rich.console import Console

from lethe.demo.schedule import Schedule
from lethe.demo.summary import Snapshot, WorkerCounts, parse_metrics, render

METRICS = """\
# HELP lethe_change_events_total Debezium change records processed, by table and operation.
# TYPE lethe_change_events_total counter
lethe_change_events_total{op="r",table="public.customers"} 305.0
lethe_change_events_total{op="d",table="public.customers"} 31.0
lethe_change_events_total{op="r",table="public.satisfaction_surveys"} 230.0
lethe_change_events_total{op="u",table="public.satisfaction_surveys"} 219.0
# HELP lethe_change_events_created Debezium change records processed.
# TYPE lethe_change_events_created gauge
lethe_change_events_created{op="r",table="public.customers"} 1.7804e+09
# HELP lethe_commands_issued_total Retention commands sent to lethe.commands.
# TYPE lethe_commands_issued_total counter
lethe_commands_issued_total{action="archive",table="public.customers"} 72.0
lethe_commands_issued_total{action="delete",table="public.customers"} 31.0
lethe_commands_issued_total{action="anonymise",table="public.satisfaction_surveys"} 219.0
# HELP lethe_commands_refused_total Retention commands not sent.
# TYPE lethe_commands_refused_total counter
lethe_commands_refused_total{reason="no_row_values",table="public.satisfaction_surveys"} 2.0
# HELP lethe_dead_letters_total Input records that could not be used.
# TYPE lethe_dead_letters_total counter
lethe_dead_letters_total{reason="internal_error",topic="lethe-demo-subject-events"} 3.0
lethe_dead_letters_total{reason="bad_record",topic="hosting.public.orders"} 1.0
"""

CONFIRMED = """\
# HELP lethe_commands_confirmed_total Commands whose effect the change stream showed.
# TYPE lethe_commands_confirmed_total counter
lethe_commands_confirmed_total{action="delete",table="public.customers"} 29.0
lethe_commands_confirmed_total{action="anonymise",table="public.satisfaction_surveys"} 200.0
"""

TABLES = ("public.customers", "public.satisfaction_surveys", "public.orders")


def shown(counts: WorkerCounts) -> dict[str, list[str]]:
    """The summary as printed at 120 columns: the cells of each table line, by first cell."""
    snapshot = Snapshot(
        tables=TABLES,
        rows_at_start={"public.customers": 305, "public.satisfaction_surveys": 230},
        rows_now={"public.customers": 274, "public.satisfaction_surveys": 230},
        due={"public.customers": 109, "public.satisfaction_surveys": 219},
        counts=counts,
        heading="enforcement clock 2027-09-05 (+0.8 years; a year every 60 s)",
        status="worker pid 4242 running",
    )
    console = Console(width=120, record=True, color_system=None)
    console.print(render(snapshot))
    text = console.export_text()
    assert text.startswith("enforcement clock 2027-09-05 (+0.8 years")
    assert "worker pid 4242 running" in text
    lines = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] in {"customers", "satisfaction_surveys", "orders", "all"}:
            lines[cells[0]] = cells[1:] if cells[0] != "all" else cells[2:]
    return lines


def test_the_worker_counters_are_summed_by_table_and_action() -> None:
    counts = parse_metrics(METRICS)
    assert counts.changes == {"public.customers": 336, "public.satisfaction_surveys": 449}
    assert counts.issued == {
        "public.customers": {"archive": 72, "delete": 31},
        "public.satisfaction_surveys": {"anonymise": 219},
    }
    assert counts.refused == {"public.satisfaction_surveys": 2}
    assert counts.confirmed is None
    assert counts.dead_letters == 4


def test_each_table_shows_rows_changes_due_issued_and_a_dash_without_confirmations() -> None:
    lines = shown(parse_metrics(METRICS))
    # rows at start, rows now, changes read, due, issued, confirmed, refused
    assert lines["customers"] == ["305", "274", "336", "109", "103", "-", "0"]
    assert lines["satisfaction_surveys"] == ["230", "230", "449", "219", "219", "-", "2"]
    assert lines["orders"] == ["0", "0", "0", "0", "0", "-", "0"]
    assert lines["all"] == ["535", "504", "785", "328", "322", "-", "2"]


def test_confirmations_are_shown_when_the_worker_counts_them() -> None:
    lines = shown(parse_metrics(METRICS + CONFIRMED))
    assert lines["customers"][5] == "29"
    assert lines["satisfaction_surveys"][5] == "200"
    assert lines["orders"][5] == "0"
    assert lines["all"][5] == "229"


def test_the_commands_issued_by_action_are_listed_under_the_table() -> None:
    console = Console(width=120, record=True, color_system=None)
    snapshot = Snapshot(TABLES, {}, {}, {}, parse_metrics(METRICS), "clock")
    console.print(render(snapshot))
    text = console.export_text()
    assert "issued by action: anonymise 219, archive 72, delete 31" in text
    assert "dead letters: 4 records the worker could not use" in text


def test_due_counts_the_commands_issued_by_the_clocks_now() -> None:
    plan = Schedule({"public.orders": (10, 20, 20, 35), "public.customers": ()})
    assert plan.due_by(9) == {"public.orders": 0, "public.customers": 0}
    assert plan.due_by(20) == {"public.orders": 3, "public.customers": 0}
    assert plan.due_by(40) == {"public.orders": 4, "public.customers": 0}
