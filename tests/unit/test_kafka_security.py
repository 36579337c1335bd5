"""Kafka over SASL/SCRAM and TLS: the LETHE_KAFKA_* settings reach every client, and a setup
that cannot connect, or that shows a password, is refused before anything starts."""

from __future__ import annotations

import io
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from lethe.app import create_app
from lethe.errors import ConfigError
from lethe.kafka_clients import Refusals, client_config, faust_credentials
from lethe.redaction import redact_secrets
from lethe.settings import Settings
from lethe.stack.kafka import Kafka

PASSWORD = "kafka-pass-5ecr3t-qu1nce"
HASH_KEY = "audit-key-5ecr3t-0123456789abcdefghij"
PG_PASSWORD = "pg-pass-5ecr3t-marmalade"


def sasl_env(ca: Path, **extra: str) -> dict[str, str]:
    return {
        "LETHE_KAFKA_BOOTSTRAP": "kafka.example.net:9094",
        "LETHE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LETHE_KAFKA_SASL_USERNAME": "lethe-worker",
        "LETHE_KAFKA_SASL_PASSWORD": PASSWORD,
        "LETHE_KAFKA_SSL_CA_FILE": str(ca),
        **extra,
    }


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not read by these tests\n")
    return path


def test_plaintext_unless_set_the_local_stacks_listener() -> None:
    assert Settings().kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092"}
    assert Settings().stack_sasl_port == 9094
    assert Settings(kafka_bootstrap="127.0.0.1:41092").stack_sasl_port == 41094


def test_sasl_ssl_settings_reach_the_librdkafka_clients(ca: Path) -> None:
    settings = Settings.from_env(sasl_env(ca))
    assert client_config(settings) == {
        "bootstrap.servers": "kafka.example.net:9094",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "lethe-worker",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
        "log_level": 0,
    }


