"""The soak bench's minute table and verdict (bench/soak_report.py) on hand-made samples."""

from __future__ import annotations

import pytest

from bench.soak_report import Sample, minutes, sample_of, slope, table, verdict

TABLE = 'table="soak.logs_t"'


def metrics(
    events: float = 0,
    issued: float = 0,
    tracked: float = 0,
    lag: tuple[float, float] = (0, 0),
    lag_s: tuple[float, float] = (0, 0),
    sweeps: tuple[float, float, float] = (0, 0, 0),
    sweep_sum: float = 0,
) -> str:
    """A worker's /metrics text: `events` split over two ops, the lag over two partitions,
    the sweep histogram's cumulative counts at le 0.005, 0.1 and +Inf."""
    fast, slow, every = sweeps
    return f"""# HELP lethe_change_events_total Debezium change records processed.
# TYPE lethe_change_events_total counter
lethe_change_events_total{{{TABLE},op="c"}} {events * 0.75}
lethe_change_events_total{{{TABLE},op="d"}} {events * 0.25}
# HELP lethe_commands_issued_total Commands sent.
# TYPE lethe_commands_issued_total counter
lethe_commands_issued_total{{{TABLE},action="delete"}} {issued}
# HELP lethe_rows_tracked Rows tracked.
# TYPE lethe_rows_tracked gauge
lethe_rows_tracked{{{TABLE},purpose="user_identification"}} {tracked}
# HELP lethe_consumer_lag_messages Records not processed yet.
# TYPE lethe_consumer_lag_messages gauge
lethe_consumer_lag_messages{{topic="hosting.soak.logs_t",partition="0"}} {lag[0]}
lethe_consumer_lag_messages{{topic="soak-t-subject-events",partition="3"}} {lag[1]}
# HELP lethe_consumer_lag_seconds Seconds behind.
# TYPE lethe_consumer_lag_seconds gauge
lethe_consumer_lag_seconds{{topic="hosting.soak.logs_t",partition="0"}} {lag_s[0]}
lethe_consumer_lag_seconds{{topic="soak-t-subject-events",partition="3"}} {lag_s[1]}
# HELP lethe_sweep_duration_seconds Sweep of one partition.
# TYPE lethe_sweep_duration_seconds histogram
lethe_sweep_duration_seconds_bucket{{le="0.005"}} {fast}
lethe_sweep_duration_seconds_bucket{{le="0.1"}} {slow}
lethe_sweep_duration_seconds_bucket{{le="+Inf"}} {every}
lethe_sweep_duration_seconds_count {every}
lethe_sweep_duration_seconds_sum {sweep_sum}
"""


def test_a_sample_sums_counters_and_lag_over_labels_and_keeps_the_largest_lag_seconds() -> None:
    text = metrics(
        events=200,
        issued=12,
        tracked=480,
        lag=(3, 4),
        lag_s=(1.5, 2.5),
        sweeps=(90, 99, 100),
        sweep_sum=0.75,
    )
    sample = sample_of(text, at_s=5, rss_kib=102_400, cpu_s=3.0, committed_lag=9)
    assert sample.counters["events"] == 200
    assert sample.counters["issued"] == 12
    assert sample.counters["dead_letters"] == 0
    assert sample.gauges["rows_tracked"] == 480
    assert sample.lag_messages == 7
    assert sample.lag_seconds == 2.5
    assert sample.sweep_buckets == ((0.005, 90), (0.1, 99), (float("inf"), 100))
    assert sample.sweep_sum_s == 0.75


def test_lag_seconds_of_a_partition_not_reported_yet_do_not_count() -> None:
    sample = sample_of(metrics(lag_s=(float("inf"), 4.0)), 0, 0, 0)
    assert sample.lag_seconds == 4.0


def soak(rss_mib: list[float], lag: list[float], sweep_ms: list[float]) -> list[Sample]:
    """One sample at 0 s and one at the end of each minute: minute m has 6,000 events,
    100 sweeps of `sweep_ms[m]` each (all under 5 ms but one of 10-100 ms), RSS and lag."""
    samples = [sample_of(metrics(), 0, int(rss_mib[0] * 1024), 0)]
    events = sweeps = sweep_sum = 0.0
    for minute, (rss, behind, ms) in enumerate(zip(rss_mib, lag, sweep_ms, strict=True)):
        events += 6000
        sweeps += 100
        sweep_sum += 100 * ms / 1000
        text = metrics(
            events=events,
            lag=(behind, 0),
            sweeps=(sweeps - minute - 1, sweeps, sweeps),
            sweep_sum=sweep_sum,
        )
        samples.append(sample_of(text, 60.0 * (minute + 1), int(rss * 1024), 30.0 * (minute + 1)))
    return samples


