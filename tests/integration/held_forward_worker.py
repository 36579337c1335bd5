"""`lethe worker` whose forwards are held in its producer (test_forwarding.py).

Usage: python tests/integration/held_forward_worker.py <lethe worker arguments>

LETHE_IT_FORWARD_LINGER_MS sets the forwarding producer's linger.ms (`lethe.forwarding`): with
a long one, the records the assign agent forwards wait in the producer's queue, undelivered,
while the agent goes on and Faust tries to commit.
LETHE_IT_COMMIT_UNSETTLED=1 commits without waiting for the forwarder's deliveries, to see what
the test catches without that wait.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main() -> int:
    from lethe import forwarding

    if linger := os.environ.get("LETHE_IT_FORWARD_LINGER_MS"):
        forwarding.PRODUCER_CONFIG["linger.ms"] = int(linger)
    if os.environ.get("LETHE_IT_COMMIT_UNSETTLED") == "1":
        from faust.transport.drivers.aiokafka import Consumer as FaustConsumer

        from lethe.consumer import Consumer

        async def commit_unsettled(self: Any, offsets: Any) -> bool:
            return bool(await FaustConsumer._commit(self, offsets))

        Consumer._commit = commit_unsettled  # type: ignore[method-assign]
    from lethe.cli import main as lethe_main

    return lethe_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
