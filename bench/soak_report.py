"""The soak bench's samples, minute table and verdict (`bench/soak_bench.py`), pure: no Kafka,
no clock, no /proc; the bench hands in what it read.

A sample is one reading of the worker: its RSS, its CPU time and its /metrics text (counters
and gauges as they stood). A minute row compares the last sample of the minute with the last
of the minute before: counters become counts in the minute, the sweep histogram becomes the
sweeps of the minute (count, mean, p99 as the upper bound of the bucket holding it), gauges
are the minute's last (RSS, rows tracked) or largest (lag).

The verdict fits a least-squares line over minutes 1..N (minute 0 holds the start: Faust's
start-up, the first rows, the state filling to its steady size) and calls a figure growing
when the line's rise over those minutes is more than its tolerance:
- RSS (end of minute): rise over 5% of the mean or over RSS_RISE_MIB;
- consumer lag (largest of the minute, records): rise over one second of input;
- sweep time (mean of the minute): rise over 25% of the mean (sweeps of a few ms on a shared
  machine: the noise is larger than for RSS).
It also shows the last minute against minute 1 and, for RSS, the slope per event processed.
With RocksDB's memtables sampled (`--traced`), RSS less the memtables is judged as well: they
fill up to their configured ceiling (`lethe.app.rocksdb_options`, 2 x
LETHE_ROCKSDB_WRITE_BUFFER_BYTES per table partition), with large buffers over hours at a
soak's write rate, bounded growth that would hide a leak or pass for one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

RSS_RISE_TOLERANCE = 0.05
RSS_RISE_MIB = 8.0
SWEEP_RISE_TOLERANCE = 0.25
MIB_KIB = 1024

COUNTERS = {
    "events": "lethe_change_events",
    "issued": "lethe_commands_issued",
    "confirmed": "lethe_commands_confirmed",
    "reissued": "lethe_commands_reissued",
    "refused": "lethe_commands_refused",
    "dead_letters": "lethe_dead_letters",
}
GAUGES = {
    "rows_tracked": "lethe_rows_tracked",
    "unconfirmed": "lethe_unconfirmed_commands",
    "backlog": "lethe_backlog_rows",
}
SWEEP = "lethe_sweep_duration_seconds"
LAG_MESSAGES = "lethe_consumer_lag_messages"
LAG_SECONDS = "lethe_consumer_lag_seconds"


@dataclass(frozen=True)
class Sample:
    """One reading of the worker, `at_s` seconds after the load started."""

    at_s: float
    rss_kib: int
    cpu_s: float
    counters: dict[str, float]
    gauges: dict[str, float]
    lag_messages: float
    """lethe_consumer_lag_messages summed over the worker's partitions."""
    lag_seconds: float
    """lethe_consumer_lag_seconds, the largest over the worker's partitions."""
    committed_lag: float
    """End offsets minus the group's committed offsets, change topic and subject events."""
    sweep_buckets: tuple[tuple[float, float], ...]
    """The sweep histogram's cumulative (le, count) pairs, +Inf last."""
    sweep_sum_s: float
    state_kib: int
    """Bytes on disk of the worker's data directory (RocksDB), in KiB."""
    memtables_kib: int | None = None
    """RocksDB's memtables over all the worker's tables (`--traced`), in KiB."""


def sample_of(
    text: str,
    at_s: float,
    rss_kib: int,
    cpu_s: float,
    committed_lag: float = 0.0,
    state_kib: int = 0,
    memtables_kib: int | None = None,
) -> Sample:
    """A sample from the worker's /metrics text and what the bench read beside it."""
    counters = dict.fromkeys(COUNTERS, 0.0)
    gauges = dict.fromkeys(GAUGES, 0.0)
    by_name = {metric: key for key, metric in COUNTERS.items()}
    by_gauge = {metric: key for key, metric in GAUGES.items()}
    lag_messages = lag_seconds = sweep_sum = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name in by_name and sample.name.endswith("_total"):
                counters[by_name[family.name]] += sample.value
            elif family.name in by_gauge:
                gauges[by_gauge[family.name]] += sample.value
            elif family.name == LAG_MESSAGES:
                lag_messages += sample.value
            elif family.name == LAG_SECONDS and not math.isinf(sample.value):
                lag_seconds = max(lag_seconds, sample.value)
            elif family.name == SWEEP and sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif family.name == SWEEP and sample.name.endswith("_sum"):
                sweep_sum += sample.value
    return Sample(
        at_s=at_s,
        rss_kib=rss_kib,
        cpu_s=cpu_s,
        counters=counters,
        gauges=gauges,
        lag_messages=lag_messages,
        lag_seconds=lag_seconds,
        committed_lag=committed_lag,
        sweep_buckets=tuple(sorted(buckets.items())),
        sweep_sum_s=sweep_sum,
        state_kib=state_kib,
        memtables_kib=memtables_kib,
    )


