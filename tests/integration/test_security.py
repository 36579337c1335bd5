"""Security on the real local stack: Kafka over SASL/SCRAM and TLS, a worker whose web server
serves /metrics and /health only, and secrets that no command or log shows.

The stack's broker has a SASL_SSL listener (SCRAM-SHA-512, a certificate signed by the stack's
CA `<LETHE_STACK_DIR>/kafka/tls/ca.pem`) on LETHE_KAFKA_SASL_PORT (the bootstrap port + 2)
next to its plain one (`lethe.stack.kafka`). The tests make a SCRAM user of their own with a
recognisable password (through the plain listener, and delete it at the end), and run a worker
whose only way to Kafka is that listener: it reads the change records of a table of its own
(`it_sec_<run>_connection_logs`, a copy of connection_logs no connector captures, whose change
records the test writes) and issues the deletes its policy says, which the stack's JDBC sink
applies. The same worker is asked for every view Faust serves of its own (404, the web server
listening on 127.0.0.1 only). A wrong password stops `lethe worker` at start with "authentication
failed" and without the password. Every `lethe` command, and the worker at `-l debug`, run with
recognisable values of the SASL password, LETHE_AUDIT_HASH_KEY and LETHE_PG_PASSWORD, which
show nowhere in their output or logs. Runs on the shared stack (own table, topics, app ids and
SCRAM user); fails (never skips) when the stack is down or its broker lacks the listener.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from lethe.settings import Settings
from lethe.stack.kafka import Kafka
from lethe.stack.process import port_open
from tests.integration.test_worker_recovery import (
    deletes_issued,
    insert_rows,
    overdue,
    remaining,
    write_creates,
)
from tests.integration.workers import (
    ROOT,
    LogsRun,
    WorkerProcess,
    drop_run,
    forget_topics,
    free_port,
    quiet,
    serving,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

ROWS = range(1, 4)
SAMPLE = str(ROOT / "docs" / "sample" / "hosting-6y.jsonl")
HASH_KEY = "audit-key-it-5ecr3t-" + uuid.uuid4().hex
"""A recognisable LETHE_AUDIT_HASH_KEY (at least 32 characters)."""
PG_PASSWORD = "pg-pass-it-5ecr3t-" + uuid.uuid4().hex[:12]
"""A recognisable LETHE_PG_PASSWORD (wrong: only commands that never log in get it)."""
FAUST_VIEWS = (
    "/",
    "/table",
    "/table/locations",
    "/table/locations/1",
    "/router",
    "/router/locations/",
    "/stats",
    "/stats/",
    "/graph",
    "/graph/",
    "/performance",
    "/performance/",
    "/assignment",
    "/signal",
)
"""Paths Faust serves in one configuration or another (its stats, tables, router, graph and
performance blueprints and its index); none is Lethe's."""


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str


@pytest.fixture(scope="module")
def sasl_port(real_stack: Settings) -> int:
    """The stack's SASL_SSL listener; fails saying how to get it when the broker lacks it."""
    kafka = Kafka(real_stack)
    if not (kafka.ca_file.is_file() and port_open(kafka.host, real_stack.stack_sasl_port)):
        pytest.fail(
            f"the stack's broker has no SASL_SSL listener on {kafka.host}:"
            f"{real_stack.stack_sasl_port} (or no {kafka.ca_file}): it was started by an older "
            "`lethe stack up`; restart it: `lethe stack down && lethe stack up`",
            pytrace=False,
        )
    return real_stack.stack_sasl_port


@pytest.fixture(scope="module")
def scram_user(real_stack: Settings, sasl_port: int) -> Iterator[ScramUser]:
    """A SCRAM-SHA-512 user of this module's own, deleted at the end."""
    hexed = uuid.uuid4().hex[:8]
    user = ScramUser(f"security-it-{hexed}", f"scram-pass-it-5ecr3t-{uuid.uuid4().hex}")
    admin = AdminClient(quiet(real_stack))
    upsert = UserScramCredentialUpsertion(
        user.name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), user.password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    try:
        yield user
    finally:
        deletion = UserScramCredentialDeletion(user.name, ScramMechanism.SCRAM_SHA_512)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            future.result(timeout=30)


