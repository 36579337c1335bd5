"""The demo: a few thousand invented rows in the demo database, the worker on an accelerated
clock, and a live summary of what it tracks, finds due and issues (`lethe demo`)."""
