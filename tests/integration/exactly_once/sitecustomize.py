"""Every Python process started with this directory on PYTHONPATH and
LETHE_IT_PROCESSING_GUARANTEE set builds its Lethe app with Faust's `processing_guarantee`
of that value: the workers the integration tests start included, whatever command starts
them. To measure what Faust's exactly_once does under the fault tests (docs/reliability.md):

    PYTHONPATH=tests/integration/exactly_once LETHE_IT_PROCESSING_GUARANTEE=exactly_once \\
      .venv/bin/pytest tests/integration/test_takeover.py -s -p no:cacheprovider
"""

from __future__ import annotations

import os
from typing import Any

if guarantee := os.environ.get("LETHE_IT_PROCESSING_GUARANTEE"):
    from lethe.app import LetheApp

    _init = LetheApp.__init__

    def _init_with_guarantee(self: Any, *args: Any, **kwargs: Any) -> None:
        _init(self, *args, **{**kwargs, "processing_guarantee": guarantee})

    LetheApp.__init__ = _init_with_guarantee  # type: ignore[method-assign]
