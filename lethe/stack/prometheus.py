"""Prometheus from Debian's package, with its own config and data under `.stack/prometheus`.

It loads the alert rules of `config/prometheus/rules/`, sends alerts to the stack's
Alertmanager (`lethe.stack.alertmanager`), and scrapes the worker on LETHE_WEB_HOST:
LETHE_WEB_PORT and every target listed in the file_sd JSON files of `targets_dir`."""

from __future__ import annotations

import shutil
import urllib.parse

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.base import Part
from lethe.stack.process import http, start_background


class Prometheus(Part):
    """Healthy when `/-/ready` answers 200. Scrapes the worker's /metrics every 5 s (job lethe)."""

    name = "prometheus"
    start_timeout = 60.0
    port_taken_hint = (
        "if it is Debian's own Prometheus: `systemctl disable --now prometheus`; "
        "else stop it, or set LETHE_PROMETHEUS_URL"
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config_file = self.dir / "prometheus.yml"
        self.data_dir = self.dir / "data"
        self.template = settings.config_dir / "prometheus" / "prometheus.yml"
        self.rules_dir = settings.config_dir / "prometheus" / "rules"
        self.targets_dir = self.dir / "targets"
        """file_sd files (`*.json`) of more workers to scrape (job lethe)."""

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.settings.prometheus_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.settings.prometheus_url).port or 9090

    @property
    def endpoint(self) -> str:
        return self.settings.prometheus_url

    def healthy(self) -> bool:
        status, _ = http("GET", f"{self.settings.prometheus_url}/-/ready", timeout=3)
        return status == 200

    def render_config(self) -> str:
        text = self.template.read_text()
        values = {
            "LETHE_METRICS_TARGET": f"{self.settings.web_host}:{self.settings.web_port}",
            "LETHE_PROMETHEUS_TARGET": f"{self.host}:{self.port}",
            "LETHE_RULES_DIR": str(self.rules_dir),
            "LETHE_TARGETS_DIR": str(self.targets_dir),
            "LETHE_ALERTMANAGER_TARGET": urllib.parse.urlsplit(
                self.settings.alertmanager_url
            ).netloc,
        }
        for key, value in values.items():
            text = text.replace("${" + key + "}", value)
        return text

    def config_current(self) -> bool:
        """Whether the config file Prometheus runs with is the one the settings render."""
        return self.config_file.exists() and self.config_file.read_text() == self.render_config()

    def up(self) -> bool:
        """As Part.up; a running Prometheus reloads when its rendered config changed."""
        if self.pid() is not None and self.config_file.exists() and not self.config_current():
            self.targets_dir.mkdir(parents=True, exist_ok=True)
            self.config_file.write_text(self.render_config())
            status, body = http("POST", f"{self.settings.prometheus_url}/-/reload", timeout=10)
            if status != 200:
                raise StackError(
                    f"prometheus: reloading {self.config_file} failed ({status}: {body}); "
                    f"see {self.log_file}"
                )
        return super().up()

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError("prometheus binary not found: apt-get install -y prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())
        start_background(
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )
