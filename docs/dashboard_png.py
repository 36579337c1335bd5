"""Draw docs/dashboard.png: the Grafana dashboard's main panels over the backlog scenario.

    LETHE_IT_DASHBOARD_DATA=docs/dashboard-scenario.json .venv/bin/pytest \\
        tests/integration/test_observability.py        # records what Prometheus showed
    .venv/bin/python docs/dashboard_png.py docs/dashboard-scenario.json docs/dashboard.png

The data are the series Prometheus returned for the dashboard's own expressions
(docker/grafana/dashboard.py) during tests/integration/test_observability.py; the shaded
spans are when LetheBacklogGrowing was pending (amber) and firing (red). Needs matplotlib
(in the `dev` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ALERT_COLOURS = {"pending": "#f2b84b", "firing": "#e0524d"}


def spans(times: list[float], step: float = 2.0) -> list[tuple[float, float]]:
    """Runs of consecutive sample times, as (first, last) pairs."""
    found: list[tuple[float, float]] = []
    for moment in sorted(times):
        if found and moment - found[-1][1] <= step * 1.5:
            found[-1] = (found[-1][0], moment)
        else:
            found.append((moment, moment))
    return found


def draw(data: dict[str, Any], output: Path) -> None:
    start = float(data["start"])
    panels = data["panels"]
    figure, axes = plt.subplots(3, 2, figsize=(13, 10), sharex=True)
    figure.patch.set_facecolor("#111217")
    for axis, panel in zip(axes.flat, panels, strict=False):
        axis.set_facecolor("#181b1f")
        for state in data["alert"]:
            for first, last in spans(state["times"]):
                axis.axvspan(first - start, last - start + 2, alpha=0.18,
                             color=ALERT_COLOURS.get(state["state"], "grey"))  # fmt: skip
        for series in panel["series"]:
            values = [(t - start, v) for t, v in series["values"] if v == v]  # NaN out
            if any(v for _, v in values):  # series at 0 all along are left out
                xs, ys = zip(*values, strict=True)
                axis.plot(xs, ys, label=series["legend"], linewidth=1.6)
        axis.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        unit = {"s": "seconds", "ops": "per second"}.get(panel["unit"], "")
        axis.set_ylabel(unit, color="#8e8e8e", fontsize=8)
        axis.tick_params(colors="#8e8e8e", labelsize=8)
        axis.grid(color="#2c3235", linewidth=0.6)
        for spine in axis.spines.values():
            spine.set_color("#2c3235")
        axis.set_ylim(bottom=0)
        if panel["series"]:
            axis.legend(fontsize=7, facecolor="#181b1f", edgecolor="#2c3235",
                        labelcolor="#d8d9da", loc="upper left")  # fmt: skip
    for axis in axes[-1]:
        axis.set_xlabel("seconds into the run", color="#8e8e8e", fontsize=8)
    figure.suptitle(
        "Lethe: a backlog while an input lags (shaded: LetheBacklogGrowing pending, firing)",
        color="#d8d9da",
        fontsize=12,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(output, dpi=90, facecolor=figure.get_facecolor())


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}")
