"""The worker's Faust sensor reports what Faust's own Prometheus sensor reports.

The same calls go to Faust's `PrometheusMonitor` and to `CachedPrometheusMonitor`, each
writing into a registry of its own; /metrics must read the same for Faust's metrics the
worker relies on (messages per topic, read and end offsets per partition, table operations,
sends).
"""

from __future__ import annotations

from pathlib import Path
from time import monotonic
from types import SimpleNamespace
from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from lethe.app import create_app
from lethe.faust_sensor import CachedPrometheusMonitor, StreamTimeMonitor
from lethe.settings import Settings

TOPIC = "hosting.public.customers"


def exposed(monitor_class: type[PrometheusMonitor]) -> list[str]:
    registry = CollectorRegistry()
    monitor: Any = monitor_class(metrics=FaustMetrics.create(registry, "lethe_faust"))
    table = SimpleNamespace(name="locations")
    for offset in (10, 11, 12):
        tp = TP(TOPIC, offset % 2)
        monitor.on_message_in(tp, offset, SimpleNamespace(time_in=None))
        monitor.on_table_get(table, b"row")
        monitor.track_tp_end_offset(tp, offset + 100)
    monitor.on_table_set(table, b"row", b"customer:1")
    monitor.on_table_set(table, b"other", b"customer:2")
    monitor.on_table_del(table, b"row")
    for _ in range(2):
        monitor.on_send_initiated(None, "lethe-subject-events", None, 0, 0)
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if line.startswith("lethe_faust") and "_created" not in line]


def test_the_cached_sensor_reports_what_fausts_own_reports() -> None:
    expected = exposed(PrometheusMonitor)
    assert (
        'lethe_faust_messages_received_per_topic_total{topic="hosting.public.customers"} 3.0'
        in expected
    )
    assert exposed(CachedPrometheusMonitor) == expected


def test_the_lean_monitor_still_tells_faust_when_each_stream_last_took_an_event() -> None:
    """Faust's consumer warns of a stalled stream from `stream_inbound_time`; the monitor
    the worker uses when Faust's metrics are off keeps it, per partition."""
    monitor = StreamTimeMonitor()
    first, second = TP(TOPIC, 0), TP(TOPIC, 1)
    before = monotonic()
    monitor.on_message_in(first, 10, SimpleNamespace())
    assert monitor.on_stream_event_in(first, 10, SimpleNamespace(), SimpleNamespace()) is None
    assert set(monitor.stream_inbound_time) == {first}
    assert monitor.stream_inbound_time[first] >= before
    monitor.on_stream_event_in(second, 4, SimpleNamespace(), SimpleNamespace())
    assert set(monitor.stream_inbound_time) == {first, second}


def test_the_worker_uses_the_lean_monitor_unless_faust_metrics_are_on(tmp_path: Path) -> None:
    lean = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit-lean", web_enabled=False)
    assert type(lean.monitor) is StreamTimeMonitor
    full = create_app(
        Settings(data_dir=tmp_path, faust_metrics=True), app_id="lethe-unit-full", web_enabled=False
    )
    assert type(full.monitor) is CachedPrometheusMonitor
