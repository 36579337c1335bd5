"""Kafka Connect's connector states as the worker shows them (`lethe.connect_watch`): its answer
to `GET /connectors?expand=status` (hand-written here as Connect 4 writes it) turned into the
`lethe_connector_` gauges, a Connect that does not answer, and the settings of the poll."""

from __future__ import annotations

import json
import logging
import urllib.error
from pathlib import Path

import pytest

from lethe.commands.worker import build_worker_app
from lethe.connect_watch import ConnectorStatus, ConnectWatch, connector_statuses
from lethe.errors import ConfigError
from lethe.metrics import WorkerMetrics
from lethe.policy_file import load_policy
from lethe.settings import Settings
from tests.unit.conftest import scraped

ROOT = Path(__file__).resolve().parents[2]

TRACE = (
    "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to "
    "unrecoverable exception.\n\tat org.apache.kafka.connect.runtime.WorkerSinkTask"
    ".deliverMessages(WorkerSinkTask.java:636)\nCaused by: org.postgresql.util.PSQLException: "
    "ERROR: duplicate key value violates unique constraint\n  Detail: Key (email)="
    "(ada@example.org) already exists."
)
"""A sink task's trace: it can quote a row's values, so it is never logged nor shown."""

ANSWER = json.loads(
    """
{
  "hosting": {"status": {
    "name": "hosting",
    "connector": {"state": "RUNNING", "worker_id": "127.0.0.1:8083", "version": "3.6.0.Final"},
    "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "127.0.0.1:8083",
               "version": "3.6.0.Final"}],
    "type": "source"}},
  "lethe-sink": {"status": {
    "name": "lethe-sink",
    "connector": {"state": "RUNNING", "worker_id": "127.0.0.1:8083", "version": "3.6.0.Final"},
    "tasks": [{"id": 0, "state": "FAILED", "worker_id": "127.0.0.1:8083",
               "version": "3.6.0.Final", "trace": "TRACE"},
              {"id": 1, "state": "RUNNING", "worker_id": "127.0.0.1:8083",
               "version": "3.6.0.Final"}],
    "type": "sink"}},
  "archive-sink": {"status": {
    "name": "archive-sink",
    "connector": {"state": "FAILED", "worker_id": "127.0.0.1:8083",
                  "trace": "java.lang.ClassNotFoundException: com.example.Nowhere"},
    "tasks": [],
    "type": "sink"}},
  "paused-sink": {"status": {
    "name": "paused-sink",
    "connector": {"state": "PAUSED", "worker_id": "127.0.0.1:8083"},
    "tasks": [{"id": 0, "state": "PAUSED", "worker_id": "127.0.0.1:8083"}],
    "type": "sink"}}
}
""".replace('"TRACE"', json.dumps(TRACE))
)


def tasks(metrics: WorkerMetrics, connector: str) -> dict[str, float]:
    """`lethe_connector_tasks` of `connector` by state, as scraped."""
    return {
        dict(labels)["state"]: value
        for (name, labels), value in scraped(metrics).items()
        if name == "lethe_connector_tasks" and dict(labels)["connector"] == connector
    }


def connector_state(metrics: WorkerMetrics, connector: str) -> list[str]:
    """The states `lethe_connector_state` shows at 1 for `connector` (one, when right)."""
    return [
        dict(labels)["state"]
        for (name, labels), value in scraped(metrics).items()
        if name == "lethe_connector_state" and dict(labels)["connector"] == connector and value
    ]


ZERO = {"RUNNING": 0, "FAILED": 0, "PAUSED": 0, "UNASSIGNED": 0, "RESTARTING": 0, "STOPPED": 0}


def test_connects_answer_becomes_each_connectors_state_and_tasks_per_state():
    assert connector_statuses(ANSWER) == {
        "hosting": ConnectorStatus("RUNNING", {0: "RUNNING"}),
        "lethe-sink": ConnectorStatus("RUNNING", {0: "FAILED", 1: "RUNNING"}),
        "archive-sink": ConnectorStatus("FAILED", {}),
        "paused-sink": ConnectorStatus("PAUSED", {0: "PAUSED"}),
    }


def test_a_failed_task_of_a_running_connector_is_counted_failed_every_other_state_at_0():
    metrics = WorkerMetrics.create()
    watch = ConnectWatch("http://connect:8083", 10, metrics, fetch=lambda: ANSWER)
    assert watch.poll()
    assert tasks(metrics, "lethe-sink") == {**ZERO, "FAILED": 1, "RUNNING": 1}
    assert connector_state(metrics, "lethe-sink") == ["RUNNING"]
    assert tasks(metrics, "hosting") == {**ZERO, "RUNNING": 1}
    assert tasks(metrics, "archive-sink") == ZERO, "a failed connector has no task"
    assert connector_state(metrics, "archive-sink") == ["FAILED"]
    assert tasks(metrics, "paused-sink") == {**ZERO, "PAUSED": 1}
    assert scraped(metrics)[("lethe_connect_up", frozenset())] == 1


def test_only_the_watched_connectors_are_shown_and_one_connect_lacks_is_missing():
    metrics = WorkerMetrics.create()
    watched = frozenset({"hosting", "lethe-sink", "lethe-sink-2"})
    ConnectWatch("http://connect:8083", 10, metrics, watched, fetch=lambda: ANSWER).poll()
    shown = {dict(labels)["connector"] for (name, labels) in scraped(metrics) if "connector" in
             dict(labels)}  # fmt: skip
    assert shown == watched
    assert connector_state(metrics, "lethe-sink-2") == ["MISSING"]
    assert tasks(metrics, "lethe-sink-2") == ZERO


