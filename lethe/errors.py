"""One exception root for everything Lethe raises on purpose."""


class LetheError(Exception):
    """Root of Lethe's own errors."""


class ConfigError(LetheError):
    """The configuration or environment is wrong: fix it and restart."""


class StackError(LetheError):
    """A part of the local stack is missing, not starting or not healthy."""


class ClockError(LetheError):
    """The enforcement clock cannot do what was asked (it never moves back)."""
