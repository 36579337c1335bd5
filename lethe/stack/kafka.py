"""Apache Kafka in KRaft mode: one combined broker + controller on 127.0.0.1.

Two client listeners: PLAINTEXT on LETHE_KAFKA_BOOTSTRAP (the stack's Connect, the demo and
most tests), and SASL_SSL on LETHE_KAFKA_SASL_PORT (default the bootstrap port + 2): SCRAM-SHA-512
over TLS, with a certificate signed by a CA of the stack's own, both made with openssl at the
first start into `<LETHE_STACK_DIR>/kafka/tls` (`ca.pem` is what LETHE_KAFKA_SSL_CA_FILE names),
and the SCRAM user `lethe` (`STACK_SCRAM_USERNAME`, `STACK_SCRAM_PASSWORD`) made once the
broker answers.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from lethe.errors import StackError
from lethe.settings import STACK_SCRAM_PASSWORD, STACK_SCRAM_USERNAME, Settings
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
CERTIFICATE_DAYS = 3650
SCRAM_ITERATIONS = 8192


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
        self.tls_dir = self.dir / "tls"
        self.ca_file = self.tls_dir / "ca.pem"

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

    def config_text(self) -> str:
        return render(
            "kafka-server.properties",
            HOST=self.host,
            PORT=self.port,
            CONTROLLER_PORT=self.settings.kafka_controller_port,
            SASL_PORT=self.settings.stack_sasl_port,
            DATA_DIR=self.data_dir,
            TLS_DIR=self.tls_dir,
        )

    def config_current(self) -> bool:
        """Whether the running broker was started with the config this code writes (a broker
        started before the SASL_SSL listener existed is not: restart it)."""
        return self.config_file.is_file() and self.config_file.read_text() == self.config_text()

    def up(self) -> bool:
        """Start the broker unless it runs (`Part.up`), then make sure of the SCRAM user."""
        started = super().up()
        if self.config_current():
            self.ensure_scram_user()
        return started

    def ensure_scram_user(self, timeout_s: float = 30.0) -> None:
        """Create or update the SCRAM-SHA-512 user `STACK_SCRAM_USERNAME` (through the plain
        listener, which needs no credentials)."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        config: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "logger": _NullLogger(),
        }
        admin = AdminClient(config)
        upsert = UserScramCredentialUpsertion(
            STACK_SCRAM_USERNAME,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            STACK_SCRAM_PASSWORD.encode(),
        )
        try:
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result(timeout=timeout_s)
        except Exception as exc:
            raise StackError(
                f"could not create the SCRAM user {STACK_SCRAM_USERNAME} ({exc}); see "
                f"{self.log_file}"
            ) from exc

    def ensure_certificates(self) -> None:
        """A CA and the broker's certificate it signs (names: the bootstrap host, 127.0.0.1,
        localhost), made with openssl unless they exist; the broker reads `broker-keystore.pem`
        (key and certificate), clients trust `ca.pem`."""
        keystore = self.tls_dir / "broker-keystore.pem"
        if keystore.is_file() and self.ca_file.is_file():
            return
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        self.tls_dir.chmod(0o700)
        ca_key, broker_key = self.tls_dir / "ca.key", self.tls_dir / "broker.key"
        csr, cert = self.tls_dir / "broker.csr", self.tls_dir / "broker.pem"
        names = {"IP:127.0.0.1", "DNS:localhost"}
        host = self.host
        names.add(f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}")
        extensions = self.tls_dir / "broker.ext"
        extensions.write_text(
            f"subjectAltName={','.join(sorted(names))}\n"
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        days = str(CERTIFICATE_DAYS)
        steps = [
            (
                "make the stack's CA",
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    days,
                    "-keyout",
                    str(ca_key),
                    "-out",
                    str(self.ca_file),
                    "-subj",
                    "/CN=Lethe local stack CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ),
            (
                "make the broker's key",
                [
                    "openssl",
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    str(broker_key),
                    "-out",
                    str(csr),
                    "-subj",
                    f"/CN={host}",
                ],
            ),
            (
                "sign the broker's certificate",
                [
                    "openssl",
                    "x509",
                    "-req",
                    "-in",
                    str(csr),
                    "-CA",
                    str(self.ca_file),
                    "-CAkey",
                    str(ca_key),
                    "-CAcreateserial",
                    "-days",
                    days,
                    "-out",
                    str(cert),
                    "-extfile",
                    str(extensions),
                ],
            ),
        ]
        for what, argv in steps:
            run(argv, what=what, log_file=self.log_file, timeout=60)
        keystore.write_text(broker_key.read_text() + cert.read_text())
        for secret in (ca_key, broker_key, keystore):
            secret.chmod(0o600)

    def start(self) -> None:
        assert self.jars is not None, "Kafka.start needs the jars"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ensure_certificates()
        self.config_file.write_text(self.config_text())
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
