"""The ``router`` command (``commands``), with its groups: ``delivery``, ``ops``, ``users``."""

from router.cli.commands import main

__all__ = ["main"]
