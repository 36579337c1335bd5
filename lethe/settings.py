"""Lethe's settings: the one place that reads the environment.

Every setting has a default that matches the local stack (`lethe stack up`),
so nothing needs to be set for the demo. Override with the LETHE_* variables
listed on `Settings`; a malformed value stops start-up with a ConfigError
that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lethe.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

APP_ID = "lethe"
"""The worker's default Faust app id: its Kafka consumer group and the prefix of its topics."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed, frozen configuration; build it with `Settings.from_env()`."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """LETHE_KAFKA_BOOTSTRAP: host:port of the Kafka broker."""
    kafka_controller_port: int = 9093
    """LETHE_KAFKA_CONTROLLER_PORT: KRaft controller port of the local stack's broker."""
    connect_url: str = "http://127.0.0.1:8083"
    """LETHE_CONNECT_URL: Kafka Connect REST endpoint."""
    cdc_topic_prefix: str = "hosting"
    """LETHE_CDC_TOPIC_PREFIX: Debezium's `topic.prefix`; the worker reads `<prefix>.public.*`."""
    pg_host: str = "127.0.0.1"
    """LETHE_PG_HOST: PostgreSQL host of the demo database."""
    pg_port: int = 5432
    """LETHE_PG_PORT: PostgreSQL port of the demo database."""
    pg_database: str = "hosting"
    """LETHE_PG_DATABASE: name of the demo business database."""
    pg_user: str = "lethe"
    """LETHE_PG_USER: database user (also used by Debezium)."""
    pg_password: str = "lethe"
    """LETHE_PG_PASSWORD: its password (local stack only; set a real one elsewhere)."""
    prometheus_url: str = "http://127.0.0.1:9090"
    """LETHE_PROMETHEUS_URL: Prometheus HTTP endpoint."""
    web_host: str = "127.0.0.1"
    """LETHE_WEB_HOST: address the worker's web server (metrics) binds to."""
    web_port: int = 6066
    """LETHE_WEB_PORT: port of the worker's web server; metrics at /metrics."""
    data_dir: Path = REPO_ROOT / ".stack" / "worker"
    """LETHE_DATA_DIR: where the worker keeps its RocksDB tables."""
    stack_dir: Path = REPO_ROOT / ".stack"
    """LETHE_STACK_DIR: data, logs and pid files of the local stack."""
    cache_dir: Path = REPO_ROOT / ".cache"
    """LETHE_CACHE_DIR: downloads (Maven jars) kept between runs."""
    policy_path: Path = REPO_ROOT / "config" / "policy.yaml"
    """LETHE_POLICY: the policy file the worker enforces."""

    @property
    def pg_dsn(self) -> str:
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read LETHE_* variables; raise ConfigError naming a malformed one."""
        env = os.environ if env is None else env
        defaults = cls()
        values: dict[str, object] = {}
        for field_name, variable in _VARIABLES.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            current = getattr(defaults, field_name)
            if isinstance(current, bool):
                raise AssertionError("no boolean settings yet")
            if isinstance(current, int):
                try:
                    values[field_name] = int(raw)
                except ValueError:
                    raise ConfigError(
                        f"{variable}={raw!r} is not a whole number; set it to a port such as 6066"
                    ) from None
            elif isinstance(current, Path):
                values[field_name] = Path(raw).expanduser()
            else:
                values[field_name] = raw
        return cls(**values)  # type: ignore[arg-type]


_VARIABLES: dict[str, str] = {
    "kafka_bootstrap": "LETHE_KAFKA_BOOTSTRAP",
    "kafka_controller_port": "LETHE_KAFKA_CONTROLLER_PORT",
    "connect_url": "LETHE_CONNECT_URL",
    "cdc_topic_prefix": "LETHE_CDC_TOPIC_PREFIX",
    "pg_host": "LETHE_PG_HOST",
    "pg_port": "LETHE_PG_PORT",
    "pg_database": "LETHE_PG_DATABASE",
    "pg_user": "LETHE_PG_USER",
    "pg_password": "LETHE_PG_PASSWORD",
    "prometheus_url": "LETHE_PROMETHEUS_URL",
    "web_host": "LETHE_WEB_HOST",
    "web_port": "LETHE_WEB_PORT",
    "data_dir": "LETHE_DATA_DIR",
    "stack_dir": "LETHE_STACK_DIR",
    "cache_dir": "LETHE_CACHE_DIR",
    "policy_path": "LETHE_POLICY",
}
