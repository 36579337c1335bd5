"""Install what the local stack needs when it is missing: Debian packages and Maven jars.

Debian packages (PostgreSQL, Prometheus and its Alertmanager, Java, Maven) are installed
with apt-get when their binary is absent, which needs root. The stack runs its own
PostgreSQL, Prometheus and Alertmanager, so the distro services must not take their ports:
during apt-get a temporary `/usr/sbin/policy-rc.d` (exit 101) keeps the packages from
starting their services (unless the machine already has one), and afterwards
`postgresql.service`, `prometheus.service` and `prometheus-alertmanager.service` are
disabled (and stopped if they run) when systemctl is there; Debian is also told not to
create a `main` PostgreSQL cluster. Each of these steps prints a line. Jars come from the
pom in `lethe/stack/maven/`: `mvn package` copies them under `.cache/stack/jars`, and a
stamp with the poms' hash makes the next run skip Maven while the poms are unchanged.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.process import run

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
PG_CREATECLUSTER_CONF = Path("/etc/postgresql-common/createcluster.conf")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
DISTRO_SERVICES = {
    "postgresql": "postgresql.service",
    "prometheus": "prometheus.service",
    "prometheus-alertmanager": "prometheus-alertmanager.service",
}
"""Debian package -> the systemd unit it enables, which would take the stack's port."""


@dataclass(frozen=True, slots=True)
class Jars:
    """Where the jars are: the broker/Connect classpath and Connect's plugin.path."""

    kafka_libs: Path
    plugin_path: Path

    @property
    def classpath(self) -> str:
        return ":".join(sorted(str(jar) for jar in self.kafka_libs.glob("*.jar")))


def logs_dir(settings: Settings) -> Path:
    return settings.stack_dir / "logs"


def apt_install(packages: list[str], settings: Settings) -> None:
    """apt-get update + install -y --no-install-recommends; needs root."""
    if os.geteuid() != 0:
        raise StackError(
            f"missing Debian packages {', '.join(packages)} and not root: "
            f"run `sudo apt-get install -y --no-install-recommends {' '.join(packages)}`"
        )
    log_file = logs_dir(settings) / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {', '.join(packages)} (apt-get; log {log_file})")
    begin = time.monotonic()
    run(["apt-get", "update"], what="apt-get update", log_file=log_file, env=env)
    with services_held_back():
        run(
            [
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confold",
                *packages,
            ],
            what=f"apt-get install {' '.join(packages)}",
            log_file=log_file,
            env=env,
        )
    say(f"apt-get done in {time.monotonic() - begin:.1f}s")
    for package in packages:
        if package in DISTRO_SERVICES:
            disable_service(DISTRO_SERVICES[package])


def say(line: str) -> None:
    print(f"lethe stack: {line}", flush=True)


@contextlib.contextmanager
def services_held_back(policy_rc_d: Path = POLICY_RC_D) -> Iterator[None]:
    """While apt-get runs, packages may not start services (policy-rc.d exit 101).

    A policy-rc.d the machine already has is left alone (and decides); the one
    written here is removed afterwards, also when apt-get fails.
    """
    if policy_rc_d.exists():
        say(f"{policy_rc_d} exists; it decides whether packages start their services")
        yield
        return
    policy_rc_d.write_text(
        "#!/bin/sh\n# Written by `lethe stack up` for one apt-get run: start no service.\n"
        "exit 101\n"
    )
    policy_rc_d.chmod(0o755)
    say(f"wrote {policy_rc_d} (exit 101) so that apt-get starts no service")
    try:
        yield
    finally:
        policy_rc_d.unlink(missing_ok=True)
        say(f"removed {policy_rc_d}")


def disable_service(unit: str) -> None:
    """Disable `unit` (and stop it if it runs) so that it never takes the stack's port."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return
    if _systemctl(systemctl, "is-enabled", "--quiet", unit):
        if _systemctl(systemctl, "disable", "--quiet", unit):
            say(f"disabled {unit} (the stack runs its own on its port)")
        else:
            say(f"could not disable {unit}; if it takes the port: systemctl disable --now {unit}")
    if _systemctl(systemctl, "is-active", "--quiet", unit):
        if _systemctl(systemctl, "stop", unit):
            say(f"stopped {unit}")
        else:
            say(f"could not stop {unit}; if it takes the port: systemctl stop {unit}")


def _systemctl(systemctl: str, *args: str) -> bool:
    try:
        done = subprocess.run([systemctl, *args], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb, if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def missing_packages() -> list[str]:
    """The Debian packages whose binaries are missing."""
    missing: list[str] = []
    if shutil.which("java") is None:
        missing.append("openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        missing.append("maven")
    if postgres_bin_dir() is None or shutil.which("psql") is None:
        missing.append("postgresql")
    if shutil.which("prometheus") is None:
        missing.append("prometheus")
    if shutil.which("prometheus-alertmanager") is None:
        missing.append("prometheus-alertmanager")
    if shutil.which("openssl") is None:
        missing.append("openssl")  # the broker's TLS certificates (lethe.stack.kafka)
    return missing


def ensure_packages(settings: Settings) -> None:
    """Install the Debian packages whose binaries are missing, in one apt-get run."""
    missing = missing_packages()
    if "postgresql" in missing and not PG_CREATECLUSTER_CONF.exists() and os.geteuid() == 0:
        PG_CREATECLUSTER_CONF.parent.mkdir(parents=True, exist_ok=True)
        PG_CREATECLUSTER_CONF.write_text("create_main_cluster = false\n")
        say(f"wrote {PG_CREATECLUSTER_CONF}: Debian creates no `main` cluster on port 5432")
    if missing:
        apt_install(missing, settings)


def poms_digest() -> str:
    digest = hashlib.sha256()
    for pom in sorted(MAVEN_DIR.rglob("pom.xml")):
        digest.update(str(pom.relative_to(MAVEN_DIR)).encode())
        digest.update(pom.read_bytes())
    return digest.hexdigest()


def cached_jars(settings: Settings) -> Jars:
    root = settings.cache_dir / "stack" / "jars"
    return Jars(kafka_libs=root / "kafka", plugin_path=root / "plugins")


def jars_current(settings: Settings) -> bool:
    """Whether the cached jars were fetched for the current poms."""
    jars = cached_jars(settings)
    stamp = jars.kafka_libs.parent / ".poms-sha256"
    return (
        stamp.exists() and stamp.read_text().strip() == poms_digest() and jars.kafka_libs.is_dir()
    )


def ensure_jars(settings: Settings) -> Jars:
    """Fetch the Kafka, Connect and Debezium jars with Maven unless the cache is current."""
    jars = cached_jars(settings)
    if jars_current(settings):
        return jars
    root = jars.kafka_libs.parent
    stamp = root / ".poms-sha256"
    wanted = poms_digest()
    log_file = logs_dir(settings) / "maven.log"
    begin = time.monotonic()
    staging = root.with_name("jars.new")
    shutil.rmtree(staging, ignore_errors=True)
    say(f"fetching Kafka/Connect/Debezium jars with Maven (log {log_file})")
    run(
        [
            "mvn",
            "--batch-mode",
            "--no-transfer-progress",
            "-f",
            str(MAVEN_DIR / "pom.xml"),
            f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
            f"-Dlethe.out={staging}",
            "package",
        ],
        what="Maven fetch of the stack's jars",
        log_file=log_file,
        timeout=1500,
    )
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    stamp.write_text(wanted + "\n")
    say(f"jars fetched in {time.monotonic() - begin:.1f}s")
    return jars
