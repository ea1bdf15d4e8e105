"""The commands, grouped by what they touch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from retention.cli.app import App


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
