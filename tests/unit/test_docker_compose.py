"""docker/: the compose stack for users who have Docker, checked offline.

No Docker engine is needed: the Compose CLI's `config -q` validates the file
against the Compose specification without contacting one. The CLI comes from
`make docker-check-deps` (Debian's docker-compose) or a Docker Compose v2
plugin; without either these tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe.settings import Secret, Settings
from lethe.settings_env import VARIABLES as _VARIABLES
from lethe.stack.connect import sink_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
CONNECTOR = DOCKER / "connect" / "hosting-source.json"
LOCAL_CONNECTOR = REPO / "config" / "connect" / "hosting-source.json"
SINK = DOCKER / "connect" / "lethe-sink.json"
DEMO_SCHEMA = REPO / "config" / "demo" / "hosting-schema.sql"
DEMO_DATA = REPO / "config" / "demo" / "hosting-data.sql"
STACK_POM = REPO / "lethe" / "stack" / "maven" / "pom.xml"

TOPOLOGY = {"kafka", "connect", "postgres", "prometheus", "grafana", "lethe"}


def _compose_cli() -> list[str]:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "no Compose CLI to validate docker/compose.yaml: neither `docker compose` nor "
        "`docker-compose` is installed; run `make docker-check-deps` (as root) and rerun"
    )


def _validate(compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose_cli(), "-f", str(compose_file), "config", "-q"],
        cwd=compose_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{COMPOSE} is not a YAML mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), f"{COMPOSE} has no services"
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _connector(path: Path) -> dict[str, str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    config = document.get("config", document)
    assert isinstance(config, dict), f"{path}: no connector config object"
    return config


# --- the compose file is valid, and the validator really validates -----------------


def test_compose_file_is_valid_compose_spec() -> None:
    result = _validate(COMPOSE)
    assert result.returncode == 0, f"{COMPOSE} is invalid:\n{result.stderr}{result.stdout}"


@pytest.mark.parametrize(
    ("breakage", "culprit"),
    [
        (lambda doc: doc["services"]["kafka"].update(helthcheck={}), "helthcheck"),
        (
            lambda doc: doc["services"]["lethe"]["depends_on"].update(
                zookeeper={"condition": "service_healthy"}
            ),
            "zookeeper",
        ),
        (lambda doc: doc["services"]["postgres"].update(ports=[{"target": "five"}]), "five"),
    ],
    ids=["misspelt-key", "unknown-dependency", "port-not-a-number"],
)
def test_validator_rejects_a_broken_copy(
    tmp_path: Path, compose: dict[str, Any], breakage: Any, culprit: str
) -> None:
    broken = json.loads(json.dumps(compose))
    breakage(broken)
    copy = tmp_path / "compose.yaml"
    copy.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = _validate(copy)
    assert result.returncode != 0, f"the Compose CLI accepted a file with {culprit!r}"
    assert culprit in result.stderr + result.stdout


# --- topology and exposure --------------------------------------------------------


def test_every_service_of_the_topology_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert services.keys() >= TOPOLOGY, f"missing services: {TOPOLOGY - services.keys()}"


def test_published_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name} uses the host network"
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port!r}"


def test_long_running_services_have_healthchecks_and_wait_for_health(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shots = {name for name, s in services.items() if str(s.get("restart", "")) == "no"}
    for name, service in services.items():
        if name not in one_shots:
            test = service.get("healthcheck", {}).get("test")
            assert test, f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule.get("condition") == "service_healthy", (
                f"{name} starts before {dependency} is healthy"
            )
            assert services[dependency].get("healthcheck"), (
                f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
            )


def test_images_are_official_and_pinned(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "kafka": "apache/kafka:4.",
        "connect": "quay.io/debezium/connect:3.",
        "postgres": "postgres:",
        "prometheus": "prom/prometheus:",
        "grafana": "grafana/grafana:",
    }
    for name, prefix in expected.items():
        image = services[name]["image"]
        assert image.startswith(prefix), f"{name} runs {image}, expected {prefix}*"
        assert not image.endswith(":latest"), f"{name} is not pinned: {image}"
    assert services["lethe"]["build"]["dockerfile"] == "docker/Dockerfile"


def _pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", STACK_POM.read_text())
    assert match, f"{STACK_POM.relative_to(REPO)} does not pin {name}"
    return match[1]


def test_images_run_the_versions_the_local_stack_pins(services: dict[str, dict[str, Any]]) -> None:
    """Docker users get the Kafka and Debezium that `lethe stack up` runs (the pom's properties)."""
    debezium = _pom_property("version.debezium")
    kafka = _pom_property("version.kafka")
    assert services["kafka"]["image"] == f"apache/kafka:{kafka}"
    for name in ("connect", "register-connectors"):
        assert services[name]["image"] == f"quay.io/debezium/connect:{debezium}", name


def test_every_bind_mount_source_exists_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _target in _bind_mounts(service):
            assert (DOCKER / source).exists(), f"{name} mounts {source}, which does not exist"


# --- the demo database ------------------------------------------------------------


def test_postgres_loads_the_demo_schema_and_data_on_first_start(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]
    mounted = {(DOCKER / source).resolve(): target for source, target in _bind_mounts(postgres)}
    for sql in (DEMO_SCHEMA, DEMO_DATA):
        assert sql.is_file(), f"{sql.relative_to(REPO)} is missing"
        assert sql in mounted, f"postgres does not mount {sql.relative_to(REPO)}"
        assert mounted[sql].startswith("/docker-entrypoint-initdb.d/")
    initdb = sorted(Path(mounted[sql]).name for sql in (DEMO_SCHEMA, DEMO_DATA))
    assert initdb[0] == Path(mounted[DEMO_SCHEMA]).name, "rows would load before the tables"


def test_postgres_matches_the_settings_and_streams_logical_changes(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]
    defaults = Settings()
    env = _env(postgres)
    assert env["POSTGRES_DB"] == defaults.pg_database
    assert env["POSTGRES_USER"] == defaults.pg_user
    assert env["POSTGRES_PASSWORD"] == defaults.pg_password.reveal()
    assert "wal_level=logical" in postgres["command"]


# --- Debezium source connector ----------------------------------------------------


def test_connector_captures_the_demo_database_from_the_postgres_service(
    services: dict[str, dict[str, Any]],
) -> None:
    config = _connector(CONNECTOR)
    env = _env(services["postgres"])
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["topic.prefix"] == "hosting"
    assert config["database.hostname"] in services
    assert config["database.dbname"] == env["POSTGRES_DB"]
    assert config["database.user"] == env["POSTGRES_USER"]
    assert config["database.password"] == env["POSTGRES_PASSWORD"]


def test_connector_is_registered_by_a_one_shot_after_connect_is_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    registrars = [
        name
        for name, service in services.items()
        if any((DOCKER / src).resolve() == CONNECTOR for src, _ in _bind_mounts(service))
    ]
    assert registrars, "no service mounts docker/connect/hosting-source.json"
    for name in registrars:
        service = services[name]
        assert str(service.get("restart")) == "no", f"{name} is not a one-shot"
        assert service["depends_on"]["connect"]["condition"] == "service_healthy"
        script = json.dumps(service.get("command", "")) + json.dumps(service.get("entrypoint"))
        assert "http://connect:8083/connectors" in script


def test_connector_is_the_local_stacks_rendered_for_the_containers(
    services: dict[str, dict[str, Any]],
) -> None:
    """Both stacks capture the same way: the local template, filled in with the
    settings the worker container sees, gives exactly docker's connector."""
    assert LOCAL_CONNECTOR.is_file(), f"{LOCAL_CONNECTOR.relative_to(REPO)} is missing"
    settings = Settings.from_env(_env(services["lethe"]))
    values = {variable: _plain(getattr(settings, field)) for field, variable in _VARIABLES.items()}
    template = json.loads(LOCAL_CONNECTOR.read_text(encoding="utf-8"))
    rendered = json.loads(string.Template(json.dumps(template)).substitute(values))
    assert json.loads(CONNECTOR.read_text(encoding="utf-8")) == rendered


def test_sink_is_the_local_stacks_rendered_for_the_containers(
    services: dict[str, dict[str, Any]],
) -> None:
    """The commands reach the containers' database the way `lethe stack up` applies them:
    the local sink template, filled in with the worker container's settings."""
    settings = replace(Settings.from_env(_env(services["lethe"])), config_dir=REPO / "config")
    name, config = sink_config(settings)
    assert json.loads(SINK.read_text(encoding="utf-8")) == {"name": name, "config": config}
    assert config["connection.url"] == "jdbc:postgresql://postgres:5432/hosting"


def test_sink_is_registered_by_the_one_shot_after_connect_is_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    registrars = [
        name
        for name, service in services.items()
        if any((DOCKER / src).resolve() == SINK for src, _ in _bind_mounts(service))
    ]
    assert registrars, "no service mounts docker/connect/lethe-sink.json"
    for name in registrars:
        service = services[name]
        assert str(service.get("restart")) == "no", f"{name} is not a one-shot"
        assert service["depends_on"]["connect"]["condition"] == "service_healthy"
        mounted = dict(_bind_mounts(service))["./connect/lethe-sink.json"]
        script = "\n".join(service["command"])
        assert "http://connect:8083/connectors" in script
        assert Path(mounted).stem in script, f"{name} mounts the sink but never posts it"


def _plain(value: object) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


# --- the Lethe worker -------------------------------------------------------------


def test_worker_environment_names_only_known_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _env(services["lethe"])
    unknown = {name for name in env if name.startswith("LETHE_")} - set(_VARIABLES.values())
    assert not unknown, f"settings ignore {sorted(unknown)}; see lethe/settings.py"
    assert Settings.from_env(env).web_host == "0.0.0.0"


def test_worker_reaches_the_other_containers(services: dict[str, dict[str, Any]]) -> None:
    settings = Settings.from_env(_env(services["lethe"]))
    advertised = _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    internal = {re.sub(r"^\w+://", "", listener) for listener in advertised.split(",")}
    assert settings.kafka_bootstrap in internal
    assert settings.kafka_bootstrap.split(":")[0] != "127.0.0.1"
    assert settings.pg_host in services
    assert settings.connect_url == "http://connect:8083"


def test_prometheus_scrapes_the_worker_metrics(services: dict[str, dict[str, Any]]) -> None:
    settings = Settings.from_env(_env(services["lethe"]))
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text(encoding="utf-8"))
    lethe_jobs = [
        job
        for job in prometheus["scrape_configs"]
        if any(f"lethe:{settings.web_port}" in group["targets"] for group in job["static_configs"])
    ]
    assert lethe_jobs, f"prometheus.yml does not scrape lethe:{settings.web_port}"
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in lethe_jobs)
    assert any(
        target.endswith("/etc/prometheus/prometheus.yml")
        for _source, target in _bind_mounts(services["prometheus"])
    )


