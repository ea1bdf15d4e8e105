"""`retention erase` and `retention erasure status|ls`: a data subject's erasure requests."""

from __future__ import annotations

import click


@click.group()
def erasure() -> None:
    """Erasure requests by data subject: their progress and their receipts."""


COMMANDS: list[click.Command] = [erasure]
