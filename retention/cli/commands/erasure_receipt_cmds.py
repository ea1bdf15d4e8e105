"""`retention erasure receipt` and `erasure verify-receipt`: the bundle a data subject checks."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
