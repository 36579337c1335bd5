"""What an SRE sees, on the real stack: a real Prometheus (Debian's package) scraping a running
`lethe worker` through a backlog, its alert reaching the Alertmanager's receiver, and every
PromQL expression of the dashboard and of the alert rules returning data.

The run has tables and change topics of its own, as in `test_enforce` (whose helpers it
uses): `obs_it_<run>_<table>` copies of the demo's tables in PostgreSQL, the Debezium change
records written by the test. The monitoring is the test's own too, never the shared stack's:
the stack's parts (`lethe.stack.prometheus`, `lethe.stack.alertmanager`) started on free
ports under a temporary stack dir, Prometheus scraping the worker every 5 s and loading the
rules of config/prometheus/rules/lethe.yml with their `for` durations and windows shortened
to seconds (`FAST`; the thresholds and expressions are the shipped ones; promtool's unit tests
cover the durations: tests/unit/test_alert_rules.py).

The backlog scenario (the enforcer held back while rows fall due, then let go): the worker runs
`tests/integration/stalled_worker.py` with every change record taking `HANDLE_DELAY_S` to
assign. Connection logs falling due over the next minute are read first; then `FILLER`
tombstones on the legal holds topic keep that input behind for over a minute. A stage is
issued only once every input that can change the row's fate is processed past its due (the
holds can), so the logs' deletes wait: the backlog rises, the backlog alert goes pending,
then firing, and reaches the receiver; once the holds are read, the deletes are issued, the
backlog drains to 0, the alert resolves (the receiver gets that too), and the delay histogram
records the wait. The sink deletes the rows; the test plays Debezium for the deletes so that
the commands are confirmed, writes one record that is not JSON (a dead letter) and an open
legal hold. Then every expression of the dashboard and of the rules (their comparisons made
`bool`, so that they return a series whenever their inputs exist) must return data, and
`promtool check metrics` must accept the worker's /metrics. With LETHE_IT_DASHBOARD_DATA set to a
file name, the test also writes there what the dashboard's main panels showed during the run
(`docs/dashboard_png.py` draws docs/dashboard.png from it).

At the end the worker and the monitoring are stopped, the sink is let to catch up, and the
run's topics, consumer group and tables are dropped. Fails (never skips) when the stack is down.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from confluent_kafka import Producer

from lethe.settings import Settings
from lethe.stack.alertmanager import Alertmanager, AlertReceiver
from lethe.stack.prometheus import Prometheus
from tests.integration.test_enforce import (
    PARTITIONS,
    ChangeWriter,
    Run,
    provisioned,
)
from tests.integration.workers import (
    WorkerProcess,
    free_port,
    produce,
    quiet,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP_ID_PREFIX = "obs-it-"
HANDLE_DELAY_S = 0.05
FILLER = 1600
"""Tombstones on the holds topic: FILLER x HANDLE_DELAY_S = 80 s of the holds lagging."""
DUES_S = (10, 15, 20, 25, 30, 35)
"""When each connection log's delete falls due, in seconds after the worker has read the hold."""
CUSTOMER, HELD = 987_650_061, 987_650_062
"""Customer ids no demo row has."""
FAST = (("for: 10m", "for: 20s"), ("for: 15m", "for: 20s"), ("for: 5m", "for: 20s"),
        ("for: 2m", "for: 20s"), ("for: 1m", "for: 10s"), ("[10m]", "[1m]"),
        ("offset 10m", "offset 1m"))  # fmt: skip
"""The shipped rules' durations and windows, shortened for a run of minutes."""


@dataclass
class ObsRun(Run):
    def table(self, kind: str) -> str:
        return f"obs_it_{self.run}_{kind}"


@dataclass
class Monitoring:
    settings: Settings
    prometheus: Prometheus
    alertmanager: Alertmanager
    receiver: AlertReceiver

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query now (fails on a query Prometheus refuses)."""
        url = f"{self.settings.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """The series of `expr` from `start` to `end` (Unix seconds), a point every 2 s."""
        url = f"{self.settings.prometheus_url}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": 2}
        )
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def alert_state(self, name: str) -> str | None:
        """The alert's state in Prometheus (pending, firing) or None when inactive."""
        url = f"{self.settings.prometheus_url}/api/v1/alerts"
        with urllib.request.urlopen(url, timeout=10) as answer:
            alerts = json.loads(answer.read())["data"]["alerts"]
        states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
        return "firing" if "firing" in states else (states[0] if states else None)

    def notifications(self, name: str) -> list[str]:
        """The statuses (firing, resolved) of the receiver's notifications naming the alert."""
        with urllib.request.urlopen(f"{self.settings.alert_receiver_url}/alerts") as answer:
            sent = json.loads(answer.read())
        return [
            alert["status"]
            for notification in sent
            for alert in notification["alerts"]
            if alert["labels"]["alertname"] == name
        ]


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's tables and change topics, its policy; dropped at the end."""
    with provisioned(real_stack, APP_ID_PREFIX, tmp_path_factory.mktemp("obs"), ObsRun) as run:
        yield run


@pytest.fixture(scope="module")
def worker(run: Run) -> Iterator[WorkerProcess]:
    port = free_port()
    log_path = run.workdir / "worker.log"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LETHE_CLOCK") and name != "LETHE_ENFORCE"
    }
    env.update(
        {
            "LETHE_DATA_DIR": str(run.workdir / "data"),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(run.policy),
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            "LETHE_CLOCK": "wall",
            "LETHE_TICK_INTERVAL": "0.5",
            "LETHE_CENSUS_INTERVAL": "1",
            "LETHE_IT_HANDLE_DELAY_S": str(HANDLE_DELAY_S),
            "PYTHONUNBUFFERED": "1",
        }
    )
    stalled = ROOT / "tests" / "integration" / "stalled_worker.py"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(stalled), "--app-id", run.app_id, "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    handle = WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", run.app_id)
    try:
        wait_for("the worker's /metrics page", handle.metrics, handle)
        yield handle
    finally:
        stop(handle)


@pytest.fixture(scope="module")
def monitoring(
    worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitoring]:
    """Prometheus, Alertmanager and its receiver of the test's own, scraping `worker`."""
    base = tmp_path_factory.mktemp("monitoring")
    config = base / "config"
    for name in ("prometheus/prometheus.yml", "alertmanager/alertmanager.yml"):
        (config / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "config" / name, config / name)
    rules = (ROOT / "config" / "prometheus" / "rules" / "lethe.yml").read_text()
    for shipped, fast in FAST:
        rules = rules.replace(shipped, fast)
    (config / "prometheus" / "rules").mkdir()
    (config / "prometheus" / "rules" / "lethe.yml").write_text(rules)
    port = urllib.parse.urlsplit(worker.metrics_url).port
    settings = Settings(
        stack_dir=base / "stack",
        config_dir=config,
        web_port=port or 0,
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        alertmanager_url=f"http://127.0.0.1:{free_port()}",
        alert_receiver_url=f"http://127.0.0.1:{free_port()}",
    )
    parts = (AlertReceiver(settings), Alertmanager(settings), Prometheus(settings))
    try:
        for part in parts:
            part.up()
        yield Monitoring(settings, parts[2], parts[1], parts[0])
    finally:
        for part in reversed(parts):
            part.stop()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def log_row(number: int, customer: int, due: datetime) -> dict[str, Any]:
    """A connection log deleted when `due` comes (a year after it was logged)."""
    logged = due.replace(year=due.year - 1)
    return {"id": number, "customer_id": customer, "ip_address": "192.0.2.61",
            "logged_at": iso(logged)}  # fmt: skip


def write_filler(settings: Settings, run: Run) -> None:
    producer = Producer(quiet(settings))
    for number in range(FILLER):
        key = orjson.dumps({"id": 2_000_000 + number})
        producer.produce(run.topic("legal_holds"), key=key, value=None)
    assert producer.flush(60) == 0, "the filler was not delivered"


def changes_seen(worker: WorkerProcess, table: str, op: str) -> int:
    return (worker.change_counts(table) or {}).get(op, 0)


def log_ids(settings: Settings, run: Run) -> set[int]:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {run.table('connection_logs')}").fetchall()
    return {row[0] for row in rows}


def bool_comparisons(expr: str) -> str:
    """The expression with every comparison to a number made `bool` (0 or 1 per series)."""
    return re.sub(r"(==|>=|<=|>|<)\s*(-?[0-9.]+)", r"\1 bool \2", expr)


def dashboard_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "lethe_dashboard", ROOT / "docker" / "grafana" / "dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_queries() -> list[str]:
    queries: list[str] = dashboard_module().queries()
    return queries


MAIN_PANELS = (
    "Backlog by table and action",
    "Oldest overdue stage by table",
    "Commands issued, confirmed, re-issued, refused (per second)",
    "Delay from due to issued, and issued to confirmed",
    "Unconfirmed commands, and the oldest",
    "Consumer lag per partition (seconds)",
)


def save_panels(monitoring: Monitoring, start: float, path: Path) -> None:
    """What the dashboard's main panels show from `start` to now, and the backlog alert's
    states, as JSON for docs/dashboard_png.py."""
    end = time.time()
    panels = []
    for title, unit, targets in dashboard_module().GRAPHS:
        if title not in MAIN_PANELS:
            continue
        series = []
        for expr, legend in targets:
            for found in monitoring.query_range(expr, start, end):
                labels = found["metric"]
                name = re.sub(r"{{(\w+)}}", lambda m, at=labels: at.get(m[1], ""), legend)
                values = [[t, float(v)] for t, v in found["values"]]
                series.append({"legend": name, "values": values})
        panels.append({"title": title, "unit": unit, "series": series})
    alerts = monitoring.query_range('ALERTS{alertname="LetheBacklogGrowing"}', start, end)
    states = [
        {"state": found["metric"]["alertstate"], "times": [t for t, _ in found["values"]]}
        for found in alerts
    ]
    path.write_text(json.dumps({"start": start, "end": end, "panels": panels,
                                "alert": states}, indent=1))  # fmt: skip


