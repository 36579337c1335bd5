"""`lethe demo` on the real stack: the demo rows are seeded, the worker deletes and anonymises
the overdue ones through the JDBC sink, and the summary shows the commands it issued.

The demo really changes the demo database, so the test puts every demo table back as it found
it at the end: rows the demo deleted or anonymised are restored, rows the seeding added are
removed. The tests before or after it see the demo database they expect. Needs `lethe stack
up` (which registers the sink).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lethe.demo.data import COLUMNS, FIRST_ID
from lethe.demo.seed import row_counts, upsert_rows
from lethe.settings import Settings
from tests.integration.workers import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SUMMARY_COLUMNS = ("rows start", "rows now", "changes", "due", "issued", "confirmed", "refused")


def table_rows(pg: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every demo table, as column -> value."""
    found = {}
    for table, columns in COLUMNS.items():
        cursor = pg.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")
        found[table] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return found


def fingerprint(pg: psycopg.Connection[Any]) -> tuple[object, ...]:
    counts = row_counts(pg)
    anonymised = pg.execute(
        "SELECT count(*) FROM satisfaction_surveys WHERE respondent_email IS NULL"
    ).fetchone()
    return (*sorted(counts.items()), anonymised)


def wait_until_the_sink_is_done(pg: psycopg.Connection[Any], quiet_s: float = 6.0) -> None:
    """Until the demo tables have not changed for `quiet_s` seconds (at most two minutes)."""
    deadline = time.monotonic() + 120
    last, since = fingerprint(pg), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(1)
        now = fingerprint(pg)
        if now != last:
            last, since = now, time.monotonic()


def restore(pg: psycopg.Connection[Any], before: dict[str, list[dict[str, Any]]]) -> None:
    wait_until_the_sink_is_done(pg)
    with pg.transaction():
        for table, rows in before.items():
            pg.execute(
                f"DELETE FROM {table} WHERE NOT (id = ANY(%s))", ([row["id"] for row in rows],)
            )
            if rows:
                upsert_rows(pg, table, rows)


def summary_totals(output: str) -> dict[str, int | None]:
    """The numbers of the last "all tables" line the demo printed."""
    lines = [line.split() for line in output.splitlines() if line.strip().startswith("all tables")]
    assert lines, f"no summary in the demo's output:\n{output[-3000:]}"
    cells = lines[-1][2:]
    assert len(cells) == len(SUMMARY_COLUMNS), lines[-1]
    return {
        column: None if cell == "-" else int(cell)
        for column, cell in zip(SUMMARY_COLUMNS, cells, strict=True)
    }


def test_the_demo_deletes_and_anonymises_overdue_rows_and_shows_the_commands(
    real_stack: Settings, pg: psycopg.Connection[Any]
) -> None:
    before = table_rows(pg)
    env = {**os.environ, "LETHE_WEB_PORT": str(free_port())}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lethe", "demo", "--duration", "60"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        assert re.search(r"demo rows: \d+ in 18 tables", output), output[:2000]
        shown = summary_totals(done.stdout)
        assert shown["due"] and shown["due"] > 100, shown
        assert shown["issued"] and shown["issued"] > 100, shown
        assert shown["rows now"] is not None and shown["rows start"] is not None
        assert shown["rows now"] < shown["rows start"], shown
        wait_until_the_sink_is_done(pg)
        seeded = sum(1 for rows in table_rows(pg).values() for row in rows if row["id"] >= FIRST_ID)
        assert sum(row_counts(pg).values()) < shown["rows start"]
        assert seeded > 0
        anonymised = pg.execute(
            "SELECT count(*) FROM satisfaction_surveys "
            "WHERE id >= %s AND respondent_email IS NULL AND customer_id IS NULL",
            (FIRST_ID,),
        ).fetchone()
        assert anonymised is not None and anonymised[0] > 0
    finally:
        restore(pg, before)
    assert table_rows(pg) == before
