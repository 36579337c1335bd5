"""Faust agents (`lethe.agents`): thin loops that decode, call the policy core and produce.

Agents are registered explicitly with `install(app)` (called by
`lethe.app.create_app`) rather than discovered by import side effects: Faust's
autodiscovery binds every agent to one module-level app, which would leave a
second app built by the factory (tests, another app id) without agents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lethe.agents import change_counter

if TYPE_CHECKING:
    from lethe.app import LetheApp


def install(app: LetheApp) -> None:
    """Register every agent of the worker on `app`."""
    change_counter.install(app, app.change_topic, app.deadletters)
