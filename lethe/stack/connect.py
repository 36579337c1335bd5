"""Kafka Connect (one distributed worker) and the Debezium source connector `hosting`."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.base import Part
from lethe.stack.install import Jars
from lethe.stack.kafka import java_command, render
from lethe.stack.process import http, log_tail, start_background

REQUIRED_PLUGINS = (
    "io.debezium.connector.postgresql.PostgresConnector",
    "io.debezium.connector.jdbc.JdbcSinkConnector",
)


class _ConnectRest(Part):
    """A part reached through Connect's REST API (LETHE_CONNECT_URL)."""

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.settings.connect_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.settings.connect_url).port or 8083

    @property
    def endpoint(self) -> str:
        return self.settings.connect_url


class Connect(_ConnectRest):
    """The worker. Healthy when its REST API answers and lists both Debezium plugins."""

    name = "connect"
    start_timeout = 150.0

    def __init__(self, settings: Settings, jars: Jars | None = None) -> None:
        super().__init__(settings)
        self.jars = jars
        self.config_file = self.dir / "connect-distributed.properties"
        self.log4j_file = self.dir / "log4j2.properties"

    def healthy(self) -> bool:
        status, plugins = http("GET", f"{self.settings.connect_url}/connector-plugins", timeout=3)
        if status != 200 or not isinstance(plugins, list):
            return False
        classes = {plugin.get("class") for plugin in plugins if isinstance(plugin, dict)}
        return all(required in classes for required in REQUIRED_PLUGINS)

    def start(self) -> None:
        assert self.jars is not None, "Connect.start needs the jars"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            render(
                "connect-distributed.properties",
                BOOTSTRAP=self.settings.kafka_bootstrap,
                HOST=self.host,
                PORT=self.port,
                PLUGIN_PATH=self.jars.plugin_path,
                PLUGIN_DISCOVERY="service_load",
            )
        )
        self.log4j_file.write_text(render("log4j2.properties"))
        start_background(
            java_command(
                self.jars,
                self.log4j_file,
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.config_file),
            ),
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )


SOURCE_TEMPLATE = "hosting-source.json"
SINK_TEMPLATE = "lethe-sink.json"


def connector_config(settings: Settings, template_name: str) -> tuple[str, dict[str, str]]:
    """A connector's name and config from `config/connect/<template_name>`, its `${LETHE_...}`
    placeholders filled from settings (other `${...}`, such as the sink's `${topic}`, are
    Connect's own and stay as they are)."""
    template = settings.config_dir / "connect" / template_name
    text = template.read_text()
    values = {
        "LETHE_PG_HOST": settings.pg_host,
        "LETHE_PG_PORT": str(settings.pg_port),
        "LETHE_PG_USER": settings.pg_user,
        "LETHE_PG_PASSWORD": settings.pg_password.reveal(),
        "LETHE_PG_DATABASE": settings.pg_database,
        "LETHE_CDC_TOPIC_PREFIX": settings.cdc_topic_prefix,
    }
    unknown = sorted(set(re.findall(r"\$\{(LETHE_\w+)\}", text)) - values.keys())
    if unknown:
        raise StackError(f"{template}: no setting fills {', '.join(unknown)}")
    for key, value in values.items():
        text = text.replace("${" + key + "}", json.dumps(value)[1:-1])
    document = json.loads(text)
    return str(document["name"]), {k: str(v) for k, v in document["config"].items()}


def source_config(settings: Settings) -> tuple[str, dict[str, str]]:
    """The `hosting` source connector's name and config, placeholders filled from settings."""
    return connector_config(settings, SOURCE_TEMPLATE)


def sink_config(settings: Settings) -> tuple[str, dict[str, str]]:
    """The `lethe-sink` JDBC sink connector's name and config, placeholders filled."""
    return connector_config(settings, SINK_TEMPLATE)


class RegisteredConnector(_ConnectRest):
    """A connector registered on the worker from a template in `config/connect/`.

    Healthy when it and its tasks are RUNNING. Its config, password included, goes only to
    Connect's REST API (Connect keeps it in its config topic and logs passwords hidden).
    """

    started_verb = "registered"
    unchanged_verb = "already registered"
    start_timeout = 90.0
    template: str
    """The file in `config/connect/` that holds the connector's name and config."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.connector, self.config = connector_config(settings, self.template)
        self.url = f"{settings.connect_url}/connectors/{self.connector}"
        self.log_file = settings.stack_dir / "logs" / "connect.log"

    @property
    def endpoint(self) -> str:
        return self.url

    def pid(self) -> int | None:
        return Connect(self.settings).pid()

    def state(self) -> tuple[str, list[dict[str, Any]]]:
        """Connector state and its tasks (state MISSING when not registered or no answer)."""
        status, body = http("GET", f"{self.url}/status", timeout=3)
        if status != 200 or not isinstance(body, dict):
            return "MISSING", []
        tasks = [task for task in body.get("tasks", []) if isinstance(task, dict)]
        return str(body.get("connector", {}).get("state", "UNKNOWN")), tasks

    def healthy(self) -> bool:
        state, tasks = self.state()
        return (
            state == "RUNNING" and bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)
        )

    def registered_as_configured(self) -> bool:
        """Whether Connect holds the connector with exactly the config the settings give."""
        status, current = http("GET", f"{self.url}/config", timeout=5)
        return (
            status == 200
            and isinstance(current, dict)
            and {k: v for k, v in current.items() if k != "name"} == self.config
        )

    def up(self) -> bool:
        """Register (PUT) the connector when its config differs; wait until it runs."""
        changed = not self.registered_as_configured()
        if changed:
            status, body = http("PUT", f"{self.url}/config", self.config, timeout=30)
            if status not in (200, 201):
                raise StackError(
                    f"{self.name}: Connect refused the `{self.connector}` config "
                    f"({status}: {body}); see {self.log_file}"
                )
        self.wait_running()
        return changed

    def wait_running(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        state: str = "MISSING"
        tasks: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            state, tasks = self.state()
            failed = [t for t in tasks if t.get("state") == "FAILED"]
            if state == "FAILED" or failed:
                trace = str((failed[0] if failed else {}).get("trace", "")).splitlines()[:3]
                raise StackError(
                    f"{self.name}: connector `{self.connector}` FAILED; see {self.log_file}\n  "
                    + "\n  ".join(trace)
                )
            if self.healthy():
                return
            time.sleep(0.5)
        raise StackError(
            f"{self.name}: connector `{self.connector}` not RUNNING after "
            f"{self.start_timeout:.0f}s (state {state}, tasks {[t.get('state') for t in tasks]}); "
            f"see {self.log_file}"
            f"{log_tail(self.log_file)}"
        )

    def stop(self) -> bool:
        """The connector stops with its worker; its registration stays in Kafka."""
        return False

    def wipe(self) -> None:
        pass


class SourceConnector(RegisteredConnector):
    """The Debezium PostgreSQL source `hosting`: the change topics of the demo database."""

    name = "source"
    template = SOURCE_TEMPLATE


class SinkConnector(RegisteredConnector):
    """The Debezium JDBC sink `lethe-sink`: applies the `lethe.sink.public.<table>` topics
    (anonymised columns, tombstones for deletes) to the tables of the demo database."""

    name = "sink"
    template = SINK_TEMPLATE
