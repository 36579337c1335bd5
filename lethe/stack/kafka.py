"""Apache Kafka in KRaft mode: one combined broker + controller on 127.0.0.1."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from lethe.settings import Settings
from lethe.stack.base import Part
from lethe.stack.install import Jars
from lethe.stack.process import run, start_background

JVM_HEAP = ["-Xms256m", "-Xmx768m"]
JVM_OPTS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
]
TEMPLATES = Path(__file__).resolve().parent / "templates"


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def java_command(jars: Jars, log4j_config: Path, main_class: str, *args: str) -> list[str]:
    return [
        "java",
        *JVM_HEAP,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        jars.classpath,
        main_class,
        *args,
    ]


def render(template: str, **values: object) -> str:
    text = (TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    return text


class Kafka(Part):
    """The broker. Healthy when it answers a metadata request on the bootstrap address."""

    name = "kafka"
    start_timeout = 90.0

    def __init__(self, settings: Settings, jars: Jars | None = None) -> None:
        super().__init__(settings)
        self.jars = jars
        self.data_dir = self.dir / "data"
        self.config_file = self.dir / "server.properties"
        self.log4j_file = self.dir / "log4j2.properties"

    @property
    def host(self) -> str:
        return split_host_port(self.settings.kafka_bootstrap)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.settings.kafka_bootstrap)[1]

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        config: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "logger": _NullLogger(),
        }
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def start(self) -> None:
        assert self.jars is not None, "Kafka.start needs the jars"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            render(
                "kafka-server.properties",
                HOST=self.host,
                PORT=self.port,
                CONTROLLER_PORT=self.settings.kafka_controller_port,
                DATA_DIR=self.data_dir,
            )
        )
        self.log4j_file.write_text(render("log4j2.properties"))
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            run(
                java_command(
                    self.jars,
                    self.log4j_file,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",  # one word: an id may start with "-"
                    "--config",
                    str(self.config_file),
                    "--ignore-formatted",
                ),
                what="kafka storage format",
                log_file=self.log_file,
                timeout=120,
            )
        start_background(
            java_command(self.jars, self.log4j_file, "kafka.Kafka", str(self.config_file)),
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )


class _NullLogger:
    """Keeps librdkafka's connection-refused chatter out of `lethe stack` output."""

    def log(self, *_args: object) -> None:
        pass
