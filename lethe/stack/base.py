"""What every part of the local stack has: a pid file, a log file, an endpoint, a health check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lethe.settings import Settings
from lethe.stack.process import owns_pid, port_open, read_pid, stop_pid, wait_until


@dataclass(frozen=True, slots=True)
class PartStatus:
    """One line of `lethe stack status`."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    endpoint: str
    log_file: Path
    data_dir: Path | None = None

    def line(self) -> str:
        state = (
            "running"
            if self.running and self.healthy
            else ("unhealthy" if self.running else "stopped")
        )
        pid = str(self.pid) if self.pid is not None else "-"
        data = f"  data {self.data_dir}" if self.data_dir is not None else ""
        return (
            f"{self.name:<11} {state:<9} pid {pid:<8} {self.endpoint:<42} log {self.log_file}{data}"
        )


class Part:
    """A process of the stack. Subclasses set `name`, `host`, `port` and implement start/healthy."""

    name: str = "part"
    started_verb: str = "started"
    unchanged_verb: str = "already running"
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    port_taken_hint: str = "stop it, or set the LETHE_* port variable"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir / self.name
        self.log_file = settings.stack_dir / "logs" / f"{self.name}.log"
        self.pid_file = settings.stack_dir / "run" / f"{self.name}.pid"

    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def pid(self) -> int | None:
        """The live pid of this part (a recycled pid of another program does not count)."""
        pid = read_pid(self.pid_file)
        if pid is None or not owns_pid(pid, self.settings.stack_dir):
            return None
        return pid

    def healthy(self) -> bool:
        """Whether the part answers as it should (overridden with a real check)."""
        return port_open(self.host, self.port)

    def start(self) -> None:
        """Write the part's config and start its process (which is not yet healthy)."""
        raise NotImplementedError

    def up(self) -> bool:
        """Start the part unless it runs and is healthy; wait until healthy. True if started."""
        if self.pid() is not None:
            if self.healthy():
                return False
            self.wait_healthy()
            return False
        if port_open(self.host, self.port):
            from lethe.errors import StackError

            raise StackError(
                f"{self.name}: port {self.endpoint} is taken by a process this stack did not start "
                f"(no live pid in {self.pid_file}); {self.port_taken_hint}"
            )
        self.start()
        self.wait_healthy()
        return True

    def wait_healthy(self, timeout: float | None = None) -> None:
        wait_until(
            self.healthy,
            timeout=self.start_timeout if timeout is None else timeout,
            what=self.name,
            log_file=self.log_file,
            alive=lambda: self.pid() is not None,
        )

    def stop(self) -> bool:
        """Stop the part's process if it runs. True if there was one."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_pid(pid, timeout=self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> PartStatus:
        pid = self.pid()
        healthy = pid is not None and self.healthy()
        return PartStatus(self.name, pid is not None, healthy, pid, self.endpoint, self.log_file)

    def wipe(self) -> None:
        """Delete the part's data (the part is stopped)."""
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
