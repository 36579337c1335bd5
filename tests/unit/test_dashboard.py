"""The Grafana dashboard JSON is what docker/grafana/dashboard.py builds, and shows what the
issue asks an SRE to see at a glance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "docker" / "grafana" / "dashboard.py"
JSON = ROOT / "docker" / "grafana" / "dashboards" / "lethe.json"


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lethe_dashboard", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_is_what_the_module_builds():
    assert JSON.read_text() == dashboard_module().render(), (
        "docker/grafana/dashboards/lethe.json is stale: run python docker/grafana/dashboard.py"
    )


def test_the_panels_query_every_metric_an_sre_watches():
    expressions = " ".join(
        target["expr"]
        for panel in json.loads(JSON.read_text())["panels"]
        for target in panel.get("targets", [])
    )
    for metric in (
        "lethe_backlog_rows",
        "lethe_overdue_oldest_age_seconds",
        "lethe_commands_issued_total",
        "lethe_commands_confirmed_total",
        "lethe_due_to_issued_seconds_bucket",
        "lethe_issued_to_confirmed_seconds_bucket",
        "lethe_forecast_rows",
        "lethe_consumer_lag_seconds",
        "lethe_consumer_lag_messages",
        "lethe_dead_letters_total",
        "lethe_legal_holds",
        "lethe_unclassified_tables",
        "lethe_connector_tasks",
        "lethe_connector_state",
        "lethe_connect_poll_age_seconds",
    ):
        assert metric in expressions, metric
