"""Lethe's settings: the one place that reads the environment.

Every setting has a default that matches the local stack (`lethe stack up`) run from
a checkout, so nothing needs to be set for the demo. Override with the LETHE_*
variables listed on `Settings`; a malformed value stops start-up with a ConfigError
that names the variable. Paths default to folders of the working directory (`.stack`,
`.cache`, `config`), never to where the code is installed, and are made absolute when
the settings are built. Secrets are `Secret`s: repr, str and formatting print stars.
How a variable's text becomes a value is `lethe.settings_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path

from lethe.errors import ConfigError
from lethe.settings_checks import (
    ClockMode,
    KafkaSaslMechanism,
    KafkaSecurityProtocol,
    check_clock,
    check_kafka_security,
)
from policy.enforcement_clock import (
    WALL_CLOCK,
    AcceleratedClock,
    EnforcementClock,
    ManualClock,
)
from policy.instants import Instant

APP_ID = "lethe"
"""The worker's default Faust app id: its Kafka consumer group and the prefix of its topics."""

STACK_SCRAM_USERNAME = "lethe"
STACK_SCRAM_PASSWORD = "lethe-local-stack-scram"
"""The SCRAM-SHA-512 user the local stack's SASL_SSL listener knows (`lethe stack up` makes
it). Public, like LETHE_PG_PASSWORD's default: for the local stack only."""

