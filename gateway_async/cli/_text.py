"""Plain-text helpers the CLI needs even when rich is missing (to say so in one line)."""

from __future__ import annotations

__all__ = ["MAX_LINE", "one_line"]

MAX_LINE = 300  # characters of one error line


def one_line(value: object) -> str:
    """Text on one line (a storage error's XML body has many), at most MAX_LINE long."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."
