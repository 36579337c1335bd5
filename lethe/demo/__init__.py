"""The demo: a few thousand invented rows in the demo database, the worker on an accelerated
clock, and a live summary of what it tracks, finds due and issues (`lethe demo`)."""

DEFAULT_SECONDS_PER_YEAR = 60.0
"""Wall seconds per year of the demo's enforcement clock (LETHE_CLOCK_SPEED=525600)."""
