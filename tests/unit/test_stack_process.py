"""The stack's process tracking: a part just started is recognised as this stack's own."""

from __future__ import annotations

from pathlib import Path

from lethe.stack.process import owns_pid, read_pid, start_background, stop_pid


def test_a_process_is_ours_right_after_it_starts(tmp_path: Path) -> None:
    """No 'exited while starting' for a healthy start: checked at once, while exec may still run."""
    stack_dir = tmp_path / "stack"
    pid_file = stack_dir / "run" / "part.pid"
    started = []
    try:
        for _ in range(5):
            pid = start_background(
                ["/bin/sh", "-c", "sleep 30; :", str(stack_dir)],
                log_file=stack_dir / "logs" / "part.log",
                pid_file=pid_file,
            )
            started.append(pid)
            assert owns_pid(pid, stack_dir), f"pid {pid} not recognised right after its start"
            assert read_pid(pid_file) == pid
            assert not owns_pid(pid, tmp_path / "another-stack")
    finally:
        for pid in started:
            stop_pid(pid, timeout=5)
