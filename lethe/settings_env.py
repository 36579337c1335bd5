"""How the LETHE_* variables become setting values (`Settings.from_env`).

Each setting's variable is in `VARIABLES`; a value is parsed by its setting's parser in
`PARSERS`, or by the type of its default (whole number, path, secret, text). A malformed
value raises a ConfigError that names the variable and says how to write it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lethe.errors import ConfigError
from policy.enforcement_clock import parse_speed
from policy.instants import Instant, parse_instant


def values_from_env(defaults: Any, env: Mapping[str, str], secret: type[Any]) -> dict[str, object]:
    """The values `env` sets, by setting name (`defaults`: the default `Settings`; a setting
    whose default is a `secret` gets its text wrapped in one)."""
    values: dict[str, object] = {}
    for field_name, variable in VARIABLES.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        current = getattr(defaults, field_name)
        if field_name in PARSERS:
            values[field_name] = _parsed(variable, raw, PARSERS[field_name])
        elif isinstance(current, int):
            try:
                values[field_name] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"{variable}={raw!r} is not a whole number; set it to one such as "
                    f"{current} (the default)"
                ) from None
        elif isinstance(current, Path):
            values[field_name] = Path(raw).expanduser()
        elif isinstance(current, secret):
            values[field_name] = secret(raw)
        else:
            values[field_name] = raw
    return values


def _parsed(variable: str, raw: str, parse: Callable[[str], object]) -> object:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{variable}={exc}") from None


def _instant_setting(raw: str) -> Instant:
    try:
        return parse_instant(raw)
    except ValueError:
        raise ValueError(
            f"{raw!r} is not an ISO-8601 instant; write it like 2026-01-01T00:00:00Z"
        ) from None


def _seconds_setting(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of seconds; write one such as 1") from None


def _seconds_or_off_setting(raw: str) -> float | None:
    if raw.strip().lower() == "off":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(
            f"{raw!r} is neither a number of seconds nor off; write one such as 10, or off"
        ) from None


def _switch_setting(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{raw!r} is neither on nor off; write on or off")


def _count_setting(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a whole number; set it to one such as 5000") from None


PARSERS: dict[str, Callable[[str], object]] = {
    "clock_start": _instant_setting,
    "clock_wall_start": _instant_setting,
    "clock_speed": parse_speed,
    "tick_interval": _seconds_setting,
    "session_timeout": _seconds_setting,
    "census_interval": _seconds_setting,
    "confirm_timeout": _seconds_setting,
    "source_heartbeat_lease": _seconds_setting,
    "connect_poll_interval": _seconds_or_off_setting,
    "enforce": _switch_setting,
    "metrics": _switch_setting,
    "faust_metrics": _switch_setting,
    "local_handoff": _switch_setting,
    "prewarm": _switch_setting,
    "max_poll_records": _count_setting,
    "kafka_ssl_ca_file": lambda raw: Path(raw).expanduser(),
    "kafka_sasl_port": _count_setting,
}
"""Settings whose text is parsed by more than a type; a ValueError's message starts with the
value and says how to write it."""


VARIABLES: dict[str, str] = {
    "kafka_bootstrap": "LETHE_KAFKA_BOOTSTRAP",
    "kafka_controller_port": "LETHE_KAFKA_CONTROLLER_PORT",
    "kafka_security_protocol": "LETHE_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "LETHE_KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "LETHE_KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "LETHE_KAFKA_SASL_PASSWORD",
    "kafka_ssl_ca_file": "LETHE_KAFKA_SSL_CA_FILE",
    "kafka_sasl_port": "LETHE_KAFKA_SASL_PORT",
    "connect_url": "LETHE_CONNECT_URL",
    "connect_poll_interval": "LETHE_CONNECT_POLL_INTERVAL",
    "connect_connectors": "LETHE_CONNECT_CONNECTORS",
    "cdc_topic_prefix": "LETHE_CDC_TOPIC_PREFIX",
    "pg_host": "LETHE_PG_HOST",
    "pg_port": "LETHE_PG_PORT",
    "pg_database": "LETHE_PG_DATABASE",
    "pg_user": "LETHE_PG_USER",
    "pg_password": "LETHE_PG_PASSWORD",
    "audit_hash_key": "LETHE_AUDIT_HASH_KEY",
    "prometheus_url": "LETHE_PROMETHEUS_URL",
    "alertmanager_url": "LETHE_ALERTMANAGER_URL",
    "alert_receiver_url": "LETHE_ALERT_RECEIVER_URL",
    "web_host": "LETHE_WEB_HOST",
    "web_port": "LETHE_WEB_PORT",
    "data_dir": "LETHE_DATA_DIR",
    "stack_dir": "LETHE_STACK_DIR",
    "cache_dir": "LETHE_CACHE_DIR",
    "config_dir": "LETHE_CONFIG_DIR",
    "policy_path": "LETHE_POLICY",
    "clock_mode": "LETHE_CLOCK",
    "clock_start": "LETHE_CLOCK_START",
    "clock_wall_start": "LETHE_CLOCK_WALL_START",
    "clock_speed": "LETHE_CLOCK_SPEED",
    "clock_topic": "LETHE_CLOCK_TOPIC",
    "internal_partitions": "LETHE_INTERNAL_PARTITIONS",
    "tick_interval": "LETHE_TICK_INTERVAL",
    "census_interval": "LETHE_CENSUS_INTERVAL",
    "confirm_timeout": "LETHE_CONFIRM_TIMEOUT",
    "session_timeout": "LETHE_SESSION_TIMEOUT",
    "enforce": "LETHE_ENFORCE",
    "metrics": "LETHE_METRICS",
    "faust_metrics": "LETHE_FAUST_METRICS",
    "local_handoff": "LETHE_LOCAL_HANDOFF",
    "source_heartbeat_topic": "LETHE_SOURCE_HEARTBEAT_TOPIC",
    "source_heartbeat_lease": "LETHE_SOURCE_HEARTBEAT_LEASE",
    "prewarm": "LETHE_PREWARM",
    "consumer_max_fetch_bytes": "LETHE_CONSUMER_MAX_FETCH_BYTES",
    "max_poll_records": "LETHE_MAX_POLL_RECORDS",
    "stream_buffer_maxsize": "LETHE_STREAM_BUFFER_MAXSIZE",
    "rocksdb_write_buffer_bytes": "LETHE_ROCKSDB_WRITE_BUFFER_BYTES",
}
