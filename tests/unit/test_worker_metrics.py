"""The worker's own gauges as Prometheus scrapes them: the census summed over partitions, the
consumer lag per partition, and `promtool check metrics` on the /metrics text."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import generate_latest

from lethe.agents.lag import LagReport
from lethe.agents.watermarks import ChangeProgress, PartitionEnd
from lethe.app import create_app
from lethe.metrics import CensusBoard, WorkerMetrics, metrics_text, policy_hash
from lethe.settings import Settings
from policy.census import Census
from tests.unit.conftest import scraped

S = 1_000_000
"""µs per second."""


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return scraped(metrics).get((name, frozenset(labels.items())))


def test_the_backlog_is_summed_over_partitions_and_shows_0_once_drained():
    metrics = WorkerMetrics.create()
    board = CensusBoard(metrics, {"public.orders": ("accounting",)})
    assert value(metrics, "lethe_backlog_rows", table="public.orders", action="delete") == 0
    board.report(0, Census(backlog={("public.orders", "delete"): 2},
                           oldest_overdue={"public.orders": 100 * S}), now=400 * S)  # fmt: skip
    board.report(1, Census(backlog={("public.orders", "delete"): 3},
                           oldest_overdue={"public.orders": 350 * S}), now=410 * S)  # fmt: skip
    assert value(metrics, "lethe_backlog_rows", table="public.orders", action="delete") == 5
    # partition 0's oldest is 300 s overdue, partition 1's 60 s: the worst is shown
    assert value(metrics, "lethe_overdue_oldest_age_seconds", table="public.orders") == 300
    board.report(0, Census(), now=500 * S)
    board.forget([1])
    assert value(metrics, "lethe_backlog_rows", table="public.orders", action="delete") == 0
    assert value(metrics, "lethe_overdue_oldest_age_seconds", table="public.orders") == 0


def test_forecast_tracked_unconfirmed_and_holds_are_shown_by_their_labels():
    metrics = WorkerMetrics.create()
    board = CensusBoard(metrics, {"public.orders": ("accounting", "fraud")})
    census = Census(
        tracked={("public.orders", "accounting"): 7, ("public.orders", "fraud"): 7},
        forecast={("public.orders", "delete", 7): 2, ("public.orders", "delete", 30): 5},
        unconfirmed={("public.orders", "anonymise"): 1},
        oldest_unconfirmed={"public.orders": 40 * S},
        holds={"public.legal_holds": 2},
    )
    board.report(3, census, now=100 * S)
    assert value(metrics, "lethe_rows_tracked", table="public.orders", purpose="fraud") == 7
    forecast = {
        days: value(metrics, "lethe_forecast_rows", table="public.orders", action="delete",
                    days=days)
        for days in ("1", "7", "30")
    }  # fmt: skip
    assert forecast == {"1": 0, "7": 2, "30": 5}
    assert value(metrics, "lethe_unconfirmed_commands", table="public.orders",
                 action="anonymise") == 1  # fmt: skip
    assert value(metrics, "lethe_unconfirmed_oldest_age_seconds", table="public.orders") == 60
    assert value(metrics, "lethe_legal_holds", table="public.legal_holds") == 2
    board.report(3, Census(), now=200 * S)
    assert value(metrics, "lethe_legal_holds", table="public.legal_holds") == 0


def test_consumer_lag_in_records_and_seconds_per_partition():
    metrics = WorkerMetrics.create()
    changes = ChangeProgress({"hosting.public.orders"})
    report = LagReport(metrics, [changes])
    for offset in range(10):  # offsets 0..9 processed, the newest event at 1000 s
        changes.processed("hosting.public.orders", 0, offset, 1000 * S)
    behind = PartitionEnd("hosting.public.orders", 0, committed=8, highwater=25,
                          polled_us=1100 * S)  # fmt: skip
    caught_up = PartitionEnd("hosting.public.orders", 1, committed=4, highwater=4,
                             polled_us=1100 * S)  # fmt: skip
    report.update([behind, caught_up], wall=1200 * S)
    labels = {"topic": "hosting.public.orders"}
    assert value(metrics, "lethe_consumer_lag_messages", **labels, partition="0") == 15
    assert value(metrics, "lethe_consumer_lag_seconds", **labels, partition="0") == 200
    assert value(metrics, "lethe_consumer_lag_messages", **labels, partition="1") == 0
    # caught up at the fetch 100 s ago: lag counted from that fetch
    assert value(metrics, "lethe_consumer_lag_seconds", **labels, partition="1") == 100
    report.update([caught_up], wall=1200 * S)  # partition 0 revoked
    assert value(metrics, "lethe_consumer_lag_messages", **labels, partition="0") is None


def test_build_info_names_the_version_and_the_policy():
    metrics = WorkerMetrics.create()
    metrics.build_info.labels("0.1.0", policy_hash(b"policy: x\n")).set(1)
    # sha256 of "policy: x\n", first 12 hex digits (by `printf 'policy: x\n' | sha256sum`)
    assert value(metrics, "lethe_build_info", version="0.1.0", policy_hash="8d1211339364") == 1


def test_a_scrape_naming_samples_gets_those_alone_and_an_unnamed_one_gets_every_metric():
    metrics = WorkerMetrics.create()
    CensusBoard(metrics, {"public.orders": ("accounting",)})
    metrics.change_events.labels("public.orders", "c").inc(3)
    named = metrics_text(metrics.registry, ["lethe_change_events_total"]).decode()
    samples = [line for line in named.splitlines() if not line.startswith("#")]
    assert samples == ['lethe_change_events_total{op="c",table="public.orders"} 3.0']
    whole = metrics_text(metrics.registry).decode()
    assert 'lethe_change_events_total{op="c",table="public.orders"} 3.0' in whole
    assert 'lethe_backlog_rows{action="delete",table="public.orders"} 0.0' in whole
    assert "process_cpu_seconds_total" in whole


@pytest.mark.usefixtures("promtool_installed")
def test_promtool_accepts_the_worker_apps_metrics_faust_sensor_included(tmp_path):
    settings = Settings(data_dir=tmp_path, faust_metrics=True)
    app = create_app(settings, app_id="obs-metrics", store="memory://", web_enabled=False)
    text = generate_latest(app.metrics.registry)
    assert b"lethe_faust_messages_received_total" in text
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


@pytest.mark.usefixtures("promtool_installed")
def test_promtool_accepts_the_metrics_text():
    metrics = WorkerMetrics.create()
    CensusBoard(metrics, {"public.orders": ("accounting",)})
    metrics.due_to_issued.labels("public.orders", "delete").observe(12.0)
    metrics.sweep_duration.observe(0.002)
    metrics.consumer_lag_seconds.labels("hosting.public.orders", "0").set(3)
    text = generate_latest(metrics.registry)
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_with_metrics_off_faust_sensor_is_left_out_and_lethes_counters_stay(tmp_path):
    settings = Settings.from_env({"LETHE_METRICS": "off", "LETHE_DATA_DIR": str(tmp_path)})
    app = create_app(settings, app_id="obs-off", store="memory://", web_enabled=False)
    text = generate_latest(app.metrics.registry).decode()
    assert "lethe_faust_" not in text
    assert "# TYPE lethe_change_events_total counter" in text


def test_faust_sensor_is_left_out_by_default_and_lethes_metrics_stay(tmp_path):
    """Faust's per-record sensor costs ~15% of stage A's CPU and no panel or alert reads it."""
    settings = Settings.from_env({"LETHE_DATA_DIR": str(tmp_path)})
    app = create_app(settings, app_id="obs-default", store="memory://", web_enabled=False)
    text = generate_latest(app.metrics.registry).decode()
    assert "lethe_faust_" not in text
    assert "# TYPE lethe_change_events_total counter" in text
    assert "# TYPE lethe_consumer_lag_seconds gauge" in text
    on = Settings.from_env({"LETHE_DATA_DIR": str(tmp_path), "LETHE_FAUST_METRICS": "on"})
    assert on.faust_metrics is True
