"""Alertmanager from Debian's package (`prometheus-alertmanager`) and the webhook receiver it
routes every alert to, with their config and data under `.stack/alertmanager` and
`.stack/alert-receiver`."""

from __future__ import annotations

import shutil
import sys
import urllib.parse

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.base import Part
from lethe.stack.process import http, start_background

ALERTMANAGER_BINARY = "prometheus-alertmanager"


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


class AlertReceiver(Part):
    """`lethe.stack.alert_receiver` on LETHE_ALERT_RECEIVER_URL; healthy when `/-/ready`
    answers 200. The notifications are in `.stack/alert-receiver/notifications.jsonl`."""

    name = "alert-receiver"
    start_timeout = 30.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.file = self.dir / "notifications.jsonl"

    @property
    def host(self) -> str:
        return _host_port(self.settings.alert_receiver_url, 9096)[0]

    @property
    def port(self) -> int:
        return _host_port(self.settings.alert_receiver_url, 9096)[1]

    @property
    def endpoint(self) -> str:
        return self.settings.alert_receiver_url

    def healthy(self) -> bool:
        status, _ = http("GET", f"{self.settings.alert_receiver_url}/-/ready", timeout=3)
        return status == 200

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        start_background(
            [
                sys.executable,
                "-m",
                "lethe.stack.alert_receiver",
                f"--listen={self.host}:{self.port}",
                f"--file={self.file}",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )


class Alertmanager(Part):
    """Healthy when `/-/ready` answers 200. Routes every alert, resolved ones too, to the
    alert receiver (config/alertmanager/alertmanager.yml); no clustering."""

    name = "alertmanager"
    start_timeout = 60.0
    port_taken_hint = (
        "if it is Debian's own Alertmanager: `systemctl disable --now prometheus-alertmanager`;"
        " else stop it, or set LETHE_ALERTMANAGER_URL"
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config_file = self.dir / "alertmanager.yml"
        self.data_dir = self.dir / "data"
        self.template = settings.config_dir / "alertmanager" / "alertmanager.yml"

    @property
    def host(self) -> str:
        return _host_port(self.settings.alertmanager_url, 9095)[0]

    @property
    def port(self) -> int:
        return _host_port(self.settings.alertmanager_url, 9095)[1]

    @property
    def endpoint(self) -> str:
        return self.settings.alertmanager_url

    def healthy(self) -> bool:
        status, _ = http("GET", f"{self.settings.alertmanager_url}/-/ready", timeout=3)
        return status == 200

    def render_config(self) -> str:
        return self.template.read_text().replace(
            "${LETHE_ALERT_RECEIVER_URL}", self.settings.alert_receiver_url.rstrip("/")
        )

    def config_current(self) -> bool:
        return self.config_file.exists() and self.config_file.read_text() == self.render_config()

    def up(self) -> bool:
        """As Part.up; a running Alertmanager reloads when its rendered config changed."""
        if self.pid() is not None and self.config_file.exists() and not self.config_current():
            self.config_file.write_text(self.render_config())
            status, body = http("POST", f"{self.settings.alertmanager_url}/-/reload", timeout=10)
            if status != 200:
                raise StackError(
                    f"alertmanager: reloading {self.config_file} failed ({status}: {body}); "
                    f"see {self.log_file}"
                )
        return super().up()

    def start(self) -> None:
        binary = shutil.which(ALERTMANAGER_BINARY)
        if binary is None:
            raise StackError(
                f"{ALERTMANAGER_BINARY} not found: apt-get install -y prometheus-alertmanager"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())
        start_background(
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.path={self.data_dir}",
                f"--web.listen-address={self.host}:{self.port}",
                "--cluster.listen-address=",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )
