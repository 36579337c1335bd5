"""Kafka Connect's connectors as the worker sees them: a FAILED task is shown and alerted.

A connector task that fails stays FAILED until someone restarts it. Meanwhile a JDBC sink
applies no delete or anonymisation (its records wait on the `lethe.sink.<table>` topics; a
PostgreSQL restart during an apply does this, docs/reliability.md row 4) and a Debezium
source publishes no change. So the worker asks Kafka Connect's REST API
(`GET <LETHE_CONNECT_URL>/connectors?expand=status`) every LETHE_CONNECT_POLL_INTERVAL seconds,
in a daemon thread of its own (the agents never wait for it), and shows what it answers:
`lethe_connector_tasks{connector,state}` (tasks per state), `lethe_connector_state
{connector,state}` (1 for the connector's own state), `lethe_connect_up` (whether the last
poll was answered) and `lethe_connect_poll_age_seconds` (since the last answer). A poll that
fails keeps the connectors' last known states (so that one lost answer does not reset an
alert's `for`): the age says how old they are. Alerts `LetheConnectorTaskFailed` and
`LetheConnectUnreachable` (docs/runbook.md). Labels hold connector names and states only;
a task's trace (which can quote a record's values) is never logged nor shown.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lethe.metrics import WorkerMetrics

log = logging.getLogger(__name__)

TASK_STATES: Final = ("RUNNING", "FAILED", "PAUSED", "UNASSIGNED", "RESTARTING", "STOPPED")
"""The states Kafka Connect gives connectors and tasks; each is shown from the first poll,
at 0 when no task is in it, so that an alert on FAILED always has data."""
MISSING: Final = "MISSING"
"""The state shown for a connector LETHE_CONNECT_CONNECTORS names that Connect does not have."""
CONNECTOR_STATES: Final = (*TASK_STATES, MISSING)
UNKNOWN: Final = "UNKNOWN"
"""The state label of a state that is not a plain upper-case word (never Connect's own)."""
REQUEST_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """A connector's own state and its tasks' states by task id."""

    state: str
    tasks: Mapping[int, str]

    def task_counts(self) -> dict[str, int]:
        """Tasks per state: every one of `TASK_STATES` (0 when none), and any other seen."""
        counts = dict.fromkeys(TASK_STATES, 0)
        for state in self.tasks.values():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def failed_tasks(self) -> list[int]:
        return sorted(task for task, state in self.tasks.items() if state == "FAILED")

    def broken(self) -> bool:
        """Whether the connector applies or publishes nothing until someone acts: it, or a
        task of it, FAILED, or it is MISSING."""
        return self.state in ("FAILED", MISSING) or bool(self.failed_tasks())


def connector_statuses(
    answer: object, watched: frozenset[str] | None = None
) -> dict[str, ConnectorStatus]:
    """The connectors of Connect's answer to `GET /connectors?expand=status`, by name: all of
    them, or the `watched` ones (one Connect does not have is `MISSING`, without tasks).
    ValueError when the answer is not that JSON object."""
    if not isinstance(answer, dict):
        raise ValueError(f"expected a JSON object of connectors, got {type(answer).__name__}")
    statuses: dict[str, ConnectorStatus] = {}
    for name, expanded in answer.items():
        if watched is not None and name not in watched:
            continue
        status = expanded.get("status") if isinstance(expanded, dict) else None
        if not isinstance(status, dict):
            raise ValueError(f"connector {name!r} has no status (ask with ?expand=status)")
        connector = status.get("connector")
        state = _state(connector.get("state") if isinstance(connector, dict) else None)
        tasks = {
            int(task.get("id", index)): _state(task.get("state"))
            for index, task in enumerate(status.get("tasks") or [])
            if isinstance(task, dict)
        }
        statuses[str(name)] = ConnectorStatus(state, tasks)
    for name in sorted((watched or frozenset()) - statuses.keys()):
        statuses[name] = ConnectorStatus(MISSING, {})
    return statuses


def _state(value: object) -> str:
    text = str(value)
    return text if re.fullmatch(r"[A-Z_]{1,20}", text) else UNKNOWN


def fetch_statuses(url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
    """Connect's answer to `GET <url>/connectors?expand=status`, parsed from JSON."""
    with urllib.request.urlopen(
        f"{url.rstrip('/')}/connectors?expand=status", timeout=timeout_s
    ) as answer:
        return json.loads(answer.read())


class ConnectWatch:
    """Polls Kafka Connect for its connectors' states and shows them on the worker's gauges."""

    def __init__(
        self,
        url: str,
        interval_s: float,
        metrics: WorkerMetrics,
        watched: frozenset[str] | None = None,
        fetch: Callable[[], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`url`: LETHE_CONNECT_URL; `watched`: the connectors to show (None: all);
        `fetch`: how Connect's answer is got (default: its REST API at `url`); `monotonic`:
        the clock of the poll's age."""
        self.url = url
        self.interval_s = interval_s
        self.metrics = metrics
        self.watched = watched
        timeout_s = min(REQUEST_TIMEOUT_S, max(1.0, interval_s))
        self._fetch = fetch or (lambda: fetch_statuses(url, timeout_s))
        self._shown: dict[str, ConnectorStatus] = {}
        self._answered: bool | None = None
        self._monotonic = monotonic
        self._last_answer = monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lethe-connect-watch", daemon=True)
        metrics.connect_up.set(0)
        metrics.connect_poll_age.set_function(self.age_seconds)
        metrics.registry.register(metrics.connect_up)
        metrics.registry.register(metrics.connect_poll_age)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S + 1)

    def age_seconds(self) -> float:
        """Seconds since Connect last answered a poll (since the watch began, before any)."""
        return max(0.0, self._monotonic() - self._last_answer)

    def poll(self) -> bool:
        """Ask Connect once and show its answer; whether it answered. No answer, or one that
        is not Connect's JSON, is shown on `lethe_connect_up` and logged when it begins and
        ends, never raised."""
        try:
            statuses = connector_statuses(self._fetch(), self.watched)
        except Exception as exc:
            self.metrics.connect_up.set(0)
            if self._answered is not False:
                log.warning(
                    "Kafka Connect at %s does not answer (%s): the connectors' states are not "
                    "known (lethe_connect_up 0); see docs/runbook.md#letheconnectunreachable",
                    self.url,
                    exc,
                )
            self._answered = False
            return False
        if self._answered is False:
            log.info("Kafka Connect at %s answers again", self.url)
        self._answered = True
        self._last_answer = self._monotonic()
        self.metrics.connect_up.set(1)
        self.show(statuses)
        return True

    def show(self, statuses: Mapping[str, ConnectorStatus]) -> None:
        """Set the gauges to `statuses`; a connector no longer listed leaves them. Each task
        or connector that has become FAILED is logged once, with where to look."""
        m = self.metrics
        for name, status in statuses.items():
            for state, count in status.task_counts().items():
                m.connector_tasks.labels(name, state).set(count)
            for state in (*CONNECTOR_STATES, status.state):
                m.connector_state.labels(name, state).set(1 if state == status.state else 0)
            self._log_change(name, self._shown.get(name), status)
        for gone in self._shown.keys() - statuses.keys():
            before = self._shown[gone]
            for state in (*before.task_counts(), *CONNECTOR_STATES, before.state):
                m.connector_tasks.remove(gone, state)
                m.connector_state.remove(gone, state)
        self._shown = dict(statuses)

    def _log_change(self, name: str, before: ConnectorStatus | None, now: ConnectorStatus) -> None:
        failed_before = set(before.failed_tasks()) if before is not None else set()
        newly = [task for task in now.failed_tasks() if task not in failed_before]
        if newly:
            log.warning(
                "Kafka Connect: task %s of connector %s FAILED; it stays so until restarted. "
                "Its trace: curl %s/connectors/%s/status; restart: curl -X POST "
                "%s/connectors/%s/tasks/%d/restart (docs/runbook.md#letheconnectortaskfailed)",
                ", ".join(map(str, newly)),
                name,
                self.url,
                name,
                self.url,
                name,
                newly[0],
            )
        if now.state in ("FAILED", MISSING) and (before is None or before.state != now.state):
            log.warning(
                "Kafka Connect: connector %s is %s (docs/runbook.md#letheconnectortaskfailed)",
                name,
                now.state,
            )
        if before is not None and before.broken() and not now.broken():
            log.info("Kafka Connect: connector %s and its tasks are no longer FAILED", name)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)
