"""Faust agents (`lethe.agents`): thin loops that decode, call the policy core and produce.

The worker command (`lethe.commands.worker`) builds the app and registers the agents
with `install`, passing what they use (metrics, topics, the clock); the agents do not import
the app module. They are registered explicitly rather than discovered by import side
effects: Faust's autodiscovery binds every agent to one module-level app, which would
leave a second app (tests, another app id) without agents. Each agent runs with
concurrency 1 (faust #606: higher concurrency can commit past an unprocessed event;
scale with partitions instead).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import ChannelT, TopicT

from lethe.agents import assign, enforce, lag
from lethe.agents.delivery import DeadLetterPipeline
from lethe.agents.handoff import LocalHandOff
from lethe.agents.watermarks import UNCHECKED, ChangeProgress
from lethe.clock import LiveClock
from lethe.forwarder import Forwarder
from lethe.forwarding import KafkaForwarder
from lethe.heartbeat import SourceHeartbeat
from lethe.metrics import WorkerMetrics
from policy.engine import Engine


def install(
    app: faust.App,
    *,
    engine: Engine,
    metrics: WorkerMetrics,
    changes: ChannelT[bytes],
    change_partitions: int,
    deadletters: ChannelT[bytes],
    subject_events: TopicT,
    subject_partitions: int,
    clock: LiveClock | None,
    tick_interval: float,
    audit_hash_key: bytes,
    census_interval: float = 30.0,
    detailed_metrics: bool = True,
    forwarder: Forwarder | None = None,
    heartbeat: SourceHeartbeat | None = None,
    dead_letter_pipeline: DeadLetterPipeline | None = None,
    local_handoff: bool = False,
) -> None:
    """Register every agent of the worker on `app`: the assign agent reads `changes` (each
    with `change_partitions` partitions) and forwards to `subject_events`
    (`subject_partitions` partitions), which the enforce agent reads under `clock`, swept
    every `tick_interval` seconds, auditing under `audit_hash_key`. Without a clock
    (LETHE_ENFORCE=off) the enforce agent is left out: nothing is issued. The ticks carry how
    far the assign agent processed each change-topic partition (`lethe.agents.watermarks`).
    The consumer lag of every topic the agents read is reported by `lethe.agents.lag`; the
    enforce agent takes a census of its state every `census_interval` seconds. Without
    `detailed_metrics` (LETHE_METRICS=off) neither is done.
    Forwards and ticks go through `forwarder` (the worker's producer, `lethe.forwarding`;
    None: Faust sends them to `subject_events`). The assign agent's dead letters go through
    `dead_letter_pipeline` (in the background; the consumer commits once they are delivered;
    None: each awaited in turn). A caught-up change topic counts as processed only up to the
    source connector's newest `heartbeat` (None: not checked). With `local_handoff` (and a
    `KafkaForwarder` that batches), a worker holding every partition hands changes to the
    enforce agent in process (`lethe.agents.handoff`)."""
    progress = ChangeProgress(engine.policy.sources_by_topic)
    handoff = None
    if (
        local_handoff
        and clock is not None
        and isinstance(forwarder, KafkaForwarder)
        and forwarder.partitions
        and getattr(changes, "topics", None)
    ):
        handoff = _handoff(
            app, forwarder, metrics, changes, change_partitions, subject_events, subject_partitions
        )
    assign.install(
        app,
        changes,
        deadletters,
        subject_events,
        engine=engine,
        metrics=metrics,
        partitions=change_partitions,
        progress=progress,
        forwarder=forwarder,
        dead_letter_pipeline=dead_letter_pipeline,
        handoff=handoff,
    )
    if clock is None:
        if detailed_metrics:
            lag.install(app, metrics, [progress])
        return
    consumed = None
    if detailed_metrics:
        consumed = ChangeProgress({subject_events.get_topic_name()})
        lag.install(app, metrics, [progress, consumed])
    enforce.install(
        app,
        subject_events,
        deadletters,
        engine=engine,
        metrics=metrics,
        clock=clock,
        partitions=subject_partitions,
        tick_interval=tick_interval,
        audit_hash_key=audit_hash_key,
        progress=progress,
        change_partitions=change_partitions,
        census_interval=census_interval if detailed_metrics else None,
        consumed=consumed,
        forwarder=forwarder,
        heard_until=heartbeat.heard_until if heartbeat is not None else lambda: UNCHECKED,
        handoff=handoff,
    )


def _handoff(
    app: faust.App,
    forwarder: KafkaForwarder,
    metrics: WorkerMetrics,
    changes: ChannelT[bytes],
    change_partitions: int,
    subject_events: TopicT,
    subject_partitions: int,
) -> LocalHandOff:
    """The hand-off, told of every rebalance by the app's signals."""
    handoff = LocalHandOff(
        forwarder,
        subject_events.get_topic_name(),
        subject_partitions,
        changes.topics,  # type: ignore[attr-defined]
        change_partitions,
        shown=metrics.local_handoff.set,
    )

    def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handoff.revoked()

    def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handoff.assigned(args[0] if args else kwargs.get("assigned", set()))

    app.on_partitions_revoked.connect(revoked)
    app.on_partitions_assigned.connect(assigned)
    return handoff
