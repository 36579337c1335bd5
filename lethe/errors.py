"""One exception root for everything Lethe raises on purpose.

`retriable` tells a caller whether trying the same thing again may succeed
(a broker or service not up yet) or whether the input or setup must change.
"""


class LetheError(Exception):
    """Root of Lethe's own errors."""

    retriable: bool = False


class ConfigError(LetheError):
    """The configuration or environment is wrong: fix it and restart."""


class StackError(LetheError):
    """A part of the local stack is missing, not starting or not healthy."""

    retriable = True
