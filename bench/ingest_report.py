"""The ingest bench's report (`bench/ingest_bench.py`): each contender's result, the table
of events/s and ratios it prints, and where a profiled run spends its time.
"""

from __future__ import annotations

import pstats
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    contender: str
    rate: float | None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


AREAS = (
    ("lethe agents (stage A)", ("/lethe/agents/",)),
    ("policy core (decode, route)", ("/policy/",)),
    ("lethe other", ("/lethe/",)),
    ("faust", ("/faust/",)),
    ("aiokafka", ("/aiokafka/",)),
    ("mode", ("/mode/",)),
    ("asyncio, selectors", ("/asyncio/", "selectors.py")),
    ("logging", ("/logging/",)),
    ("prometheus_client", ("/prometheus_client/",)),
    ("rocksdict", ("rocksdict",)),
)


def profile_summary(path: Path, top: int = 12) -> str:
    """Own time by area, and the functions with the most own time."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    total = 0.0
    for (filename, _, function), (_, _, own, _, _) in table.items():
        total += own
        area = next(
            (name for name, marks in AREAS if any(mark in filename for mark in marks)), None
        )
        if area is None:
            area = f"builtins ({function})" if filename == "~" else "other"
            if filename == "~" and own < 0.02 * max(total, 1e-9):
                area = "builtins (rest)"
        by_area[area] = by_area.get(area, 0.0) + own
    lines = [f"  own time {total:.1f} s by area:"]
    for area, own in sorted(by_area.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"    {own / total:6.1%}  {area}")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])[:top]
    lines.append("  functions with the most own time:")
    for (filename, line, function), (_, calls, own, _, _) in ranked:
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else "~"
        lines.append(f"    {own / total:6.1%}  {calls:>9}  {short}:{line} {function}")
    return "\n".join(lines)


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def ratio_text(rate: float | None, base: float | None) -> str:
    return "-" if rate is None or not base else f"{rate / base:.0%}"


def table(results: dict[str, list[Result]], events: int, mean_bytes: float) -> str:
    def best(rates: list[float | None]) -> float | None:
        known = [rate for rate in rates if rate is not None]
        return max(known) if known else None

    def median(rates: list[float | None]) -> float | None:
        known = [rate for rate in rates if rate is not None]
        return statistics.median(known) if known else None

    rows: list[tuple[str, list[float | None]]] = []
    for contender, runs in results.items():
        rows.append((contender, [run.rate for run in runs]))
        if "lethe worker" in contender:
            rows.append(
                (
                    f"{contender}, all agents",
                    [run.extra.get("all_agents_rate") for run in runs],
                )
            )
    bare = results.get("bare Faust agent, tuned", [])
    base_best = best([run.rate for run in bare])
    base_median = median([run.rate for run in bare])
    runs = max((len(r) for r in results.values()), default=0)
    out = [
        f"{events:,} records, mean {mean_bytes:.0f} B, 1 partition; nproc {nproc()}; "
        f"{runs} run(s) of each, in turn",
        "",
        "| contender | best ev/s | median ev/s | best / tuned bare | median / tuned bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for contender, rates in rows:
        b, m = best(rates), median(rates)
        out.append(
            f"| {contender} | {rate_text(b)} | {rate_text(m)} | {ratio_text(b, base_best)} | "
            f"{ratio_text(m, base_median)} |"
        )
    out.append("")
    out += cpu_table(results, events)
    for contender, runs_of in results.items():
        for run in runs_of:
            if "changelog_per_event" in run.extra:
                out.append(
                    f"{contender}: {run.extra['changelog_per_event']:.3f} changelog records "
                    f"per event {run.extra['changelogs']}, {run.extra['sent_per_event']:.3f} "
                    "records sent to <app id>-subject-events per event"
                )
                break
    return "\n".join(out)


def cpu_table(results: dict[str, list[Result]], events: int) -> list[str]:
    """CPU µs per event, median of the runs, and the tuned bare agent's divided by each."""
    rows: list[tuple[str, list[float]]] = []
    for contender, runs in results.items():
        rows.append((contender, [run.extra["cpu_s"] for run in runs if "cpu_s" in run.extra]))
        if "lethe worker" in contender:
            drained = [
                run.extra["all_agents_cpu_s"] for run in runs if "all_agents_cpu_s" in run.extra
            ]
            rows.append((f"{contender}, all agents", drained))
            busy = [run.extra["busy_cpu_s"] for run in runs if "busy_cpu_s" in run.extra]
            rows.append((f"{contender}, all agents, idle rate left out", busy))
    per_event = {name: statistics.median(cpus) * 1e6 / events for name, cpus in rows if cpus}
    base = per_event.get("bare Faust agent, tuned")
    out = [
        "| contender | CPU µs per event (median) | tuned bare CPU / this CPU |",
        "|---|---:|---:|",
    ]
    for name, _ in rows:
        cpu = per_event.get(name)
        cpu_text = "-" if cpu is None else f"{cpu:,.0f}"
        out.append(f"| {name} | {cpu_text} | {ratio_text(base, cpu)} |")
    out.append("")
    return out


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
