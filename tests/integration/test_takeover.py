"""Fault matrix row 1 (docs/reliability.md): two workers share the partitions, one is killed
with SIGKILL mid-run, the other takes over; the killed one is started again and its commits
advance; nothing is lost.

The row's other half, a second worker joining before the first has committed anything while
its event loop stalls, is tests/integration/test_rebalance.py; that a change record is
committed only once its forward is delivered (what Faust's exactly_once breaks) is
tests/integration/test_forwarding.py.

The run is the fault harness's (tests/integration/faults.py): the fault data set written to
the demo tables through SQL, captured by Debezium, two `lethe worker`s of one app id (each its
own data directory) under a manual clock advanced twice, then counted against `lethe simulate`
and PostgreSQL. The measured times are printed (`pytest -s`) in a line starting `fault row 1`.
Runs on the shared stack (own app id, own block of ids, no stack part touched).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from lethe.settings import Settings
from tests.integration import faults
from tests.integration.faults import ChangeTopics, Run
from tests.integration.workers import (
    WorkerProcess,
    quiet,
    serving,
    topic_ends,
    wait_for,
)

pytestmark = pytest.mark.integration

RANGE_LOW, RANGE_HIGH = 919_900_000, 919_999_999
"""Ids of this module's rows (a block of 1,000 per run): no demo row, nor test_faults' (919,0..
919,899,999) nor test_end_to_end's (918,...), has one."""
PARTITIONS = 8
"""Partitions of the run's subject events topic: the enforce stage's share of the work."""
CONFIRM_TIMEOUT = "1"
"""LETHE_CONFIRM_TIMEOUT: a command unconfirmed one second of enforcement time after its send
is sent again at the next advance."""
RESTARTED_COMMIT_S = 60.0
"""How long after the second advance the restarted worker may take to commit every partition
it holds to its end (Faust's at-least-once was seen stuck 100-400 s after a SIGKILL
restart)."""


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[Run]:
    run = faults.new_fault_run(real_stack, "lethe-it-takeover-", tmp_path, (RANGE_LOW, RANGE_HIGH))
    try:
        yield run
    finally:
        faults.forget_run(real_stack, run)


def start(run: Run, name: str) -> WorkerProcess:
    """A worker of the run's app id with its own data directory and log under `name`."""
    workdir = run.workdir / name
    workdir.mkdir(exist_ok=True)
    return faults.start_worker(
        replace(run, workdir=workdir), PARTITIONS, LETHE_CONFIRM_TIMEOUT=CONFIRM_TIMEOUT
    )


def assigned(worker: WorkerProcess) -> set[tuple[str, int]]:
    """The partitions the worker reports its consumer lag of: those it is assigned."""
    return {
        (dict(labels)["topic"], int(dict(labels)["partition"]))
        for (name, labels), _ in (worker.metrics() or {}).items()
        if name == "lethe_consumer_lag_messages"
    }


def members(settings: Settings, group: str) -> int | None:
    """How many members the group has once it is stable; None while it rebalances."""
    admin = AdminClient(quiet(settings))
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return len(description.members) if description.state.name == "STABLE" else None