def rule_queries() -> dict[str, str]:
    document = yaml.safe_load((ROOT / "config" / "prometheus" / "rules" / "lethe.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def test_a_backlog_rises_alerts_drains_and_resolves_and_every_panel_and_rule_has_data(
    real_stack: Settings, run: Run, worker: WorkerProcess, monitoring: Monitoring
) -> None:
    began = time.time()
    changes = ChangeWriter(real_stack, run)
    logs = run.source("connection_logs")
    hold = {"id": 1, "customer_id": HELD, "case_ref": "IT-OBS",
            "placed_at": iso(datetime.now(UTC)), "released_at": None}  # fmt: skip
    changes.write("legal_holds", "c", None, hold)
    holds = run.source("legal_holds")
    wait_for("the hold read", lambda: changes_seen(worker, holds, "c") or None, worker)
    start = datetime.now(UTC).replace(microsecond=0)
    rows = [log_row(n + 1, CUSTOMER, start + timedelta(seconds=s)) for n, s in enumerate(DUES_S)]
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        for row in rows:
            conn.execute(
                f"INSERT INTO {run.table('connection_logs')} (id, customer_id, ip_address, "
                "logged_at) VALUES (%(id)s, %(customer_id)s, %(ip_address)s, %(logged_at)s)",
                row,
            )
    for row in rows:
        changes.write("connection_logs", "c", None, row)
    wait_for(
        "the logs read",
        lambda: True if changes_seen(worker, logs, "c") == len(rows) else None,
        worker,
    )
    write_filler(real_stack, run)
    assert datetime.now(UTC) < start + timedelta(seconds=DUES_S[0]), (
        "the logs fell due before the holds lagged: raise DUES_S"
    )

    query = f'sum(lethe_backlog_rows{{table="{logs}"}})'
    wait_for("the backlog risen in Prometheus", lambda: monitoring.value(query) or None, worker)
    wait_for(
        "LetheBacklogGrowing pending",
        lambda: True if monitoring.alert_state("LetheBacklogGrowing") else None,
        worker,
    )
    wait_for(
        "LetheBacklogGrowing at the receiver",
        lambda: True if "firing" in monitoring.notifications("LetheBacklogGrowing") else None,
        worker,
    )
    assert log_ids(real_stack, run) == {row["id"] for row in rows}, "nothing deleted meanwhile"

    wait_for("the backlog drained", lambda: True if monitoring.value(query) == 0 else None, worker)
    assert max_seen(monitoring, query) == len(rows), "every log waited in the backlog"
    wait_for("the logs deleted by the sink", lambda: True if not log_ids(real_stack, run) else None)
    for row in rows:  # Debezium, for the sink's deletes (REPLICA IDENTITY FULL)
        changes.write("connection_logs", "d", row, None)
    produce(real_stack, run.topic("connection_logs"), b'{"id": 99}', b"not json")
    wait_for(
        "LetheBacklogGrowing resolved at the receiver",
        lambda: True if "resolved" in monitoring.notifications("LetheBacklogGrowing") else None,
        worker,
    )

    waited = f'sum(lethe_due_to_issued_seconds_count{{table="{logs}"}})'
    quick = f'sum(lethe_due_to_issued_seconds_bucket{{table="{logs}",le="10.0"}})'
    assert monitoring.value(waited) == len(rows)
    assert monitoring.value(quick) == 0, "every delete waited more than 10 s for the holds"

    confirmed = f'sum(lethe_commands_confirmed_total{{table="{logs}"}})'
    wait_for(
        "the deletes confirmed", lambda: True if monitoring.value(confirmed) == 6 else None, worker
    )
    wait_for(
        "the dead letter counted",
        lambda: True if monitoring.query("lethe_dead_letters_total") else None,
        worker,
    )
    time.sleep(12)  # two more scrapes: every rate has two samples of each counter

    empty = [q for q in dashboard_queries() if not monitoring.query(q)]
    assert empty == [], "dashboard queries without data"
    silent = {
        name: bool_comparisons(expr)
        for name, expr in rule_queries().items()
        if not monitoring.query(bool_comparisons(expr))
    }
    assert silent == {}, "rule expressions without data"

    if data := os.environ.get("LETHE_IT_DASHBOARD_DATA"):
        save_panels(monitoring, began, Path(data))

    with urllib.request.urlopen(worker.metrics_url, timeout=10) as answer:
        text = answer.read()
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def max_seen(monitoring: Monitoring, query: str) -> float:
    """The highest value of `query` over the last 5 minutes."""
    found = monitoring.value(f"max_over_time(({query})[5m:1s])")
    return found if found is not None else 0.0
