"""Lethe's Grafana dashboard, built with grafana-foundation-sdk; writes `dashboards/lethe.json`.

    python docker/grafana/dashboard.py        # rewrite docker/grafana/dashboards/lethe.json

The compose stack provisions the JSON with its Prometheus data source (uid
`lethe-prometheus`); tests/unit/test_dashboard.py fails when the JSON is not what this module
builds. What each metric means: docs/metrics.md. An SRE reads, top to bottom: are deletions
on time (backlog, oldest overdue, delays), are they applied (issued against confirmed,
unconfirmed), what comes next (forecast), are the inputs read (lag per partition, dead
letters, unclassified tables), what is held (legal holds), and whether Kafka Connect runs the
connectors' tasks (a FAILED one applies or publishes nothing until restarted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT: Final = Path(__file__).resolve().parent / "dashboards" / "lethe.json"
DATASOURCE: Final = DataSourceRef(type_val="prometheus", uid="lethe-prometheus")

STATS: Final = (
    ("Backlog (rows due, not issued)", "sum(lethe_backlog_rows)", "short"),
    ("Oldest overdue", "max(lethe_overdue_oldest_age_seconds)", "s"),
    ("Unconfirmed commands", "sum(lethe_unconfirmed_commands)", "short"),
    ("Open legal holds", "sum(lethe_legal_holds) or vector(0)", "short"),
    ("Unclassified tables", "sum(lethe_unclassified_tables) or vector(0)", "short"),
    ("Workers up", 'sum(up{job="lethe"})', "short"),
    ("Connectors or tasks FAILED",
     '(sum(max by (connector) (lethe_connector_tasks{state="FAILED"})) or vector(0)) + '
     '(sum(max by (connector) (lethe_connector_state{state=~"FAILED|MISSING"})) or vector(0))',
     "short"),
    ("Kafka Connect last answered (age)", "max(lethe_connect_poll_age_seconds)", "s"),
)  # fmt: skip
"""(title, PromQL, unit) of the stats across the top."""

GRAPHS: Final[tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]] = (
    (
        "Backlog by table and action",
        "short",
        (("sum by (table, action) (lethe_backlog_rows)", "{{table}} {{action}}"),
         ("sum(lethe_backlog_rows)", "total")),
    ),
    (
        "Oldest overdue stage by table",
        "s",
        (("max by (table) (lethe_overdue_oldest_age_seconds)", "{{table}}"),),
    ),
    (
        "Commands issued, confirmed, re-issued, refused (per second)",
        "ops",
        (("sum(rate(lethe_commands_issued_total[5m]))", "issued"),
         ("sum(rate(lethe_commands_confirmed_total[5m]))", "confirmed"),
         ("sum(rate(lethe_commands_reissued_total[5m])) or vector(0)", "re-issued"),
         ("sum(rate(lethe_commands_refused_total[5m])) or vector(0)", "refused")),
    ),
    (
        "Delay from due to issued, and issued to confirmed",
        "s",
        (("histogram_quantile(0.5, sum by (le) (rate(lethe_due_to_issued_seconds_bucket[5m])))",
          "due to issued p50"),
         ("histogram_quantile(0.99, sum by (le) (rate(lethe_due_to_issued_seconds_bucket[5m])))",
          "due to issued p99"),
         ("histogram_quantile(0.5, "
          "sum by (le) (rate(lethe_issued_to_confirmed_seconds_bucket[5m])))",
          "issued to confirmed p50"),
         ("histogram_quantile(0.99, "
          "sum by (le) (rate(lethe_issued_to_confirmed_seconds_bucket[5m])))",
          "issued to confirmed p99")),
    ),
    (
        "Unconfirmed commands, and the oldest",
        "short",
        (("sum by (table, action) (lethe_unconfirmed_commands)", "{{table}} {{action}}"),
         ("max(lethe_unconfirmed_oldest_age_seconds)", "oldest (s)")),
    ),
    (
        "Forecast: rows falling due within 1, 7, 30 days",
        "short",
        (("sum by (days, action) (lethe_forecast_rows)", "{{action}} within {{days}} d"),),
    ),
    (
        "Consumer lag per partition (seconds)",
        "s",
        (("max by (topic, partition) (lethe_consumer_lag_seconds)", "{{topic}}[{{partition}}]"),),
    ),
    (
        "Consumer lag per partition (records)",
        "short",
        (("sum by (topic, partition) (lethe_consumer_lag_messages)", "{{topic}}[{{partition}}]"),),
    ),
    (
        "Dead letters (per 5 minutes)",
        "short",
        (("sum by (topic, reason) (increase(lethe_dead_letters_total[5m]))",
          "{{topic}} {{reason}}"),),
    ),
    (
        "Legal holds and unclassified tables",
        "short",
        (("sum by (table) (lethe_legal_holds)", "holds {{table}}"),
         ("sum by (topic) (lethe_unclassified_tables)", "unclassified {{topic}}")),
    ),
    (
        "Kafka Connect: connector tasks by state (states with a task)",
        "short",
        (("max by (connector, state) (lethe_connector_tasks) > 0", "{{connector}} {{state}}"),),
    ),
    (
        "Rows tracked by table",
        "short",
        (("max by (table) (sum by (table, purpose) (lethe_rows_tracked))", "{{table}}"),),
    ),
    (
        "Sweep and census duration",
        "s",
        (("histogram_quantile(0.99, sum by (le) (rate(lethe_sweep_duration_seconds_bucket[5m])))",
          "sweep p99"),
         ("max(lethe_census_duration_seconds)", "census")),
    ),
)  # fmt: skip
"""(title, unit, ((PromQL, legend), ...)) of the graphs, two a row."""


def queries() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [expr for _, expr, _ in STATS] + [
        expr for _, _, targets in GRAPHS for expr, _ in targets
    ]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    dashboard = (
        Dashboard("Lethe: retention enforcement")
        .uid("lethe")
        .tags(["lethe", "retention"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .with_row(Row("Are deletions on time?").id(100))
    )
    for index, (title, expr, unit) in enumerate(STATS):
        dashboard = dashboard.with_panel(
            Stat()
            .title(title)
            .datasource(DATASOURCE)
            .unit(unit)
            .height(4)
            .span(24 // len(STATS))
            .graph_mode(BigValueGraphMode.AREA)
            .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(Dataquery().expr(expr).ref_id("A"))
            .id(index + 1)
        )
    dashboard = dashboard.with_row(Row("Details").id(101))
    for index, (title, unit, targets) in enumerate(GRAPHS):
        panel = (
            Timeseries()
            .title(title)
            .datasource(DATASOURCE)
            .unit(unit)
            .min(0)
            .legend(
                VizLegendOptions()
                .show_legend(True)
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
            )
            .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI))
            .height(8)
            .span(12)
            .id(len(STATS) + index + 1)
        )
        for ref, (expr, legend) in zip("ABCDEFGH", targets, strict=False):
            panel = panel.with_target(Dataquery().expr(expr).legend_format(legend).ref_id(ref))
        dashboard = dashboard.with_panel(panel)
    built: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
