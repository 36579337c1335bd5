"""An agent that raised on a record: the worker's consumer commits nothing from then on, and
the log says where it failed and what to do (row 7 of the fault matrix; the broker path, a
worker that exits 1 and a successor that processes the record, is
tests/integration/test_agent_failure.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from lethe.consumer import Consumer

CUSTOMERS = TP("hosting.public.customers", 0)


def test_after_an_agent_failure_nothing_is_committed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    committed: list[Any] = []

    async def faust_commit(_consumer: Any, offsets: Any) -> bool:
        committed.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", faust_commit)
    consumer = Consumer.__new__(Consumer)
    consumer.app = SimpleNamespace()  # type: ignore[assignment]

    async def scenario() -> tuple[bool, bool]:
        before = await consumer._commit({CUSTOMERS: 5})
        with caplog.at_level("CRITICAL", logger="lethe.consumer"):
            await consumer.on_task_error(RuntimeError("a value 'alice@example.org'"))
        after = await consumer._commit({CUSTOMERS: 7})
        return before, after

    assert asyncio.run(scenario()) == (True, False)
    assert committed == [{CUSTOMERS: 5}], "nothing committed after the failure"
    assert "An agent failed outside any record with RuntimeError" in caplog.text
    assert "restart it" in caplog.text
    assert "alice@example.org" not in caplog.text, "the exception's message may hold a value"