def test_a_deleted_connector_leaves_the_gauges_and_a_restarted_task_counts_running():
    answers = [ANSWER, {name: ANSWER[name] for name in ("hosting", "lethe-sink")}]
    restarted = json.loads(json.dumps(answers[1]))
    restarted["lethe-sink"]["status"]["tasks"][0] = {"id": 0, "state": "RUNNING",
                                                     "worker_id": "127.0.0.1:8083"}  # fmt: skip
    answers.append(restarted)
    metrics = WorkerMetrics.create()
    watch = ConnectWatch("http://connect:8083", 10, metrics, fetch=lambda: answers.pop(0))
    watch.poll()
    watch.poll()
    assert tasks(metrics, "archive-sink") == {}
    assert connector_state(metrics, "archive-sink") == []
    assert tasks(metrics, "lethe-sink")["FAILED"] == 1
    watch.poll()
    assert tasks(metrics, "lethe-sink") == {**ZERO, "RUNNING": 2}


def test_a_connect_that_does_not_answer_is_shown_and_the_last_states_are_kept():
    answers: list[object] = [
        ANSWER,
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        "<html>502 Bad Gateway</html>",
        ["hosting", "lethe-sink"],
        {"odd": {"status": {"connector": {"state": "RUNNING"}, "tasks": [{"id": None}]}}},
        ANSWER,
    ]

    def fetch() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            return json.loads(answer)  # a proxy's error page is not JSON
        return answer

    metrics = WorkerMetrics.create()
    watch = ConnectWatch("http://connect:8083", 10, metrics, fetch=fetch)
    assert watch.poll()
    up = ("lethe_connect_up", frozenset())
    for _ in range(4):
        assert not watch.poll()
        assert scraped(metrics)[up] == 0
        assert tasks(metrics, "lethe-sink")["FAILED"] == 1, "the last known states stay"
    assert watch.poll()
    assert scraped(metrics)[up] == 1


def test_the_poll_age_grows_while_connect_does_not_answer():
    now = [1000.0]
    answers: list[object] = [ANSWER, None, ANSWER]

    def fetch() -> object:
        answer = answers.pop(0)
        if answer is None:
            raise TimeoutError("timed out")
        return answer

    metrics = WorkerMetrics.create()
    watch = ConnectWatch("http://connect:8083", 10, metrics, fetch=fetch, monotonic=lambda: now[0])
    age = ("lethe_connect_poll_age_seconds", frozenset())
    now[0] = 1004.0
    assert scraped(metrics)[age] == 4, "before the first answer: since the watch began"
    watch.poll()
    now[0] = 1075.0
    watch.poll()
    assert scraped(metrics)[age] == 71
    watch.poll()
    assert scraped(metrics)[age] == 0


def test_a_failed_task_is_logged_once_with_where_to_look_and_never_its_trace(
    caplog: pytest.LogCaptureFixture,
):
    metrics = WorkerMetrics.create()
    watch = ConnectWatch("http://connect:8083", 10, metrics, fetch=lambda: ANSWER)
    with caplog.at_level(logging.INFO, logger="lethe.connect_watch"):
        watch.poll()
        watch.poll()
    failed = [r.getMessage() for r in caplog.records if "lethe-sink FAILED" in r.getMessage()]
    assert len(failed) == 1
    assert "curl http://connect:8083/connectors/lethe-sink/status" in failed[0]
    assert "curl -X POST http://connect:8083/connectors/lethe-sink/tasks/0/restart" in failed[0]
    assert "connector archive-sink is FAILED" in caplog.text
    assert "ada@example.org" not in caplog.text and "PSQLException" not in caplog.text


@pytest.mark.parametrize("interval", [10.0, None], ids=["on", "off"])
def test_the_worker_serves_the_poll_gauges_only_while_the_poll_is_on(
    tmp_path: Path, interval: float | None
):
    settings = Settings(data_dir=tmp_path, enforce=False, connect_poll_interval=interval)
    policy = load_policy(ROOT / "config" / "policy.yaml")
    app = build_worker_app(settings, "lethe-unit-connect", policy, ["hosting.public.orders"], 1)
    names = {name for name, _ in scraped(app.metrics)}
    served = {"lethe_connect_up", "lethe_connect_poll_age_seconds"} <= names
    assert served == (interval is not None), "no 0 that says Connect is down while unpolled"


def test_the_poll_interval_and_the_watched_connectors_come_from_their_variables():
    assert Settings().connect_poll_interval == 10.0
    assert Settings().watched_connectors is None
    env = {"LETHE_CONNECT_POLL_INTERVAL": "2.5",
           "LETHE_CONNECT_CONNECTORS": " hosting, lethe-sink ,"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.connect_poll_interval == 2.5
    assert settings.watched_connectors == frozenset({"hosting", "lethe-sink"})
    assert Settings.from_env({"LETHE_CONNECT_POLL_INTERVAL": "off"}).connect_poll_interval is None
    with pytest.raises(ConfigError, match=r"LETHE_CONNECT_POLL_INTERVAL=0\.0 is not more than 0"):
        Settings.from_env({"LETHE_CONNECT_POLL_INTERVAL": "0"})
    with pytest.raises(ConfigError, match=r"LETHE_CONNECT_POLL_INTERVAL='soon'.*or off"):
        Settings.from_env({"LETHE_CONNECT_POLL_INTERVAL": "soon"})