def sasl_env(settings: Settings, port: int, user: str, password: str) -> dict[str, str]:
    """The variables of a Lethe whose only way to Kafka is the stack's SASL_SSL listener."""
    host = Kafka(settings).host
    return {
        "LETHE_KAFKA_BOOTSTRAP": f"{host}:{port}",
        "LETHE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LETHE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LETHE_KAFKA_SASL_USERNAME": user,
        "LETHE_KAFKA_SASL_PASSWORD": password,
        "LETHE_KAFKA_SSL_CA_FILE": str(Kafka(settings).ca_file),
        "LETHE_AUDIT_HASH_KEY": HASH_KEY,
    }


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogsRun]:
    hexed = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("security")
    run = LogsRun(f"security-it-{hexed}", f"it_sec_{hexed}_connection_logs", workdir)
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {run.table} (LIKE connection_logs INCLUDING ALL)")
    try:
        yield run
    finally:
        drop_run(real_stack, run.app_id, run.table, [run.table])


@pytest.fixture(scope="module")
def sasl_worker(
    real_stack: Settings, sasl_port: int, scram_user: ScramUser, run: LogsRun
) -> Iterator[WorkerProcess]:
    """`lethe worker` of the run's policy over SASL_SSL, enforcing, serving."""
    env = sasl_env(real_stack, sasl_port, scram_user.name, scram_user.password)
    worker = start_worker(run.app_id, run.workdir, run.write_policy(), env=env)
    with serving(worker):
        yield worker


def test_a_worker_over_sasl_ssl_reads_the_changes_and_issues_the_deletes(
    real_stack: Settings, run: LogsRun, sasl_worker: WorkerProcess
) -> None:
    logged = {row: overdue(row) for row in ROWS}
    insert_rows(real_stack, run, logged)
    write_creates(real_stack, run, logged, ROWS)

    wait_for(
        "a delete issued for every row",
        lambda: True if len(deletes_issued(real_stack, run)) >= len(ROWS) else None,
        sasl_worker,
    )
    assert sorted(int(c["key"]["id"]) for c in deletes_issued(real_stack, run)) == list(ROWS)
    wait_for(
        "the rows deleted in PostgreSQL",
        lambda: True if remaining(real_stack, run) == 0 else None,
        sasl_worker,
    )
    assert "via SCRAM-SHA-512" in sasl_worker.log(), "the worker logged in with SCRAM"


