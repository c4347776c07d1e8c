"""``flask alipay ...``: registered through the ``flask.commands`` entry point.

A plain click group, not an AppGroup: ``flask alipay emulator`` must work in any
folder, before an app or a key exists.
"""

from __future__ import annotations

import click

from .testing.cli import emulator_command

__all__ = ["alipay"]


@click.group("alipay")
def alipay() -> None:
    """Sign in with Alipay: a local emulator, keys and config checks."""


alipay.add_command(emulator_command)