def committed(
    settings: Settings, group: str, partitions: set[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The group's committed offset of each of `partitions` (negative: none)."""
    consumer = Consumer({**quiet(settings), "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in found}
    finally:
        consumer.close()


def write_rows(
    settings: Settings, run: Run, worker: WorkerProcess, topics: ChangeTopics
) -> Counter[str]:
    """The holds, then the fault rows, each captured and processed before the next."""
    expected: Counter[str] = Counter()
    faults.insert_rows(settings, run, {"legal_holds": faults.fault_holds(run)}, expected)
    faults.wait_for_debezium(topics, expected, worker)
    faults.worker_caught_up(settings, run, worker)
    faults.insert_rows(settings, run, faults.fault_rows(run), expected)
    faults.wait_for_debezium(topics, expected, worker)
    faults.worker_caught_up(settings, run, worker)
    return expected


def handed_off(worker: WorkerProcess) -> float:
    """The partitions the worker hands off in process (`lethe.agents.handoff`)."""
    return worker.sample("lethe_local_handoff_partitions")


def test_a_worker_killed_mid_run_is_taken_over_and_nothing_is_lost(
    real_stack: Settings, run: Run
) -> None:
    """Two workers share the run's partitions: the one that reads the change topics (one
    partition each, so one worker reads them all) also holds part of the subject events.
    It is killed with SIGKILL right after the first advance, as the first commands fall due
    (all of the advance's commands that it had not sent are the survivor's to send); the
    survivor is alone in the group once the dead member's session has
    expired, then holds every partition, commits each to its end and hands them all from its
    assign to its enforce stage in process (the two workers before went through the topic);
    with the killed worker back, it goes through the topic again. The killed worker is
    started again on its own data directory, gets its share back, and commits its partitions
    to their end after the second advance within RESTARTED_COMMIT_S. At the end nothing is
    lost or unexpected against `lethe simulate`, every due delete and anonymise is confirmed,
    PostgreSQL holds what the simulation leaves, no command names a held customer or
    deletes an invoice or order early, and both workers still run."""
    topics = ChangeTopics(real_stack, run)
    with contextlib.ExitStack() as workers:
        workers.callback(topics.close)
        first = workers.enter_context(serving(start(run, "worker-1")))
        second = workers.enter_context(serving(start(run, "worker-2")))
        wait_for(
            "both workers in the group",
            lambda: True if members(real_stack, run.app_id) == 2 else None,
            second,
        )
        write_rows(real_stack, run, second, topics)
        change_partitions = {(run.topic(t), 0) for t in run.tables}
        count = len(run.tables) + PARTITIONS

        def shares() -> tuple[WorkerProcess, WorkerProcess] | None:
            """(the worker that reads the change topics, the other) once both report all
            their partitions."""
            one, other = assigned(first), assigned(second)
            if len(one | other) != count:
                return None
            if change_partitions <= one:
                return first, second
            return (second, first) if change_partitions <= other else None

        victim, survivor = wait_for(
            "both workers reporting their partitions, the change topics' (one partition each) "
            "on one of them",
            shares,
            second,
        )
        held = assigned(victim)
        everything = held | assigned(survivor)
        assert [handed_off(w) for w in (victim, survivor)] == [0, 0], (
            "two workers share the partitions: every change goes through the topic"
        )

        faults.advance(real_stack, run, run.advances[0])
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed = time.monotonic()
        at_kill = topic_ends(real_stack, "lethe.commands")
        wait_for(
            "the survivor alone in the group",
            lambda: True if members(real_stack, run.app_id) == 1 else None,
            survivor,
        )
        rebalanced = time.monotonic() - killed
        wait_for(
            lambda: f"the survivor to report every partition (it has {sorted(assigned(survivor))})",
            lambda: True if assigned(survivor) >= everything else None,
            survivor,
        )
        faults.worker_caught_up(real_stack, run, survivor)
        taken_over = time.monotonic() - killed
        wait_for(
            lambda: (
                f"the survivor, alone, to hand every partition off (it hands "
                f"{handed_off(survivor)} of {PARTITIONS})"
            ),
            lambda: True if handed_off(survivor) == PARTITIONS else None,
            survivor,
        )

        at_restart = topic_ends(real_stack, "lethe.commands")
        restarted = workers.enter_context(serving(start(run, victim.log_path.parent.name)))
        wait_for(
            "the restarted worker to be assigned partitions",
            lambda: True if assigned(restarted) and assigned(survivor) != everything else None,
            restarted,
        )
        rejoined = time.monotonic() - killed
        assert handed_off(survivor) == 0, "a worker that shares the group hands nothing off"
        its_share = assigned(restarted)
        at_rejoin = committed(real_stack, run.app_id, its_share)
        advanced = time.monotonic()
        faults.advance(real_stack, run, run.advances[1])
        faults.worker_caught_up(real_stack, run, restarted)
        commits_after = time.monotonic() - advanced
        now = committed(real_stack, run.app_id, its_share)
        assert all(
            now[tp] > at_rejoin[tp] for tp in its_share if tp[0].endswith("subject-events")
        ), f"the restarted worker's commits did not advance: {at_rejoin} then {now}"
        assert commits_after < RESTARTED_COMMIT_S, (
            f"the restarted worker took {commits_after:.0f} s to commit its partitions"
        )

        counts, live, problems = faults.settle(real_stack, run, topics)
        mine = [c for c in live if run.owns(int(c["key"]["id"]))]
        phases = Counter(
            sum(1 for ends in (at_kill, at_restart) if c["where"][1] >= ends.get(c["where"][0], 0))
            for c in mine
        )
        assert problems == [], "\n".join(problems)
        assert phases[1], (
            "no command was sent between the kill and the restart: none was left to take over"
        )
        for worker in (survivor, restarted):
            assert worker.process.poll() is None, (
                f"{worker.log_path.parent.name} exited ({worker.process.returncode})\n"
                + worker.tail()
            )
        print(
            f"fault row 1: {victim.log_path.parent.name} (holding {len(held)} of "
            f"{len(everything)} partitions, the change topics among them) killed; the group "
            f"rebalanced without it {rebalanced:.1f} s later, the survivor had committed every "
            f"partition to its end {taken_over:.1f} s after the kill; the restarted worker held "
            f"{len(its_share)} partitions {rejoined:.1f} s after the kill and committed them to "
            f"their end {commits_after:.1f} s after the second advance; commands sent before the "
            f"kill {phases[0]}, by the survivor alone {phases[1]}, after the restart {phases[2]}; "
            f"{counts.line()}"
        )
