"""Secrets out of the worker's log, whichever library writes the line.

Lethe never logs a secret itself (`lethe.settings.Secret` prints stars), but a library might:
aiokafka, at debug level, logs every request it sends, and with SASL PLAIN one of them holds
the password. `redact_secrets(settings)` puts a `SecretFilter` on every handler of the root
logger, which replaces each secret of the settings (as text, and as Python writes it inside
a bytes repr) with `********` in the message and the traceback of every record it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from lethe.settings import Settings

REDACTED = "********"


class SecretFilter(logging.Filter):
    """Rewrites a record that holds one of `secrets` with stars in its place; drops nothing."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms.add(secret)
                forms.add(repr(secret.encode())[2:-1])
                forms.add(repr(secret)[1:-1])
        self.forms = sorted(forms, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(form in message for form in self.forms):
            record.msg = self._redacted(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and any(form in record.exc_text for form in self.forms):
            record.exc_text = self._redacted(record.exc_text)
        return True

    def _redacted(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, REDACTED)
        return text


def redact_secrets(settings: Settings, logger: logging.Logger | None = None) -> SecretFilter:
    """Put a `SecretFilter` of the settings' secrets on every handler of `logger` (the root
    logger by default); return it."""
    secret_filter = SecretFilter(settings.secret_values())
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)
    return secret_filter
