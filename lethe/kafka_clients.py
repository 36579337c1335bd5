"""The connection settings of every Kafka client Lethe makes, and what a refusal means.

confluent-kafka clients (admin, `lethe clock`, the forwarder, the demo) take
`client_config(settings)`; the Faust app takes `faust_credentials(settings)`. Both come from
the LETHE_KAFKA_* settings (`lethe.settings`): PLAINTEXT, or SASL/SCRAM and TLS. A broker
that refuses the credentials or the TLS handshake is reported by `Refusals` as a StackError
that says so (the user, never the password) instead of "did not answer".
"""

from __future__ import annotations

import ssl
from typing import Any

from confluent_kafka import KafkaError

from lethe.errors import StackError
from lethe.settings import Settings

_REFUSED_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
    }
)


class Refusals:
    """The `error_cb` of a client: keeps the last authentication or TLS error it reports."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() in _REFUSED_CODES:
            self.last = error

    def error(self, settings: Settings, exc: Exception, client: Any = None) -> StackError:
        """What went wrong, as a StackError: the refusal seen, else Kafka did not answer.
        `client` (the one whose call raised `exc`) is polled first: librdkafka hands its
        errors to `error_cb` only then."""
        if client is not None and self.last is None:
            client.poll(0)
        if self.last is not None:
            return refused(settings, self.last)
        return StackError(
            f"Kafka at {settings.kafka_bootstrap} did not answer ({exc}); "
            "start the stack with `lethe stack up` or set LETHE_KAFKA_BOOTSTRAP"
        )


def refused(settings: Settings, error: KafkaError) -> StackError:
    """The StackError of a broker that refused Lethe's credentials or its TLS handshake."""
    text = error.str()
    if error.code() == KafkaError._SSL:
        return StackError(
            f"Kafka at {settings.kafka_bootstrap}: TLS handshake failed ({text}); check "
            "LETHE_KAFKA_SSL_CA_FILE (the CA that signed the broker's certificate) and that "
            "the host in LETHE_KAFKA_BOOTSTRAP is a name in that certificate"
        )
    if "mechanism" in text.lower() and "handshake" in text.lower():
        return StackError(
            f"Kafka at {settings.kafka_bootstrap} does not offer SASL mechanism "
            f"{settings.kafka_sasl_mechanism}: authentication failed ({text}); set "
            "LETHE_KAFKA_SASL_MECHANISM to one it offers"
        )
    return StackError(
        f"Kafka at {settings.kafka_bootstrap}: authentication failed for SASL user "
        f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}); check "
        "LETHE_KAFKA_SASL_USERNAME and LETHE_KAFKA_SASL_PASSWORD against the broker's users "
        f"({text})"
    )


def client_config(settings: Settings, refusals: Refusals | None = None) -> dict[str, Any]:
    """librdkafka settings of a client of LETHE_KAFKA_BOOTSTRAP: the security settings, its
    own logs off (failures raise or reach `refusals`). Holds the password: never print it."""
    config: dict[str, Any] = {**settings.kafka_client_config(), "log_level": 0}
    if refusals is not None:
        config["error_cb"] = refusals
    return config


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials` for the LETHE_KAFKA_* settings; None for PLAINTEXT.

    Faust's repr of them shows the user only."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol.endswith("SSL"):
        ca = settings.kafka_ssl_ca_file
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    credentials = faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.reveal(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )
    return credentials
