"""The checks of the settings that span several variables: Kafka's client security and the
enforcement clock. Each raises `ConfigError` naming the variables, what is wrong and how to
fix it (`Settings.__post_init__` runs them)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal, get_args

from lethe.errors import ConfigError

ClockMode = Literal["wall", "accelerated", "manual"]
CLOCK_MODES: tuple[ClockMode, ...] = get_args(ClockMode)

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KAFKA_SECURITY_PROTOCOLS: tuple[KafkaSecurityProtocol, ...] = get_args(KafkaSecurityProtocol)
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
KAFKA_SASL_MECHANISMS: tuple[KafkaSaslMechanism, ...] = get_args(KafkaSaslMechanism)


def check_kafka_security(
    protocol: str,
    sasl_mechanism: str,
    sasl_username: str | None,
    sasl_password: str,
    ssl_ca_file: Path | None,
) -> None:
    """ConfigError when the LETHE_KAFKA_* security variables do not make one client setup."""
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(
            f"LETHE_KAFKA_SECURITY_PROTOCOL={protocol!r} is not a protocol; set it to "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}"
        )
    if sasl_mechanism not in KAFKA_SASL_MECHANISMS:
        raise ConfigError(
            f"LETHE_KAFKA_SASL_MECHANISM={sasl_mechanism!r} is not a mechanism "
            f"Lethe supports; set it to {', '.join(KAFKA_SASL_MECHANISMS)}"
        )
    if protocol.startswith("SASL_"):
        for variable, value in (
            ("LETHE_KAFKA_SASL_USERNAME", sasl_username),
            ("LETHE_KAFKA_SASL_PASSWORD", sasl_password),
        ):
            if not value:
                raise ConfigError(
                    f"LETHE_KAFKA_SECURITY_PROTOCOL={protocol} needs {variable}; set it "
                    "to the SASL user's name and password the broker knows"
                )
    if ssl_ca_file is not None:
        if not protocol.endswith("SSL"):
            raise ConfigError(
                f"LETHE_KAFKA_SSL_CA_FILE is set but LETHE_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}, without TLS; set the protocol to SASL_SSL or SSL, or unset "
                "LETHE_KAFKA_SSL_CA_FILE"
            )
        if not ssl_ca_file.is_file():
            raise ConfigError(
                f"LETHE_KAFKA_SSL_CA_FILE={ssl_ca_file} is not a file; set it "
                "to the PEM file of the CA that signed the broker's certificate"
            )


def check_clock(
    mode: str,
    start: object | None,
    wall_start: object | None,
    speed: Fraction | None,
) -> None:
    """ConfigError when the clock variables do not make one clock of LETHE_CLOCK's mode."""
    if mode not in CLOCK_MODES:
        raise ConfigError(
            f"LETHE_CLOCK={mode!r} is not a clock mode; set it to wall (the default), "
            "accelerated or manual"
        )
    given = {
        "LETHE_CLOCK_START": start is not None,
        "LETHE_CLOCK_WALL_START": wall_start is not None,
        "LETHE_CLOCK_SPEED": speed is not None,
    }
    allowed = {
        "wall": set(),
        "accelerated": set(given),
        "manual": {"LETHE_CLOCK_START"},
    }[mode]
    needed = {
        "wall": {},
        "accelerated": {
            "LETHE_CLOCK_WALL_START": "the wall instant the clock starts at (e.g. "
            "LETHE_CLOCK_WALL_START=2026-11-30T09:00:00Z, the demo's start; give the worker "
            "and `lethe simulate` the same value)",
            "LETHE_CLOCK_SPEED": "enforcement seconds per wall second (e.g. "
            "LETHE_CLOCK_SPEED=86400, a day a second)",
        },
        "manual": {
            "LETHE_CLOCK_START": "the instant the clock shows until the first `lethe clock "
            "advance` (e.g. LETHE_CLOCK_START=2026-01-01T00:00:00Z)",
        },
    }[mode]
    for variable, is_set in given.items():
        if is_set and variable not in allowed:
            users = "accelerated" if variable != "LETHE_CLOCK_START" else "accelerated or manual"
            raise ConfigError(
                f"{variable} is set but LETHE_CLOCK is {mode}; it is read only by the "
                f"{users} clock: set LETHE_CLOCK to that mode, or unset {variable}"
            )
    for variable, meaning in needed.items():
        if not given[variable]:
            raise ConfigError(f"LETHE_CLOCK={mode} needs {variable}: {meaning}")
    if speed is not None and speed <= 0:
        raise ConfigError(
            f"LETHE_CLOCK_SPEED={speed} is not more than 0; set a speed factor such as 86400"
        )
