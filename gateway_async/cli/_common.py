"""What every CLI module shares, with no import of rich or of the other CLI modules (so
``main`` can report a missing rich, and ``commands`` never imports ``main``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["MAX_LINE", "UsageError", "on_interrupt", "one_line"]

MAX_LINE = 300  # characters of one error line


class UsageError(Exception):
    """The command line cannot work as given (exit 2)."""


def one_line(value: object) -> str:
    """Text on one line (a storage error's XML body has many), at most MAX_LINE long."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def on_interrupt(args: argparse.Namespace, lines: Callable[[], list[str]]) -> None:
    """What to print if Ctrl-C stops the command: ``lines()`` is called then, not now."""
    args.interrupted_report = lines
