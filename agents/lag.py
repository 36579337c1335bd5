"""Consumer lag per topic partition, what Burrow or kafka-lag-exporter would show, from inside.

Every `LAG_INTERVAL_S` a timer reads what the worker's consumer knows of each partition it is
assigned (`lethe.agents.watermarks.partition_ends`: the end offset at its last fetch and the
offset Faust committed) and what the agents processed (`ChangeProgress`: the change topics
for the assign agent, `<app id>-subject-events` for the enforce agent), and sets:
- `lethe_consumer_lag_messages{topic,partition}`: end offset minus the next offset to
  process;
- `lethe_consumer_lag_seconds{topic,partition}`: wall seconds since the time of the newest
  event processed (Debezium's event time on a change topic, the record's Kafka time on the
  subject events topic), 0 once the partition is caught up (every record up to the end of
  the last fetch processed); not shown until either is known.
A partition no longer assigned leaves both gauges.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

import faust

from lethe.agents.watermarks import ChangeProgress, PartitionEnd, partition_ends, watermark
from lethe.clock import wall_now
from lethe.metrics import WorkerMetrics
from policy.instants import Instant

log = logging.getLogger(__name__)

LAG_INTERVAL_S: Final = 5.0


class LagReport:
    """Sets the lag gauges from the partition ends and the agents' progress."""

    def __init__(self, metrics: WorkerMetrics, progresses: Sequence[ChangeProgress]) -> None:
        self.metrics = metrics
        self.progresses = tuple(progresses)
        self.shown: set[tuple[str, str]] = set()

    @property
    def topics(self) -> frozenset[str]:
        return frozenset().union(*(progress.topics for progress in self.progresses))

    def update(self, ends: Iterable[PartitionEnd], wall: Instant) -> None:
        """Show the lag of every partition in `ends` as of `wall` (µs); drop the others."""
        shown: set[tuple[str, str]] = set()
        messages = self.metrics.consumer_lag_messages
        seconds = self.metrics.consumer_lag_seconds
        for end in ends:
            progress = next((p for p in self.progresses if end.topic in p.topics), None)
            if progress is None:
                continue
            labels = (end.topic, str(end.partition))
            position = progress.position(end)
            if end.highwater is not None:
                messages.labels(*labels).set(max(0, end.highwater - position))
                shown.add(labels)
            mark = watermark(progress.newest(end), position, end.highwater, end.polled_us)
            if mark is not None:
                seconds.labels(*labels).set(max(0.0, (wall - mark) / 1e6))
                shown.add(labels)
        for labels in self.shown - shown:
            for gauge in (messages, seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self.shown = shown


def install(app: faust.App, metrics: WorkerMetrics, progresses: Sequence[ChangeProgress]) -> None:
    """Register the timer that reports the lag of the topics of `progresses` on `app`."""
    report = LagReport(metrics, progresses)

    async def report_lag() -> None:
        try:
            consumer: Any = app.consumer
            report.update(partition_ends(consumer, report.topics), wall_now())
        except Exception:
            log.exception("Could not report the consumer lag; trying again")

    app.timer(LAG_INTERVAL_S, name="lethe.lag")(report_lag)
