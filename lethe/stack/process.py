"""Background processes of the local stack: start with a log file, track by pid file, stop.

Every part writes its pid to `.stack/run/<part>.pid` and its output to
`.stack/logs/<part>.log`; `lethe stack status` reads both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lethe.errors import StackError


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    return True


EXEC_GRACE_S = 1.0
"""How long a command line may read empty: a process that has just been started can still be
inside exec (a few ms), and would otherwise look like a stranger that died while starting."""


def owns_pid(pid: int, stack_dir: Path) -> bool:
    """Whether process `pid` names `stack_dir` on its command line (it is one of ours)."""
    deadline = time.monotonic() + EXEC_GRACE_S
    while True:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False
        if cmdline or time.monotonic() >= deadline or not pid_alive(pid):
            return str(stack_dir).encode() in cmdline
        time.sleep(0.005)


def start_background(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `argv` detached (own session), output appended to `log_file`; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== lethe stack: starting at {time.strftime('%F %T')} ===\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {argv[0]}: {exc}") from exc
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM `pid` (its whole process group), wait up to `timeout`, then SIGKILL."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)
    for _ in range(50):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    _reap(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pids_listening(port: int) -> list[int]:
    """Pids of processes with a TCP socket listening on `port` (read from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    if not inodes:
        return []
    found: list[int] = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.append(int(proc_dir.name))
                    break
    return found


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP request with a JSON body: (status, parsed JSON or text); status 0 if no answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return 0, None
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_file: Path,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `check` until true; raise StackError naming `what` and its log when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(
                f"{what} exited while starting; see its log {log_file}{log_tail(log_file)}"
            )
        if time.monotonic() >= deadline:
            raise StackError(
                f"{what} not healthy after {timeout:.0f}s; see its log {log_file}"
                f"{log_tail(log_file)}"
            )
        time.sleep(interval)


def log_tail(log_file: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  last lines:\n" + "\n".join(f"    {line}" for line in tail)


def run(
    argv: Sequence[str],
    *,
    what: str,
    log_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
    input_text: str | None = None,
) -> str:
    """Run a command to completion; on failure raise StackError with its output (and log file)."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"{what} failed: {exc}") from exc
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as log:
            log.write(f"\n=== {what}: {' '.join(argv)} (exit {done.returncode}) ===\n")
            log.write(done.stdout)
            log.write(done.stderr)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-15:]
        where = f"; full output in {log_file}" if log_file is not None else ""
        raise StackError(
            f"{what} failed (exit {done.returncode}){where}:\n  " + "\n  ".join(output)
        )
    return done.stdout