@dataclass(frozen=True)
class Minute:
    """What one minute of the soak showed."""

    minute: int
    samples: int
    counts: dict[str, float]
    rows_tracked: float
    unconfirmed: float
    rss_mib: float
    rss_max_mib: float
    cpu_share: float
    lag_max: float
    lag_seconds_max: float
    committed_lag_max: float
    sweeps: float
    sweep_mean_ms: float | None
    sweep_p99_ms: float | None
    state_mib: float
    memtables_mib: float | None


def _sweep_count(sample: Sample) -> float:
    return sample.sweep_buckets[-1][1] if sample.sweep_buckets else 0.0


def p99_bound(before: Sample, after: Sample) -> float | None:
    """Upper bound (s) of the bucket holding the 99th percentile of the sweeps between two
    samples; None without sweeps, +Inf if it is above the largest finite bucket."""
    earlier = dict(before.sweep_buckets)
    deltas = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after.sweep_buckets]
    if not deltas or deltas[-1][1] <= 0:
        return None
    wanted = 0.99 * deltas[-1][1]
    return next(bound for bound, count in deltas if count >= wanted)


def minute_of(at_s: float) -> int:
    """Minute 0 is (0 s, 60 s], minute 1 (60 s, 120 s], ...; a sample at 0 s is in minute 0."""
    return max(0, math.ceil(at_s / 60) - 1)


