"""The local real stack: PostgreSQL, Kafka (KRaft), Kafka Connect + Debezium, Prometheus
with its Alertmanager and the webhook receiver the Alertmanager notifies.

Connect runs two connectors: the Debezium source `hosting` (the demo database's change
topics) and the Debezium JDBC sink `lethe-sink` (the `lethe.sink.public.<table>` topics
applied to the demo database).

`up` installs what is missing (Debian packages, Maven jars), starts each part that is not
running and waits until it is healthy; on a running stack it only re-checks health.
`down` stops every part (Connect first, PostgreSQL last) and kills leftovers that still
hold a port and belong to this stack. Data, logs and pid files live under `.stack/`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.alertmanager import Alertmanager, AlertReceiver
from lethe.stack.base import Part, PartStatus
from lethe.stack.connect import Connect, RegisteredConnector, SinkConnector, SourceConnector
from lethe.stack.install import ensure_jars, ensure_packages, jars_current, missing_packages
from lethe.stack.kafka import Kafka
from lethe.stack.postgres import Postgres
from lethe.stack.process import owns_pid, pids_listening, stop_pid
from lethe.stack.prometheus import Prometheus

__all__ = ["PART_NAMES", "down", "parts", "pending", "status", "up"]

PART_NAMES = (
    "postgres",
    "kafka",
    "connect",
    "source",
    "sink",
    "alert-receiver",
    "alertmanager",
    "prometheus",
)


def parts(settings: Settings) -> list[Part]:
    """The parts in start order (without jars: enough for status and stop)."""
    return [
        Postgres(settings),
        Kafka(settings),
        Connect(settings),
        SourceConnector(settings),
        SinkConnector(settings),
        AlertReceiver(settings),
        Alertmanager(settings),
        Prometheus(settings),
    ]


def up(
    settings: Settings, *, only: set[str] | None = None, say: Callable[[str], None] = print
) -> dict[str, bool]:
    """Start what is not running, wait for health; returns {part: started?}."""
    begin = time.monotonic()
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    ensure_packages(settings)
    jars = ensure_jars(settings)
    chosen = [
        Postgres(settings),
        Kafka(settings, jars),
        Connect(settings, jars),
        SourceConnector(settings),
        SinkConnector(settings),
        AlertReceiver(settings),
        Alertmanager(settings),
        Prometheus(settings),
    ]
    started: dict[str, bool] = {}
    for part in chosen:
        if only is not None and part.name not in only:
            continue
        t0 = time.monotonic()
        try:
            started[part.name] = part.up()
        except StackError as exc:
            text = str(exc)
            raise StackError(
                text if text.startswith(part.name) else f"{part.name}: {text}"
            ) from exc
        verb = part.started_verb if started[part.name] else part.unchanged_verb
        say(f"{part.name:<11} {verb} ({time.monotonic() - t0:.1f}s)  {part.endpoint}")
        if isinstance(part, Postgres) and part.relocated:
            say(
                f"{'':<11} cluster in {part.dir}: the postgres user cannot reach "
                f"{settings.stack_dir} (see `lethe stack status`)"
            )
    say(f"stack healthy in {time.monotonic() - begin:.1f}s")
    return started


def pending(settings: Settings) -> list[str]:
    """What `up` would change on the stack as it is now; empty when `up` would only check it."""
    found = [f"install the Debian package {name}" for name in missing_packages()]
    if not jars_current(settings):
        found.append(f"fetch the jars into {settings.cache_dir} again (the poms changed)")
    found += [
        f"start {part.name}" for part in parts(settings) if not (part.pid() and part.healthy())
    ]
    connectors: list[RegisteredConnector] = [SourceConnector(settings), SinkConnector(settings)]
    for connector in connectors:
        if not connector.registered_as_configured():
            found.append(f"register {connector.url} with the config the settings give")
    kafka = Kafka(settings)
    if kafka.pid() and not kafka.config_current():
        found.append(
            f"restart kafka: {kafka.config_file} lacks what this code writes (e.g. the "
            "SASL_SSL listener): `lethe stack down && lethe stack up`"
        )
    prometheus = Prometheus(settings)
    if not prometheus.config_current():
        found.append(f"rewrite {prometheus.config_file} from {prometheus.template} and reload")
    alertmanager = Alertmanager(settings)
    if not alertmanager.config_current():
        found.append(f"rewrite {alertmanager.config_file} from {alertmanager.template} and reload")
    return found


def status(settings: Settings) -> list[PartStatus]:
    return [part.status() for part in parts(settings)]


def down(settings: Settings, *, wipe: bool = False, say: Callable[[str], None] = print) -> None:
    """Stop Connect, Kafka, Prometheus, Alertmanager and its receiver, PostgreSQL; then
    leftovers; `wipe` deletes data too."""
    by_name = {part.name: part for part in parts(settings)}
    for name in ("connect", "kafka", "prometheus", "alertmanager", "alert-receiver", "postgres"):
        part = by_name[name]
        t0 = time.monotonic()
        stopped = part.stop()
        killed = _kill_leftovers(part)
        if stopped or killed:
            extra = f", killed leftover pids {killed}" if killed else ""
            say(f"{name:<11} stopped ({time.monotonic() - t0:.1f}s{extra})")
        else:
            say(f"{name:<11} was not running")
    if wipe:
        for part in by_name.values():
            if not part.dir.is_relative_to(settings.stack_dir):
                part.wipe()
                say(f"{part.name:<11} data in {part.dir} deleted (its log with it)")
        _wipe(settings.stack_dir)
        say(f"data under {settings.stack_dir} deleted (logs kept; download cache kept)")


def stop_part(settings: Settings, name: str) -> bool:
    """Stop one part (for tests and operators); True if it was running."""
    part = {p.name: p for p in parts(settings)}[name]
    return part.stop()


def _kill_leftovers(part: Part) -> list[int]:
    """Kill processes still listening on the part's port whose command line names its folder."""
    killed: list[int] = []
    for pid in pids_listening(part.port):
        if owns_pid(pid, part.dir):
            stop_pid(pid, timeout=10)
            killed.append(pid)
    return killed


def _wipe(stack_dir: Path) -> None:
    if not stack_dir.is_dir():
        return
    for child in stack_dir.iterdir():
        if child.name == "logs":
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
