"""How the worker's consumer hands each fetched record to the streams (`Consumer.hand_over`):
as Faust's `wait_first(callback(record), suspend_flow.wait())` does, whether the callback
completes at once or has to wait.

No broker: the callbacks stand for Faust's conductor (`on_message`), which puts the record in
a stream's buffer, or waits while the buffer is full or the flow is stopped. The broker path
is every integration test that runs a worker (tests/integration/test_rebalance.py for a
rebalance while the loop stalls).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from lethe.consumer import Consumer


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """The test coroutine run in an event loop of its own."""

    @functools.wraps(test)
    def running(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return running


def consumer() -> Consumer:
    """A consumer with Faust's flow events, nothing else (no transport, no broker)."""
    made = Consumer.__new__(Consumer)
    made.suspend_flow = asyncio.Event()
    made._stopped = asyncio.Event()
    made._crashed = asyncio.Event()
    made._loop = asyncio.get_running_loop()
    return made


@run
async def test_records_that_go_straight_in_are_delivered_in_order() -> None:
    delivered: list[int] = []

    async def into_buffer(message: Any) -> None:
        delivered.append(message)

    handing = consumer()
    for offset in range(5):
        await handing.hand_over(into_buffer, offset)
    assert delivered == [0, 1, 2, 3, 4]


@run
async def test_a_record_waiting_for_room_is_delivered_once_there_is_room() -> None:
    room = asyncio.get_running_loop().create_future()
    delivered: list[str] = []

    async def full_buffer(message: Any) -> str:
        delivered.append(f"waiting {message}")
        await room
        delivered.append(f"put {message}")
        return "done"

    handing = consumer()
    task = asyncio.ensure_future(handing.hand_over(full_buffer, 7))
    await asyncio.sleep(0.01)
    assert not task.done()
    assert delivered == ["waiting 7"]
    room.set_result(None)
    await asyncio.wait_for(task, 1)
    assert delivered == ["waiting 7", "put 7"]


@run
async def test_a_waiting_record_is_given_up_when_the_flow_is_suspended() -> None:
    """A rebalance stops the flow: as with Faust, the hand-over returns and the callback is
    cancelled (the record is fetched again after the rebalance's seek)."""
    seen: list[str] = []
    never = asyncio.get_running_loop().create_future()

    async def blocked(message: Any) -> None:
        try:
            await never
            seen.append("put")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    handing = consumer()
    task = asyncio.ensure_future(handing.hand_over(blocked, 1))
    await asyncio.sleep(0.01)
    handing.suspend_flow.set()
    await asyncio.wait_for(task, 1)
    await asyncio.sleep(0)
    assert seen == ["cancelled"]


@run
async def test_while_the_flow_is_suspended_the_callback_is_not_run_to_completion() -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def waits_for_flow(message: Any) -> None:
        await gate.wait()
        seen.append("put")

    handing = consumer()
    handing.suspend_flow.set()
    await asyncio.wait_for(handing.hand_over(waits_for_flow, 1), 1)
    gate.set()
    await asyncio.sleep(0.01)
    assert seen == []


@pytest.mark.parametrize("waits_first", [False, True])
@run
async def test_a_failing_callback_raises_out_of_the_hand_over(waits_first: bool) -> None:
    async def failing(message: Any) -> None:
        if waits_first:
            await asyncio.sleep(0)
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await asyncio.wait_for(consumer().hand_over(failing, 1), 1)
