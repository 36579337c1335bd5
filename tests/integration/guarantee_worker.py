"""`lethe worker` with a processing guarantee and a forwarding delay the test chooses
(test_takeover.py).

Usage: python tests/integration/guarantee_worker.py <lethe worker arguments>

LETHE_IT_PROCESSING_GUARANTEE=exactly_once builds the app with Faust's
`processing_guarantee="exactly_once"` instead of Lethe's at-least-once, to see what the
tests catch with it. LETHE_IT_FORWARD_LINGER_MS holds the assign agent's forwards that long
in its producer (`lethe.forwarding`, librdkafka's linger.ms) before they go to the broker,
as when the broker is slow to take them.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def use_processing_guarantee(guarantee: str) -> None:
    from lethe.app import LetheApp

    init = LetheApp.__init__

    def init_with_guarantee(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "processing_guarantee": guarantee})

    LetheApp.__init__ = init_with_guarantee  # type: ignore[method-assign]


def hold_forwards(linger_ms: int) -> None:
    from lethe import forwarding

    forwarding.PRODUCER_CONFIG["linger.ms"] = linger_ms


def main() -> int:
    if guarantee := os.environ.get("LETHE_IT_PROCESSING_GUARANTEE"):
        use_processing_guarantee(guarantee)
    if linger := os.environ.get("LETHE_IT_FORWARD_LINGER_MS"):
        hold_forwards(int(linger))
    from lethe.cli import main as lethe_main

    return lethe_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