def test_grafana_provisions_the_prometheus_datasource() -> None:
    path = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    datasources = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    assert [d["url"] for d in datasources if d["type"] == "prometheus"] == [
        "http://prometheus:9090"
    ]


def test_dockerfile_runs_the_worker_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["lethe", "worker"]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert any("6066" in rest for keyword, rest in instructions if keyword == "EXPOSE")


def test_dockerfile_copies_only_what_the_build_context_holds() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".cache", ".stack"} <= ignored
    for keyword, rest in _dockerfile_instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, not in the repo"
            assert source not in ignored, f"Dockerfile copies {source}, but .dockerignore drops it"


# --- alerts and the dashboard -------------------------------------------------------


def _mounted(service: dict[str, Any]) -> dict[Path, str]:
    return {(DOCKER / source).resolve(): target for source, target in _bind_mounts(service)}


def test_prometheus_loads_lethes_rules_and_alerts_the_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    rules = (REPO / "config" / "prometheus" / "rules").resolve()
    target = _mounted(services["prometheus"])[rules]
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert config["rule_files"] == [f"{target}/*.yml"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["alertmanager:9093"]
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:v")


def test_the_alertmanager_routes_every_alert_to_the_receiver_service(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    assert receiver["webhook_configs"] == [
        {"url": "http://alert-receiver:9096/alerts", "send_resolved": True}
    ]
    assert "--listen=0.0.0.0:9096" in services["alert-receiver"]["command"]


def test_grafana_provisions_the_dashboard_and_its_data_source(
    services: dict[str, dict[str, Any]],
) -> None:
    mounted = _mounted(services["grafana"])
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "lethe.yaml").read_text()
    )["providers"][0]
    assert mounted[(DOCKER / "grafana" / "dashboards").resolve()] == provider["options"]["path"]
    source = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "lethe.json").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if panel["type"] != "row"}
    assert uids == {source["uid"]}