def status_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp{,6} write them) of the sockets listening
    on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_the_workers_web_server_serves_metrics_and_health_only_on_loopback(
    sasl_worker: WorkerProcess,
) -> None:
    base = sasl_worker.metrics_url.removesuffix("/metrics")
    status, body = status_of(f"{base}/metrics")
    assert status == 200 and b"lethe_change_events_total" in body
    status, body = status_of(f"{base}/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    served = {path: status_of(base + path)[0] for path in FAUST_VIEWS}
    assert served == dict.fromkeys(FAUST_VIEWS, 404)
    port = int(base.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}, "bound to 127.0.0.1 only"


def test_a_wrong_password_stops_the_worker_saying_authentication_failed(
    real_stack: Settings, sasl_port: int, scram_user: ScramUser, run: LogsRun
) -> None:
    wrong = f"wrong-pass-it-5ecr3t-{uuid.uuid4().hex}"
    env = sasl_env(real_stack, sasl_port, scram_user.name, wrong)
    done = lethe(
        ["worker", "--app-id", f"{run.app_id}-refused"],
        {**env, "LETHE_POLICY": str(run.write_policy()), "LETHE_DATA_DIR": str(run.workdir)},
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "authentication failed" in done.stderr, output
    assert scram_user.name in done.stderr, "it names the user whose login failed"
    assert wrong not in output
    assert wrong[:12] not in output


def lethe(args: list[str], env: Mapping[str, str], timeout: float = 120.0) -> Completed:
    """`lethe <args>` from the checkout with `env` added to this environment."""
    done = subprocess.run(
        [sys.executable, "-m", "lethe", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def test_no_command_and_no_worker_log_shows_a_secret(
    real_stack: Settings, sasl_port: int, scram_user: ScramUser, run: LogsRun
) -> None:
    secrets = [scram_user.password, HASH_KEY, PG_PASSWORD]
    env = {
        **sasl_env(real_stack, sasl_port, scram_user.name, scram_user.password),
        "LETHE_PG_PASSWORD": PG_PASSWORD,
        "LETHE_POLICY": str(run.write_policy()),
    }
    clock_topic = f"{run.app_id}-clock"
    manual = {
        **env,
        "LETHE_CLOCK": "manual",
        "LETHE_CLOCK_START": "2026-01-01T00:00:00Z",
        "LETHE_CLOCK_TOPIC": clock_topic,
    }
    runs = {
        "validate": lethe(["validate"], env),
        "simulate": lethe(
            ["simulate", "--policy", str(ROOT / "config" / "policy.yaml"), "--events", SAMPLE],
            env,
        ),
        "clock show": lethe(["clock", "show"], env),
        "clock advance": lethe(["clock", "advance", "2026-02-01T00:00:00Z"], manual),
        "manual clock show": lethe(["clock", "show"], manual),
        "stack status": lethe(["stack", "status"], env),
        "worker, short key": lethe(
            ["worker", "--app-id", f"{run.app_id}-short-key"],
            {**env, "LETHE_AUDIT_HASH_KEY": HASH_KEY[:20]},
        ),
        "worker, PLAIN over the SASL_SSL listener": lethe(
            ["worker", "--app-id", f"{run.app_id}-plain"],
            {**env, "LETHE_KAFKA_SASL_MECHANISM": "PLAIN", "LETHE_DATA_DIR": str(run.workdir)},
        ),
    }
    try:
        assert runs["validate"].returncode == 0, runs["validate"].stderr
        assert runs["simulate"].returncode == 0, runs["simulate"].stderr
        assert runs["clock advance"].returncode == 0, runs["clock advance"].stderr
        assert "2026-02-01" in runs["manual clock show"].stdout, "the clock read over SASL_SSL"
        assert "LETHE_AUDIT_HASH_KEY has 20 characters" in runs["worker, short key"].stderr
        plain = runs["worker, PLAIN over the SASL_SSL listener"]
        assert plain.returncode != 0
        assert "does not offer SASL mechanism PLAIN" in plain.stderr, plain.stderr

        debug_log = debug_worker_log(run, env)
        outputs = {name: done.stdout + done.stderr for name, done in runs.items()}
        outputs["worker log at -l debug"] = debug_log
        for name, text in outputs.items():
            for secret in secrets:
                assert secret not in text, f"{name} shows a secret"
                assert secret[-16:] not in text, f"{name} shows part of a secret"
    finally:
        forget_topics(real_stack, f"{run.app_id}-debug", topics=[clock_topic])


def debug_worker_log(run: LogsRun, env: Mapping[str, str]) -> str:
    """The log of `lethe worker -l debug` (LETHE_ENFORCE=off) from its start until it serves
    its start is over ("Worker ready"), and its stop."""
    port = free_port()
    log_path = run.workdir / "debug-worker.log"
    worker_env = {
        **os.environ,
        **env,
        "LETHE_ENFORCE": "off",
        "LETHE_DATA_DIR": str(run.workdir / "data"),
        "LETHE_WEB_PORT": str(port),
        "LETHE_INTERNAL_PARTITIONS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lethe",
                "worker",
                "--app-id",
                f"{run.app_id}-debug",
                "-l",
                "debug",
            ],
            cwd=ROOT,
            env=worker_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", run.app_id)
    with serving(worker):
        wait_for(
            "the worker ready", lambda: True if "Worker ready" in worker.log() else None, worker
        )
    return worker.log()
