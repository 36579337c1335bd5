"""`lethe worker` whose assign agent fails on one record, as a bug would (test_agent_failure.py).

Usage: python tests/integration/failing_worker.py <lethe worker arguments>

The change record keyed `{"id":666}` makes the assign agent raise RuntimeError (outside the
decoding, which turns its own errors into dead letters): what a bug in Lethe, or a broken
disk under RocksDB, would do.
"""

from __future__ import annotations

import sys
from typing import Any

FAILING_KEY = b'{"id":666}'


def main() -> int:
    from lethe.agents import assign

    handle_change = assign.handle_change

    async def failing(message: Any, **kwargs: Any) -> Any:
        if message.key == FAILING_KEY:
            raise RuntimeError("injected failure")
        return await handle_change(message, **kwargs)

    assign.handle_change = failing  # type: ignore[assignment]
    from lethe.cli import main as lethe_main

    return lethe_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