def minutes(samples: Sequence[Sample]) -> list[Minute]:
    """One row per whole or partial minute from the first sample on, each against the last
    sample of the minute before (minute 0 against the first sample)."""
    if not samples:
        return []
    grouped: dict[int, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(minute_of(sample.at_s), []).append(sample)
    rows = []
    before = samples[0]
    for minute in sorted(grouped):
        group = grouped[minute]
        last = group[-1]
        sweeps = _sweep_count(last) - _sweep_count(before)
        wall = last.at_s - before.at_s
        p99 = p99_bound(before, last)
        rows.append(
            Minute(
                minute=minute,
                samples=len(group),
                counts={key: last.counters[key] - before.counters[key] for key in COUNTERS},
                rows_tracked=last.gauges["rows_tracked"],
                unconfirmed=last.gauges["unconfirmed"],
                rss_mib=last.rss_kib / MIB_KIB,
                rss_max_mib=max(s.rss_kib for s in group) / MIB_KIB,
                cpu_share=(last.cpu_s - before.cpu_s) / wall if wall > 0 else 0.0,
                lag_max=max(s.lag_messages for s in group),
                lag_seconds_max=max(s.lag_seconds for s in group),
                committed_lag_max=max(s.committed_lag for s in group),
                sweeps=sweeps,
                sweep_mean_ms=(
                    (last.sweep_sum_s - before.sweep_sum_s) / sweeps * 1000 if sweeps else None
                ),
                sweep_p99_ms=None if p99 is None else p99 * 1000,
                state_mib=last.state_kib / MIB_KIB,
                memtables_mib=None if last.memtables_kib is None else last.memtables_kib / MIB_KIB,
            )
        )
        before = last
    return rows


def table(rows: Iterable[Minute]) -> str:
    """The minute-by-minute table, Markdown."""
    lines = [
        "| min | events | commands | confirmed | reissued | dead letters | rows tracked | "
        "unconfirmed | RSS MiB | RSS max | CPU | lag max | lag s max | committed lag max | "
        "sweeps | sweep mean ms | sweep p99 ms <= | state MiB | memtables MiB |",
        "|" + "---:|" * 19,
    ]
    for row in rows:
        mean = "-" if row.sweep_mean_ms is None else f"{row.sweep_mean_ms:.2f}"
        p99 = "-" if row.sweep_p99_ms is None else f"{row.sweep_p99_ms:g}"
        lines.append(
            f"| {row.minute} | {row.counts['events']:,.0f} | {row.counts['issued']:,.0f} | "
            f"{row.counts['confirmed']:,.0f} | {row.counts['reissued']:,.0f} | "
            f"{row.counts['dead_letters']:,.0f} | {row.rows_tracked:,.0f} | "
            f"{row.unconfirmed:,.0f} | {row.rss_mib:.1f} | {row.rss_max_mib:.1f} | "
            f"{row.cpu_share:.0%} | {row.lag_max:,.0f} | {row.lag_seconds_max:.1f} | "
            f"{row.committed_lag_max:,.0f} | {row.sweeps:,.0f} | {mean} | {p99} | "
            f"{row.state_mib:.1f} | "
            + ("-" if row.memtables_mib is None else f"{row.memtables_mib:.1f}")
            + " |"
        )
    return "\n".join(lines)


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 for fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


@dataclass(frozen=True)
class Finding:
    """One figure's trend over minutes 1..N."""

    name: str
    unit: str
    first: float
    last: float
    slope_per_min: float
    rise: float
    """The fitted line's rise from the first to the last minute."""
    tolerance: float
    note: str = ""

    @property
    def growing(self) -> bool:
        return self.rise > self.tolerance

    def line(self) -> str:
        ratio = f"{self.last / self.first:.2f}" if self.first else "-"
        verdict = "GROWING" if self.growing else "no growth"
        return (
            f"{self.name}: {verdict}: minute 1 {self.first:,.2f} {self.unit}, last "
            f"{self.last:,.2f} {self.unit} (ratio {ratio}), slope {self.slope_per_min:+,.3f} "
            f"{self.unit}/min, fitted rise {self.rise:+,.2f} {self.unit} (tolerance "
            f"{self.tolerance:,.2f}){self.note}"
        )


def _finding(
    name: str, unit: str, points: list[tuple[float, float]], tolerance: float, note: str = ""
) -> Finding:
    rate = slope(points)
    return Finding(
        name=name,
        unit=unit,
        first=points[0][1],
        last=points[-1][1],
        slope_per_min=rate,
        rise=rate * (points[-1][0] - points[0][0]),
        tolerance=tolerance,
        note=note,
    )


def verdict(rows: Sequence[Minute], rate: float) -> list[Finding]:
    """RSS, lag and sweep time over minutes 1..N (whole minutes only: give `rows` without a
    partial last minute); empty with fewer than two such minutes. `rate`: the input's
    events/s, which sets the lag's tolerance (one second of input)."""
    steady = [row for row in rows if row.minute >= 1]
    if len(steady) < 2:
        return []
    rss = [(float(row.minute), row.rss_mib) for row in steady]
    mean_rss = sum(y for _, y in rss) / len(rss)
    events = sum(row.counts["events"] for row in steady) / len(steady)
    rss_slope = slope(rss)
    per_event = f", {rss_slope * 1024 * 1024 / events:+,.1f} B per event" if events else ""
    findings = [
        _finding(
            "RSS",
            "MiB",
            rss,
            max(RSS_RISE_TOLERANCE * mean_rss, RSS_RISE_MIB),
            per_event,
        ),
        _finding("consumer lag", "records", [(float(r.minute), r.lag_max) for r in steady], rate),
    ]
    native = [
        (float(r.minute), r.rss_mib - r.memtables_mib)
        for r in steady
        if r.memtables_mib is not None
    ]
    if len(native) == len(steady):
        mean_native = sum(y for _, y in native) / len(native)
        findings.append(
            _finding(
                "RSS less RocksDB memtables",
                "MiB",
                native,
                max(RSS_RISE_TOLERANCE * mean_native, RSS_RISE_MIB),
            )
        )
    sweeps = [(float(r.minute), r.sweep_mean_ms) for r in steady if r.sweep_mean_ms is not None]
    if len(sweeps) >= 2:
        mean_sweep = sum(y for _, y in sweeps) / len(sweeps)
        findings.append(
            _finding(
                "sweep time (mean)",
                "ms",
                sweeps,
                SWEEP_RISE_TOLERANCE * mean_sweep,
            )
        )
    return findings