def test_minutes_count_each_minute_against_the_end_of_the_minute_before() -> None:
    samples = [
        sample_of(metrics(), 0, 100 * 1024, 0),
        sample_of(metrics(events=1000, sweeps=(10, 10, 10), sweep_sum=0.02), 30, 110 * 1024, 6),
        sample_of(metrics(events=2500, sweeps=(20, 20, 20), sweep_sum=0.04), 60, 120 * 1024, 12),
        sample_of(
            metrics(events=4000, lag=(50, 10), sweeps=(29, 30, 30), sweep_sum=0.54),
            90,
            125 * 1024,
            27,
        ),
    ]
    first, second = minutes(samples)
    assert (first.minute, first.samples, second.minute, second.samples) == (0, 3, 1, 1)
    assert first.counts["events"] == 2500
    assert second.counts["events"] == 1500
    assert (first.rss_mib, first.rss_max_mib, second.rss_mib) == (120, 120, 125)
    assert first.cpu_share == pytest.approx(0.2)  # 12 s of CPU in 60 s
    assert second.cpu_share == pytest.approx(0.5)  # 15 s in 30 s
    assert second.lag_max == 60
    assert first.sweep_mean_ms == pytest.approx(2.0)  # 0.04 s over 20 sweeps
    assert second.sweep_mean_ms == pytest.approx(50.0)  # 0.5 s over 10 sweeps
    assert first.sweep_p99_ms == 5  # all 20 in the 5 ms bucket
    assert second.sweep_p99_ms == 100  # 9 of 10 under 5 ms, the 10th in 5-100 ms


def test_a_flat_soak_after_the_first_minute_shows_no_growth() -> None:
    rows = minutes(
        soak([90, 140, 141, 139, 140, 141], [900, 20, 25, 18, 22, 20], [9, 3, 3, 3, 3, 3])
    )
    findings = {f.name: f for f in verdict(rows, rate=100)}
    assert set(findings) == {"RSS", "consumer lag", "sweep time (mean)"}
    assert not any(f.growing for f in findings.values())
    assert findings["RSS"].first == 140
    assert findings["RSS"].last == 141


def test_rss_rising_two_mib_a_minute_is_growth_of_about_350_bytes_an_event() -> None:
    rows = minutes(soak([100, 110, 112, 114, 116, 118, 120], [0] * 7, [3] * 7))
    rss = next(f for f in verdict(rows, rate=100) if f.name == "RSS")
    assert rss.slope_per_min == pytest.approx(2.0)
    assert rss.rise == pytest.approx(10.0)  # minutes 1 to 6; tolerance max(5% of 115, 8)
    assert rss.growing
    assert "GROWING" in rss.line()
    assert "+349.5 B per event" in rss.line()  # 2 MiB / 6,000 events


def test_lag_rising_by_more_than_a_second_of_input_is_growth() -> None:
    rows = minutes(soak([100] * 5, [0, 10, 60, 110, 160], [3] * 5))
    lag = next(f for f in verdict(rows, rate=100) if f.name == "consumer lag")
    assert lag.slope_per_min == pytest.approx(50.0)
    assert lag.rise == pytest.approx(150.0)
    assert lag.tolerance == 100
    assert lag.growing


def test_sweeps_doubling_over_the_run_are_growth() -> None:
    rows = minutes(soak([100] * 5, [0] * 5, [3, 2, 3, 4, 5]))
    sweep = next(f for f in verdict(rows, rate=100) if f.name == "sweep time (mean)")
    assert sweep.slope_per_min == pytest.approx(1.0)
    assert sweep.growing  # rises 3 ms, tolerance 25% of 3.5 ms


def test_no_verdict_from_fewer_than_two_minutes_past_the_first() -> None:
    assert verdict(minutes(soak([100, 200], [0, 0], [3, 3])), rate=100) == []


def test_slope_is_the_least_squares_one() -> None:
    assert slope([(1, 1), (2, 3), (3, 2)]) == pytest.approx(0.5)
    assert slope([(1, 5)]) == 0


def test_the_table_shows_each_minute() -> None:
    lines = table(minutes(soak([100, 101], [5, 7], [3, 3]))).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| 0 | 6,000 | 0 |")
    assert lines[3].startswith("| 1 | 6,000 | 0 |")


def test_rss_growing_only_by_rocksdb_memtables_is_no_growth_once_they_are_taken_off() -> None:
    samples = [sample_of(metrics(), 0, 100 * 1024, 0, memtables_kib=0)]
    for minute in range(6):  # RSS and memtables both rise 3 MiB a minute
        text = metrics(events=6000.0 * (minute + 1), sweeps=(100, 100, 100))
        rss_kib = (100 + 3 * minute) * 1024
        samples.append(
            sample_of(text, 60.0 * (minute + 1), rss_kib, 0, memtables_kib=3 * minute * 1024)
        )
    findings = {f.name: f for f in verdict(minutes(samples), rate=100)}
    assert findings["RSS"].slope_per_min == pytest.approx(3.0)
    assert findings["RSS"].growing  # rises 12 MiB over minutes 1 to 5
    assert findings["RSS less RocksDB memtables"].slope_per_min == pytest.approx(0.0)
    assert not findings["RSS less RocksDB memtables"].growing


def test_no_memtables_finding_without_memtables_sampled() -> None:
    findings = verdict(minutes(soak([100, 101, 102], [0] * 3, [3] * 3)), rate=100)
    assert "RSS less RocksDB memtables" not in {f.name for f in findings}