DEMO_AUDIT_HASH_KEY = "lethe-demo-audit-hash-key: public, for the local stack only"
"""LETHE_AUDIT_HASH_KEY's default. IT IS NOT SECRET: it is in this source file, so anyone can
hash a list of addresses with it and find their audit records. Set a key of your own (at
least 32 characters, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)
anywhere but the local demo, and keep it: records hashed under another key are found only
with that key."""
AUDIT_HASH_KEY_MIN_LENGTH = 32
SESSION_TIMEOUT_MIN_S = 6.0
SESSION_TIMEOUT_MAX_S = 1800.0
"""The session timeouts a Kafka broker accepts by default (group.min/max.session.timeout.ms)."""
HEARTBEAT_TABLE = "lethe_heartbeat.source_heartbeat"
"""Lethe's source heartbeat table (config/demo/source-heartbeat.sql): no personal data, in no
policy, never reported as unclassified."""
HEARTBEAT_MAX_S = 3.0
"""How often at most the worker sends a heartbeat (Faust's default interval)."""
ROCKSDB_WRITE_BUFFER_MIN_BYTES = 64 * 1024
"""The smallest memtable RocksDB takes (it raises a smaller write_buffer_size to this)."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A password or key: printed as stars; `reveal()` hands it to the one call that needs it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed, frozen configuration; build it with `Settings.from_env()`."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """LETHE_KAFKA_BOOTSTRAP: host:port of the Kafka broker."""
    kafka_controller_port: int = 9093
    """LETHE_KAFKA_CONTROLLER_PORT: KRaft controller port of the local stack's broker."""
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    """LETHE_KAFKA_SECURITY_PROTOCOL: how Lethe's Kafka clients (the worker, its forwarder,
    `lethe clock`, `lethe demo`) talk to LETHE_KAFKA_BOOTSTRAP: `PLAINTEXT` (default, the
    local stack's 127.0.0.1 listener), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (SASL over TLS:
    use it for any broker beyond this machine)."""
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    """LETHE_KAFKA_SASL_MECHANISM: with a SASL_* protocol: `SCRAM-SHA-512` (default),
    `SCRAM-SHA-256` or `PLAIN` (PLAIN sends the password itself: only over SASL_SSL)."""
    kafka_sasl_username: str = ""
    """LETHE_KAFKA_SASL_USERNAME: the SASL user (required with a SASL_* protocol)."""
    kafka_sasl_password: Secret = Secret("")
    """LETHE_KAFKA_SASL_PASSWORD: that user's password (required with a SASL_* protocol);
    never logged nor shown."""
    kafka_ssl_ca_file: Path | None = None
    """LETHE_KAFKA_SSL_CA_FILE: PEM file of the certificate authorities that signed the
    broker's certificate, with SSL or SASL_SSL (default: the system's). The broker's name
    in LETHE_KAFKA_BOOTSTRAP must be in its certificate. The local stack's is
    `<LETHE_STACK_DIR>/kafka/tls/ca.pem`."""
    kafka_sasl_port: int | None = None
    """LETHE_KAFKA_SASL_PORT: the local stack's SASL_SSL listener (SCRAM-SHA-512, user
    `lethe`, see `STACK_SCRAM_USERNAME`) on the bootstrap host (default: the bootstrap port
    + 2, 9094); the plain listener stays on LETHE_KAFKA_BOOTSTRAP."""
    connect_url: str = "http://127.0.0.1:8083"
    """LETHE_CONNECT_URL: Kafka Connect REST endpoint: where `lethe stack up` registers the
    connectors, and where the worker polls their states (LETHE_CONNECT_POLL_INTERVAL)."""
    connect_poll_interval: float | None = 10.0
    """LETHE_CONNECT_POLL_INTERVAL: seconds between two polls of Kafka Connect's connector
    states (`GET <LETHE_CONNECT_URL>/connectors?expand=status`, `lethe.connect_watch`) by the
    worker, in the background (default 10). A FAILED task (a sink applying no delete, a source
    publishing no change) then shows on `lethe_connector_tasks` and fires
    `LetheConnectorTaskFailed`; a Connect that does not answer fires `LetheConnectUnreachable`.
    On by default, as the URL defaults to the local stack's: set LETHE_CONNECT_URL to your
    Connect cluster's, or `off` when the worker cannot reach it (nothing then watches the
    connectors' tasks)."""
    connect_connectors: str = ""
    """LETHE_CONNECT_CONNECTORS: the connectors the worker watches, names separated by commas
    (default: every connector of the Connect cluster). Set it to Lethe's (the local stack's:
    `hosting,lethe-sink`) on a cluster shared with other connectors; a named connector Connect
    does not have shows as MISSING and alerts like a failed one."""
    cdc_topic_prefix: str = "hosting"
    """LETHE_CDC_TOPIC_PREFIX: Debezium's `topic.prefix`; the policy's `topic_prefix` must be the
    same. The worker reports the `<prefix>.<schema>.<table>` topics the policy does not name."""
    pg_host: str = "127.0.0.1"
    """LETHE_PG_HOST: PostgreSQL host of the demo database."""
    pg_port: int = 5432
    """LETHE_PG_PORT: PostgreSQL port of the demo database."""
    pg_database: str = "hosting"
    """LETHE_PG_DATABASE: name of the demo business database."""
    pg_user: str = "lethe"
    """LETHE_PG_USER: database user (also used by Debezium)."""
    pg_password: Secret = Secret("lethe")
    """LETHE_PG_PASSWORD: its password (local stack only; set a real one elsewhere)."""
    audit_hash_key: Secret = Secret(DEMO_AUDIT_HASH_KEY)
    """LETHE_AUDIT_HASH_KEY: the secret key under which the audit (`lethe.audit`) keeps an
    `email:` subject, as an HMAC-SHA256 (`policy.audit`), at least 32 characters. The default
    is a public demo key (`DEMO_AUDIT_HASH_KEY`, see `audit_hash_key_is_demo`): set your own
    for any real data, and never change it while its records are kept."""
    prometheus_url: str = "http://127.0.0.1:9090"
    """LETHE_PROMETHEUS_URL: Prometheus HTTP endpoint."""
    alertmanager_url: str = "http://127.0.0.1:9095"
    """LETHE_ALERTMANAGER_URL: the local stack's Alertmanager (default port 9095: Kafka's
    controller takes Alertmanager's usual 9093)."""
    alert_receiver_url: str = "http://127.0.0.1:9096"
    """LETHE_ALERT_RECEIVER_URL: the local stack's webhook receiver, where its Alertmanager
    sends every notification (`lethe.stack.alertmanager`; GET /alerts lists them)."""
    web_host: str = "127.0.0.1"
    """LETHE_WEB_HOST: address the worker's web server (metrics) binds to."""
    web_port: int = 6066
    """LETHE_WEB_PORT: port of the worker's web server; metrics at /metrics."""
    data_dir: Path = Path(".stack/worker")
    """LETHE_DATA_DIR: where the worker keeps its RocksDB tables (default `.stack/worker`)."""
    stack_dir: Path = Path(".stack")
    """LETHE_STACK_DIR: data, logs and pid files of the local stack (default `.stack`)."""
    cache_dir: Path = Path(".cache")
    """LETHE_CACHE_DIR: downloads (Maven jars) kept between runs (default `.cache`)."""
    config_dir: Path = Path("config")
    """LETHE_CONFIG_DIR: the demo database's SQL and the Connect and Prometheus configuration
    the local stack is set up with (default `config`)."""
    policy_path: Path = Path("config/policy.yaml")
    """LETHE_POLICY: the policy file the worker enforces (default `config/policy.yaml`; the
    Docker image sets it)."""
    clock_mode: ClockMode = "wall"
    """LETHE_CLOCK: the enforcement clock, `wall` (default, production), `accelerated` or
    `manual` (demos and tests); see `clock` and the README's "Clock modes"."""
    clock_start: Instant | None = None
    """LETHE_CLOCK_START: accelerated: the enforcement instant at LETHE_CLOCK_WALL_START
    (default: that same instant); manual (required): the instant before the first advance."""
    clock_wall_start: Instant | None = None
    """LETHE_CLOCK_WALL_START: accelerated (required): the wall instant the clock starts at,
    e.g. the demo's start; give the worker and `lethe simulate` the same value."""
    clock_speed: Fraction | None = None
    """LETHE_CLOCK_SPEED: accelerated (required): enforcement seconds per wall second, more
    than 0 (86400: a day a second; 0.5 and 1/60 work too)."""
    clock_topic: str | None = None
    """LETHE_CLOCK_TOPIC: manual: the compacted topic `lethe clock advance` writes to
    (default `lethe.clock`, see `lethe.topics`)."""
    internal_partitions: int = 8
    """LETHE_INTERNAL_PARTITIONS: partition count of the worker's own topics between its stages
    (`<app id>-subject-events`), set when the worker first creates them (default 8). The
    worker refuses to start when an existing one has another count."""
    confirm_timeout: float = 300.0
    """LETHE_CONFIRM_TIMEOUT: seconds of wall time an anonymise or delete command may wait for
    the change stream to show it applied (the row's delete, its anonymised values) before the
    enforcer sends it again with the same `command_id` (default 300); then after 2x, 4x, 8x and
    16x that. See `confirm_after` for what it is on the enforcement clock."""
    session_timeout: float = 45.0
    """LETHE_SESSION_TIMEOUT: seconds the broker waits for a worker's heartbeat before it gives
    the worker's partitions to the other workers of the app id (default 45, the Kafka clients'
    own since Kafka 3.0; Faust's is 60, which made a worker killed and restarted on its data
    directory issue its first command after 63 s, 45 s with 45: docs/benchmarks.md (e); the broker
    allows 6 to 1800 by default). A worker that dies without leaving (SIGKILL, a lost machine)
    stops the commands of its partitions that long: the takeover time of docs/reliability.md is
    this plus about 6 s. Heartbeats go from the consumer's own thread every third of it (at most
    every 3 s), so a busy event loop does not miss them; lower it to take over sooner."""
    tick_interval: float = 1.0
    """LETHE_TICK_INTERVAL: seconds between two sweeps of the enforcer (default 1): how late
    after its due instant a stage is issued at most, besides the worker's lag."""
    census_interval: float = 30.0
    """LETHE_CENSUS_INTERVAL: wall seconds between the starts of two censuses of a partition's
    state (default 30): a scan of its rows, for the gauges of rows tracked, backlog, forecast,
    unconfirmed commands and legal holds (docs/metrics.md), taken in slices of 5% of the tick
    interval at the partition's ticks (`lethe.agents.census_slices`). Each costs about 10 µs
    per row (bench/census_bench.py): raise it for partitions of more than about 100,000
    rows, whose censuses take a large share of a core."""
    enforce: bool = True
    """LETHE_ENFORCE: `on` (default) issues the retention commands (`lethe.commands`, and the
    sink topics the database is changed from); `off` runs the worker without its enforcing
    stage: changes are assigned to subjects, nothing is issued and no row is changed (tests
    of the first stage, or a look at a new policy's inputs before it acts)."""
    metrics: bool = True
    """LETHE_METRICS: `on` (default) serves every metric of docs/metrics.md; `off` leaves out
    Faust's Prometheus sensor (its per-record counters), the census, the consumer lag and the
    enforcer's per-record bookkeeping for it, keeping Lethe's own counters and histograms at
    /metrics: for measuring what the metrics cost (bench/ingest_bench.py, docs/benchmarks.md)."""
    local_handoff: bool = True
    """LETHE_LOCAL_HANDOFF: `on` (default) lets a worker that holds every partition (one
    worker) hand each change from its assign stage to its enforce stage in process, instead
    of through `<app id>-subject-events` (`lethe.agents.handoff`; about a tenth of the CPU per
    change, docs/benchmarks.md (a)); `off` always goes through the topic. Ticks, and every
    worker of a group of several, go through the topic either way."""
    faust_metrics: bool = False
    """LETHE_FAUST_METRICS: `on` adds Faust's own Prometheus sensor (the `lethe_faust_`
    metrics: per-record counters of every stream, send and table operation); `off` (default)
    leaves it out. Measured, it costs about 15% of the first stage's CPU per event, and the
    dashboard and alerts do not read it (docs/benchmarks.md)."""
    source_heartbeat_topic: str = ""
    """LETHE_SOURCE_HEARTBEAT_TOPIC: the change topic of the source connector's heartbeat
    table (default `<LETHE_CDC_TOPIC_PREFIX>.lethe_heartbeat.source_heartbeat`; the connector
    upserts its row on every heartbeat with `heartbeat.action.query`, README). A change topic
    read to its end counts as processed only up to the commit time of the newest heartbeat
    change: while the connector is stopped or behind on the database's log, a change it has not
    published (a legal hold) cannot be seen, so no stage falls due past it. Without heartbeats
    on that topic nothing of a quiet table is issued. Debezium's own heartbeat topic
    (`__debezium-heartbeat.<prefix>`) is still understood, by send time, which misses a
    connector alive but behind (not safe). `off` drops the check: a stopped connector then goes
    unnoticed (not safe)."""
    source_heartbeat_lease: float = 0.0
    """LETHE_SOURCE_HEARTBEAT_LEASE: seconds past the newest heartbeat for which the source is
    still taken as having published everything (default 0). Up to one heartbeat interval
    removes the wait the heartbeat adds to every stage, for a window of that length in which a
    connector that has just died goes unnoticed."""
    prewarm: bool = True
    """LETHE_PREWARM: `on` (default) fills the worker's RocksDB tables from their changelogs
    before Faust starts, with a fast reader (`lethe.prewarm`): a worker whose data directory
    is lost or behind starts in tens of seconds instead of many minutes (docs/benchmarks.md
    (e)), and Faust's own recovery reads only what was written after. `off` leaves it all to
    Faust. Give each worker a data directory (LETHE_DATA_DIR) of its own either way."""
    consumer_max_fetch_bytes: int = 4 * 1024 * 1024
    """LETHE_CONSUMER_MAX_FETCH_BYTES: the most bytes the worker fetches per partition in one
    request (default 4 MiB; Faust's is 1 MiB). Must hold the largest record. Larger fetches
    read a busy partition faster (bench/ingest_bench.py: 8 MiB) for more memory per partition."""
    max_poll_records: int | None = None
    """LETHE_MAX_POLL_RECORDS: the most records one poll hands to the streams (default: no
    limit, Faust's default). bench/ingest_bench.py runs the worker with 5000."""
    stream_buffer_maxsize: int = 4096
    """LETHE_STREAM_BUFFER_MAXSIZE: records each agent's stream may hold read but unprocessed
    before the consumer pauses (default 4096, Faust's). bench/ingest_bench.py runs the worker
    with 32768; memory grows with it times the record size."""
    rocksdb_write_buffer_bytes: int = 256 * 1024
    """LETHE_ROCKSDB_WRITE_BUFFER_BYTES: the size of one memtable (RocksDB's write_buffer_size)
    of each table partition's RocksDB (default 262144, 256 KiB; at least 65536). Each keeps
    up to two (`lethe.app.ROCKSDB_OPTIONS`), filled by the table's writes and flushed to disk
    when full, so the worker's memtables take up to 2 x this x its table partitions (3 x
    LETHE_INTERNAL_PARTITIONS, plus 2 per change-topic partition it reads): 13 MiB for the
    26 of 8 internal partitions and one change-topic partition. Larger buffers flush less
    often (a few % less CPU per event, more for large partitions) for that much more memory
    once filled, which at a steady load takes hours: RSS climbs for hours (8 MiB: toward 416
    MiB for those 26; docs/benchmarks.md (f))."""

    def __post_init__(self) -> None:
        for setting in fields(self):
            value = getattr(self, setting.name)
            if isinstance(value, Path) and not value.is_absolute():
                object.__setattr__(self, setting.name, value.absolute())
        check_clock(self.clock_mode, self.clock_start, self.clock_wall_start, self.clock_speed)
        check_kafka_security(
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            self.kafka_sasl_password.reveal(),
            self.kafka_ssl_ca_file,
        )
        if len(self.audit_hash_key.reveal()) < AUDIT_HASH_KEY_MIN_LENGTH:
            raise ConfigError(
                f"LETHE_AUDIT_HASH_KEY has {len(self.audit_hash_key.reveal())} characters, "
                f"fewer than {AUDIT_HASH_KEY_MIN_LENGTH}; set a longer random key, e.g. the "
                "output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        if self.internal_partitions < 1:
            raise ConfigError(
                f"LETHE_INTERNAL_PARTITIONS={self.internal_partitions} is less than 1; set a "
                "partition count such as 8 (the default)"
            )
        if not self.confirm_timeout > 0:
            raise ConfigError(
                f"LETHE_CONFIRM_TIMEOUT={self.confirm_timeout} is not more than 0; set a number "
                "of seconds such as 300 (the default)"
            )
        if not self.source_heartbeat_lease >= 0:
            raise ConfigError(
                f"LETHE_SOURCE_HEARTBEAT_LEASE={self.source_heartbeat_lease} is less than 0; set "
                "a number of seconds such as 0 (the default)"
            )
        if not self.census_interval > 0:
            raise ConfigError(
                f"LETHE_CENSUS_INTERVAL={self.census_interval} is not more than 0; set a number "
                "of seconds such as 30 (the default)"
            )
        if not SESSION_TIMEOUT_MIN_S <= self.session_timeout <= SESSION_TIMEOUT_MAX_S:
            raise ConfigError(
                f"LETHE_SESSION_TIMEOUT={self.session_timeout} is outside what the broker allows "
                f"by default ({SESSION_TIMEOUT_MIN_S:.0f} to {SESSION_TIMEOUT_MAX_S:.0f} s, its "
                "group.min/max.session.timeout.ms); set a number of seconds such as 60 (the "
                "default)"
            )
        if self.connect_poll_interval is not None and not self.connect_poll_interval > 0:
            raise ConfigError(
                f"LETHE_CONNECT_POLL_INTERVAL={self.connect_poll_interval} is not more than 0; "
                "set a number of seconds such as 10 (the default), or off"
            )
        if not self.tick_interval > 0:
            raise ConfigError(
                f"LETHE_TICK_INTERVAL={self.tick_interval} is not more than 0; set a number of "
                "seconds such as 1 (the default)"
            )
        if self.rocksdb_write_buffer_bytes < ROCKSDB_WRITE_BUFFER_MIN_BYTES:
            raise ConfigError(
                f"LETHE_ROCKSDB_WRITE_BUFFER_BYTES={self.rocksdb_write_buffer_bytes} is less "
                f"than RocksDB's smallest memtable ({ROCKSDB_WRITE_BUFFER_MIN_BYTES} bytes); set "
                "a number of bytes such as 262144 (the default)"
            )
        for variable, value, example in (
            ("LETHE_CONSUMER_MAX_FETCH_BYTES", self.consumer_max_fetch_bytes, "4194304"),
            ("LETHE_MAX_POLL_RECORDS", self.max_poll_records, "5000"),
            ("LETHE_STREAM_BUFFER_MAXSIZE", self.stream_buffer_maxsize, "4096"),
        ):
            if value is not None and value < 1:
                raise ConfigError(
                    f"{variable}={value} is less than 1; set a count such as {example}"
                )

    @property
    def clock(self) -> EnforcementClock:
        """The enforcement clock's mapping from wall instants (a manual clock without the
        operator's advances: `lethe.clock` follows them)."""
        if self.clock_mode == "accelerated":
            assert self.clock_wall_start is not None and self.clock_speed is not None
            start = self.clock_wall_start if self.clock_start is None else self.clock_start
            return AcceleratedClock(start, self.clock_wall_start, self.clock_speed)
        if self.clock_mode == "manual":
            assert self.clock_start is not None
            return ManualClock(self.clock_start)
        return WALL_CLOCK

    @property
    def confirm_after(self) -> int:
        """LETHE_CONFIRM_TIMEOUT on the enforcement clock, in µs: the same duration under the
        wall clock; times LETHE_CLOCK_SPEED under the accelerated clock (the sink takes as long
        in wall time, which is that much longer in enforcement time); the same duration of
        enforcement time under the manual clock, so a command is re-issued only once the
        operator has advanced the clock that far past its send."""
        seconds = Fraction(self.confirm_timeout)
        if self.clock_mode == "accelerated" and self.clock_speed is not None:
            seconds *= self.clock_speed
        return max(1, round(seconds * 1_000_000))

    @property
    def heartbeat_topic(self) -> str | None:
        """The source connector's heartbeat topic the worker watches; None when
        LETHE_SOURCE_HEARTBEAT_TOPIC is `off`."""
        name = self.source_heartbeat_topic.strip()
        if name.lower() == "off":
            return None
        return name or self.heartbeat_table_topic

    @property
    def heartbeat_table_topic(self) -> str:
        """The change topic of Lethe's heartbeat table:
        `<prefix>.lethe_heartbeat.source_heartbeat`."""
        return f"{self.cdc_topic_prefix}.{HEARTBEAT_TABLE}"

    @property
    def watched_connectors(self) -> frozenset[str] | None:
        """The connectors LETHE_CONNECT_CONNECTORS names; None (every one) when unset."""
        names = frozenset(name.strip() for name in self.connect_connectors.split(","))
        return (names - {""}) or None

    @property
    def audit_hash_key_is_demo(self) -> bool:
        """Whether LETHE_AUDIT_HASH_KEY is unset (the public demo key): a worker on real data
        must refuse or warn loudly, as anyone could then test addresses against the audit."""
        return self.audit_hash_key.reveal() == DEMO_AUDIT_HASH_KEY

    @property
    def audit_hash_key_bytes(self) -> bytes:
        """The audit hash key as the `policy.audit` builders take it (UTF-8); never print it."""
        return self.audit_hash_key.reveal().encode()

    def secret_values(self) -> list[str]:
        """The value of every secret setting that is set to other than its public default
        (the local stack's `lethe`, the demo audit key), for `lethe.redaction` to keep out of
        the logs."""
        defaults = Settings.__dataclass_fields__
        return [
            value.reveal()
            for setting in fields(self)
            if isinstance(value := getattr(self, setting.name), Secret)
            and value.reveal()
            and value != defaults[setting.name].default
        ]

    @property
    def stack_sasl_port(self) -> int:
        """The local stack's SASL_SSL listener port (LETHE_KAFKA_SASL_PORT, or bootstrap + 2)."""
        if self.kafka_sasl_port is not None:
            return self.kafka_sasl_port
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2]) + 2

    def kafka_client_config(self) -> dict[str, str]:
        """The confluent-kafka (librdkafka) settings of every Kafka client Lethe makes:
        `bootstrap.servers` and the LETHE_KAFKA_* security ones. It holds the SASL password:
        never print or log it."""
        config = {"bootstrap.servers": self.kafka_bootstrap}
        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return config
        config["security.protocol"] = protocol
        if protocol.startswith("SASL_"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password.reveal()
        if self.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
        return config

    @property
    def pg_dsn(self) -> str:
        """libpq connection string of the demo database; it holds the password: never print it."""
        parts = {
            "host": self.pg_host,
            "port": str(self.pg_port),
            "dbname": self.pg_database,
            "user": self.pg_user,
            "password": self.pg_password.reveal(),
        }
        return " ".join(f"{key}={_conninfo_quoted(value)}" for key, value in parts.items())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read LETHE_* variables; raise ConfigError naming a malformed one."""
        from lethe.settings_env import values_from_env

        env = os.environ if env is None else env
        return cls(**values_from_env(cls(), env, Secret))  # type: ignore[arg-type]


def _conninfo_quoted(value: str) -> str:
    """A libpq keyword value in single quotes (spaces, quotes and backslashes kept)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