def test_sasl_ssl_settings_reach_faust_and_its_repr_shows_the_user_only(tmp_path: Path) -> None:
    kafka = Kafka(Settings(stack_dir=tmp_path))
    kafka.ensure_certificates()
    env = sasl_env(kafka.ca_file, LETHE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256")
    settings = Settings.from_env(env)
    credentials = faust_credentials(settings)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert (credentials.username, credentials.password) == ("lethe-worker", PASSWORD)
    assert credentials.ssl_context is not None
    assert PASSWORD not in repr(credentials)
    app = create_app(settings, app_id="unit-sasl", store="memory://", web_enabled=False)
    assert app.conf.broker_credentials.username == "lethe-worker"
    assert PASSWORD not in repr(app.conf.broker_credentials)


def test_the_stacks_certificates_make_a_tls_handshake_with_127_0_0_1(tmp_path: Path) -> None:
    """What a client with LETHE_KAFKA_SSL_CA_FILE=<stack>/kafka/tls/ca.pem does on connecting."""
    kafka = Kafka(Settings(stack_dir=tmp_path))
    kafka.ensure_certificates()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(kafka.tls_dir / "broker-keystore.pem")
    client_context = ssl.create_default_context(cafile=str(kafka.ca_file))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
        server.join(timeout=10)
    keys = [kafka.tls_dir / "ca.key", kafka.tls_dir / "broker-keystore.pem"]
    assert all(key.stat().st_mode & 0o077 == 0 for key in keys), "private keys: owner only"


def test_no_credentials_for_plaintext() -> None:
    assert faust_credentials(Settings()) is None


@pytest.mark.parametrize("missing", ["LETHE_KAFKA_SASL_USERNAME", "LETHE_KAFKA_SASL_PASSWORD"])
def test_sasl_without_user_or_password_names_the_variable(ca: Path, missing: str) -> None:
    env = sasl_env(ca)
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_an_unknown_protocol_or_mechanism_lists_the_known_ones(ca: Path) -> None:
    with pytest.raises(ConfigError, match="SASL_SSL"):
        Settings.from_env({"LETHE_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ConfigError, match="SCRAM-SHA-512"):
        Settings.from_env(sasl_env(ca, LETHE_KAFKA_SASL_MECHANISM="GSSAPI"))


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.pem"):
        Settings.from_env(sasl_env(tmp_path / "nowhere.pem"))


def test_a_ca_file_without_tls_is_refused(ca: Path) -> None:
    env = sasl_env(ca, LETHE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    with pytest.raises(ConfigError, match="without TLS"):
        Settings.from_env(env)


def test_no_repr_of_the_settings_shows_a_secret(ca: Path) -> None:
    settings = Settings.from_env(
        sasl_env(ca, LETHE_AUDIT_HASH_KEY=HASH_KEY, LETHE_PG_PASSWORD=PG_PASSWORD)
    )
    for text in (repr(settings), str(settings), f"{settings!r:}"):
        for secret in (PASSWORD, HASH_KEY, PG_PASSWORD):
            assert secret not in text
    assert "lethe-worker" in repr(settings), "the user is no secret: it helps find a mistake"


def test_a_refused_login_says_authentication_failed_with_the_user_not_the_password(
    ca: Path,
) -> None:
    settings = Settings.from_env(sasl_env(ca))
    refusals = Refusals()
    refusals(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "SASL authentication error: Authentication failed during authentication due to "
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
        )
    )
    text = str(refusals.error(settings, Exception("Broker transport failure")))
    assert "authentication failed for SASL user 'lethe-worker'" in text
    assert "LETHE_KAFKA_SASL_PASSWORD" in text
    assert PASSWORD not in text


def test_a_mechanism_the_broker_does_not_offer_is_named(ca: Path) -> None:
    settings = Settings.from_env(sasl_env(ca, LETHE_KAFKA_SASL_MECHANISM="PLAIN"))
    refusals = Refusals()
    refusals(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "SASL PLAIN mechanism handshake failed: Broker: Unsupported SASL mechanism: "
            "broker's supported mechanisms: SCRAM-SHA-512",
        )
    )
    text = str(refusals.error(settings, Exception("Broker transport failure")))
    assert "does not offer SASL mechanism PLAIN" in text
    assert "LETHE_KAFKA_SASL_MECHANISM" in text


def test_a_refused_tls_handshake_points_at_the_ca_file(ca: Path) -> None:
    settings = Settings.from_env(sasl_env(ca))
    refusals = Refusals()
    refusals(KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed"))
    text = str(refusals.error(settings, Exception("Broker transport failure")))
    assert "TLS handshake failed" in text
    assert "LETHE_KAFKA_SSL_CA_FILE" in text


def test_a_broker_that_does_not_answer_is_not_called_a_refusal() -> None:
    text = str(Refusals().error(Settings(), Exception("Broker transport failure")))
    assert "did not answer" in text
    assert "authentication" not in text


def test_the_worker_log_writes_stars_for_a_secret_a_library_logs(ca: Path) -> None:
    """aiokafka at debug level logs each request it sends; with SASL PLAIN one holds the
    password (as a bytes repr)."""
    settings = Settings.from_env(
        sasl_env(ca, LETHE_KAFKA_SASL_MECHANISM="PLAIN", LETHE_AUDIT_HASH_KEY=HASH_KEY)
    )
    stream = io.StringIO()
    logger = logging.getLogger(f"unit-redaction-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logging.StreamHandler(stream))
    redact_secrets(settings, logger)

    auth_bytes = b"\x00lethe-worker\x00" + PASSWORD.encode()
    request = f"SaslAuthenticateRequest_v1(sasl_auth_bytes={auth_bytes!r})"
    logger.debug("Request to %s:%d %d: %s", "kafka.example.net", 9094, 7, request)
    logger.info("key %s", HASH_KEY)
    try:
        raise ValueError(f"refused {PASSWORD}")
    except ValueError:
        logger.exception("failed")

    written = stream.getvalue()
    assert PASSWORD not in written and HASH_KEY not in written
    assert "sasl_auth_bytes=b'\\x00lethe-worker\\x00********'" in written
    assert "key ********" in written
    assert "ValueError: refused ********" in written


def test_public_defaults_are_not_redacted() -> None:
    """The local stack's password is `lethe`: starring it would star every `lethe` logged."""
    assert Settings().secret_values() == []
    assert Settings.from_env({"LETHE_PG_PASSWORD": PG_PASSWORD}).secret_values() == [PG_PASSWORD]
