"""The commands, grouped by what they touch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from retention.cli.app import App
from retention.core.times import parse_time


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`-c/--config` after the command name too (`retention sweep -c f`)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(App).config = value

    return click.option(
        "-c",
        "--config",
        metavar="FILE",
        expose_value=False,
        callback=remember,
        is_eager=True,
        help="retention.yaml (default: $RETENTION_CONFIG, then ./retention.yaml).",
    )(func)


def parse_optional_time(value: str | None, name: str) -> Any:
    """Parse an optional --since/--until."""
    return parse_time(value, field=name) if value else None


TIME_HELP = "RFC 3339, a date (midnight UTC) or unix seconds"
