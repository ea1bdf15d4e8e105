"""structlog set-up: JSON lines (or a console view on a terminal), secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from retention.redaction import REDACTED, redact, register_secret

__all__ = ["REDACTED", "configure", "get_logger", "redact", "redacting", "register_secret"]


def redacting(renderer: Any) -> Any:
    """Wrap the final renderer: the rendered line is redacted, the last guard before output
    (one string search per form of each secret: raw, and as JSON or repr escape it, so a key
    holding `"` or `\\` is caught in the line as rendered)."""

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
