"""`lethe worker`, with a stall at a rebalance that the test chooses (test_rebalance.py).

Usage: python tests/integration/stalled_worker.py <lethe worker arguments>

With LETHE_IT_STALL_DIR set, the worker talks to the test through files there:
- it appends a line to `resumed` each time Faust has resumed its streams after an
  assignment (`Recovery._resume_streams`, faust/tables/recovery.py ~305-336, or
  `Recovery.on_recovery_completed` ~624-667 when the app has tables);
- once `arm` exists, the next assignment stalls just before the streams are resumed:
  the worker writes `stalled` and waits (the event loop keeps running other work,
  like a loop busy elsewhere) until `resume` exists, at most STALL_MAX_S.

LETHE_IT_SEEK_PAUSE_S makes every seek of Faust's to committed offsets (`perform_seek`)
take that much longer, and LETHE_IT_HANDLE_DELAY_S every change record take that long
to process: after its last seek of a rebalance, Faust has records fetched and waiting
in the stream's buffer when it resumes the streams (which empties the buffers), as on
a busy machine.

LETHE_IT_STOCK_CONSUMER=1 runs it with Faust's own consumer instead of
`lethe.consumer.Consumer`, to see what the test catches without Lethe's fix.
LETHE_IT_FETCH_TIMEOUT_S sets how long one fetch of Faust's waits for records
(Faust: 1 s), to keep a fetch begun before the rebalance waiting through it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

STALL_MAX_S = 120.0


def patch_recovery(stall_dir: Path) -> None:
    """Wrap both ways Faust resumes its streams after an assignment: `_resume_streams` when
    the app has no tables, `on_recovery_completed` after the tables' changelogs are read
    (the worker's `locations` table)."""
    from faust.tables.recovery import Recovery

    stalled = False

    def stalling(resume: Any) -> Any:
        async def stalling_resume(self: Any, generation_id: int = 0) -> None:
            nonlocal stalled
            if not stalled and (stall_dir / "arm").exists():
                stalled = True
                (stall_dir / "stalled").write_text(f"{generation_id}\n")
                deadline = time.monotonic() + STALL_MAX_S
                while not (stall_dir / "resume").exists() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            await resume(self, generation_id)
            with (stall_dir / "resumed").open("a") as resumed:
                resumed.write(f"{generation_id}\n")

        return stalling_resume

    Recovery._resume_streams = stalling(Recovery._resume_streams)  # type: ignore[method-assign]
    Recovery.on_recovery_completed = stalling(Recovery.on_recovery_completed)  # type: ignore[method-assign]


def patch_fetch_timeout(timeout_s: float) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    getmany = AIOKafkaConsumerThread.getmany

    async def long_getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
        return await getmany(self, active_partitions, max(timeout, timeout_s))

    AIOKafkaConsumerThread.getmany = long_getmany  # type: ignore[method-assign]


def patch_seek_pause(pause_s: float) -> None:
    from faust.transport.consumer import Consumer

    perform_seek = Consumer.perform_seek

    async def slow_perform_seek(self: Any) -> None:
        await perform_seek(self)
        await asyncio.sleep(pause_s)

    Consumer.perform_seek = slow_perform_seek  # type: ignore[method-assign]


def patch_handle_delay(delay_s: float) -> None:
    from lethe.agents import assign

    handle_change = assign.handle_change

    async def slow_handle_change(message: Any, **kwargs: Any) -> int | None:
        await asyncio.sleep(delay_s)
        return await handle_change(message, **kwargs)

    assign.handle_change = slow_handle_change  # type: ignore[assignment]


def use_stock_consumer() -> None:
    import faust

    from lethe.app import LetheApp

    LetheApp._new_transport = faust.App._new_transport  # type: ignore[method-assign]


def main() -> int:
    if stall_dir := os.environ.get("LETHE_IT_STALL_DIR"):
        patch_recovery(Path(stall_dir))
    if fetch_timeout := os.environ.get("LETHE_IT_FETCH_TIMEOUT_S"):
        patch_fetch_timeout(float(fetch_timeout))
    if seek_pause := os.environ.get("LETHE_IT_SEEK_PAUSE_S"):
        patch_seek_pause(float(seek_pause))
    if handle_delay := os.environ.get("LETHE_IT_HANDLE_DELAY_S"):
        patch_handle_delay(float(handle_delay))
    if os.environ.get("LETHE_IT_STOCK_CONSUMER") == "1":
        use_stock_consumer()
    from lethe.cli import main as lethe_main

    return lethe_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
