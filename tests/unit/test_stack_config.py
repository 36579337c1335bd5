"""The local stack's generated configs and demo SQL, checked without starting anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from lethe.settings import Secret, Settings
from lethe.stack.alertmanager import Alertmanager
from lethe.stack.connect import sink_config, source_config
from lethe.stack.kafka import Kafka
from lethe.stack.prometheus import Prometheus
from tests.demo_schema import DEMO_TABLES

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
SCHEMA = (CONFIG / "demo" / "hosting-schema.sql").read_text()


def test_source_connector_takes_the_database_from_settings() -> None:
    settings = Settings(
        pg_host="db.test",
        pg_port=6543,
        pg_user="cdc",
        pg_password=Secret('p"w'),
        config_dir=CONFIG,
    )
    name, config = source_config(settings)
    assert name == "hosting"
    assert config["database.hostname"] == "db.test"
    assert config["database.port"] == "6543"
    assert config["database.user"] == "cdc"
    assert config["database.password"] == 'p"w'
    assert config["topic.prefix"] == "hosting"
    assert config["plugin.name"] == "pgoutput"
    assert f"CREATE PUBLICATION {config['publication.name']} FOR TABLE" in SCHEMA


def test_every_demo_table_is_created_published_and_full_replica_identity() -> None:
    created = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))
    full = set(re.findall(r"ALTER TABLE (\w+)\s+REPLICA IDENTITY FULL", SCHEMA))
    published_text = SCHEMA.split("CREATE PUBLICATION", 1)[1].split("FOR TABLE", 1)[1]
    published = set(re.findall(r"\w+", published_text.split(";", 1)[0]))
    assert created == set(DEMO_TABLES)
    assert full == set(DEMO_TABLES)
    assert published == set(DEMO_TABLES)


def test_seed_data_has_rows_for_every_table() -> None:
    data = (CONFIG / "demo" / "hosting-data.sql").read_text()
    assert set(re.findall(r"INSERT INTO (\w+)", data)) == set(DEMO_TABLES)


def test_prometheus_scrapes_the_worker_every_5s(tmp_path: Path) -> None:
    settings = Settings(web_host="127.0.0.1", web_port=7077, stack_dir=tmp_path, config_dir=CONFIG)
    config = yaml.safe_load(Prometheus(settings).render_config())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "lethe")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:7077"]
    assert job["metrics_path"] == "/metrics"
    assert config["global"]["scrape_interval"] == "5s"


def test_kafka_binds_loopback_with_single_replica_internal_topics(tmp_path: Path) -> None:
    text = Kafka(Settings(stack_dir=tmp_path)).config_text()
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(
        tmp_path / "kafka" / "tls" / "broker-keystore.pem"
    )
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert "${" not in text


def test_source_connector_topic_prefix_comes_from_settings() -> None:
    _name, config = source_config(Settings(cdc_topic_prefix="shop", config_dir=CONFIG))
    assert config["topic.prefix"] == "shop"
    assert "${" not in "".join(config.values())


def test_sink_connector_applies_the_sink_topics_to_the_tables_of_the_database() -> None:
    settings = Settings(
        pg_host="db.test",
        pg_port=6543,
        pg_user="cdc",
        pg_password=Secret('p"w'),
        pg_database="shop",
        config_dir=CONFIG,
    )
    name, config = sink_config(settings)
    assert name == "lethe-sink"
    assert config["connector.class"] == "io.debezium.connector.jdbc.JdbcSinkConnector"
    assert config["connection.url"] == "jdbc:postgresql://db.test:6543/shop"
    assert config["connection.username"] == "cdc"
    assert config["connection.password"] == 'p"w'
    assert config["connection.provider"] == "org.hibernate.c3p0.internal.C3P0ConnectionProvider"
    # partial updates that never insert; tombstones delete by the record's key only
    assert config["insert.mode"] == "update"
    assert config["delete.enabled"] == "true"
    assert config["primary.key.mode"] == "record_key"
    assert "primary.key.fields" not in config
    assert config["schema.evolution"] == "none"
    assert config["use.reduction.buffer"] == "false"
    for side in ("key", "value"):
        assert config[f"{side}.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert config[f"{side}.converter.schemas.enable"] == "true"


def test_sink_connector_routes_each_sink_topic_to_its_table() -> None:
    """What Connect does with the config: RegexRouter, then the JDBC sink's default naming
    (`${topic}` with dots as underscores) in `collection.name.format`."""
    _name, config = sink_config(Settings(config_dir=CONFIG))
    subscribed = re.compile(config["topics.regex"])
    assert subscribed.fullmatch("lethe.sink.public.satisfaction_surveys")
    assert not subscribed.fullmatch("hosting.public.satisfaction_surveys")
    assert not subscribed.fullmatch("lethe.commands")
    assert config["transforms"] == "table"
    assert config["transforms.table.type"] == "org.apache.kafka.connect.transforms.RegexRouter"
    routed = re.sub(
        config["transforms.table.regex"],
        config["transforms.table.replacement"].replace("$1", r"\1"),
        "lethe.sink.public.satisfaction_surveys",
    )
    table = config["collection.name.format"].replace("${topic}", routed.replace(".", "_"))
    assert table == "public.satisfaction_surveys"


def test_no_committed_connector_config_holds_a_password() -> None:
    for template in (CONFIG / "connect").glob("*.json"):
        config = json.loads(template.read_text())["config"]
        for key, value in config.items():
            if "password" in key:
                assert value == "${LETHE_PG_PASSWORD}", f"{template.name}: {key}"


def test_prometheus_sends_alerts_to_the_stacks_alertmanager_and_reads_file_sd_targets(
    tmp_path: Path,
) -> None:
    settings = Settings(
        alertmanager_url="http://127.0.0.1:9195", stack_dir=tmp_path, config_dir=CONFIG
    )
    config = yaml.safe_load(Prometheus(settings).render_config())
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["127.0.0.1:9195"]
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "lethe")
    assert job["file_sd_configs"][0]["files"] == [f"{tmp_path}/prometheus/targets/*.json"]
    assert config["rule_files"] == [f"{CONFIG}/prometheus/rules/*.yml"]


def test_alertmanager_notifies_the_receiver_of_every_alert_resolved_too(tmp_path: Path) -> None:
    settings = Settings(
        alert_receiver_url="http://127.0.0.1:9196", stack_dir=tmp_path, config_dir=CONFIG
    )
    config = yaml.safe_load(Alertmanager(settings).render_config())
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    assert receiver["webhook_configs"] == [
        {"url": "http://127.0.0.1:9196/alerts", "send_resolved": True}
    ]


def test_the_source_connector_beats_through_the_heartbeat_table_in_its_publication() -> None:
    _, config = source_config(Settings(config_dir=CONFIG))
    heartbeat_sql = (CONFIG / "demo" / "source-heartbeat.sql").read_text()
    assert "INTO lethe_heartbeat.source_heartbeat" in config["heartbeat.action.query"]
    assert config["schema.include.list"].split(",") == ["public", "lethe_heartbeat"]
    assert "CREATE TABLE IF NOT EXISTS lethe_heartbeat.source_heartbeat" in heartbeat_sql
    assert (
        f"ALTER PUBLICATION {config['publication.name']} ADD TABLE lethe_heartbeat.source_heartbeat"
        in (heartbeat_sql)
    )
    docker = json.loads((ROOT / "docker" / "connect" / "hosting-source.json").read_text())
    assert docker["config"]["heartbeat.action.query"] == config["heartbeat.action.query"]
    assert docker["config"]["schema.include.list"] == config["schema.include.list"]
