"""structlog set-up: JSON lines (or a console view on a terminal), secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never let `value` reach a log line, whatever field it hides in."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redacting(renderer: Any) -> Any:
    """Wrap the final renderer: the rendered line is redacted, the last guard before output
    (one string search per secret, whatever the event's shape)."""

    def render(logger: Any, method: str, event_dict: dict[str, Any]) -> Any:
        return redact(renderer(logger, method, event_dict))

    return render


def configure(
    stream: TextIO | None = None, *, level: str = "info", json: bool | None = None
) -> None:
    """Send structured logs to `stream` (stderr by default) as JSON, or pretty on a terminal."""
    stream = stream or sys.stderr
    use_json = json if json is not None else not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="logged_at"),
            structlog.processors.format_exc_info,
            redacting(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "retention") -> Any:
    """A bound structlog logger."""
    return structlog.get_logger(name)
