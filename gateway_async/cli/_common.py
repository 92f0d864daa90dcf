"""What every CLI module shares, with no import of rich or of the other CLI modules (so
``main`` can report a missing rich, and ``commands`` never imports ``main``)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable

__all__ = ["MAX_LINE", "PROG", "UsageError", "error_line", "on_interrupt", "one_line", "rerun"]

PROG = "gateway-async"
MAX_LINE = 300  # characters of one error line
# An S3-style error body: what matters of it is the Code and the Message.
_S3_ERROR = re.compile(
    r"(?:<\?xml[^>]*>\s*)?<Error>.*?<Code>(?P<code>[^<]*)</Code>"
    r"(?:.*?<Message>(?P<message>[^<]*)</Message>)?.*?</Error>",
    re.DOTALL,
)
# The API's hints name its routes; the CLI user has a command for them.
# Only the listing route itself: ``GET /api/marketplace/models/<slug>`` is not a listing.
_ROUTES = {
    re.compile(r"GET /api/marketplace/models(?![/?\w])"): "`gateway-async models list`",
}


class UsageError(Exception):
    """The command line cannot work as given (exit 2)."""


def one_line(value: object) -> str:
    """Text on one line, at most MAX_LINE long: a storage error's XML body becomes its
    ``Code: Message``, an API route in a hint becomes the command that does it."""
    text = _S3_ERROR.sub(_s3_summary, str(value))
    for route, command in _ROUTES.items():
        text = route.sub(command, text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def _s3_summary(match: re.Match[str]) -> str:
    code, message = match["code"].strip(), (match["message"] or "").strip()
    return f"{code}: {message}" if message else code


def error_line(message: object) -> str:
    """How every expected failure is told: one line on stderr."""
    return f"{PROG}: error: {one_line(message)}"


def rerun(args: argparse.Namespace) -> str:
    """The command line as the user typed it, to run again; a key typed on it is not
    repeated (it would land in the terminal's scrollback and the shell's history)."""
    argv: list[str] = list(getattr(args, "argv", []))
    shown, hide = [], False
    for token in argv:
        if hide:
            shown.append("<your key>")
        elif token.startswith("--api-key="):
            token = "--api-key=<your key>"
            shown.append(token)
        else:
            shown.append(token)
        hide = token == "--api-key"
    return shlex.join([PROG, *shown])


def on_interrupt(args: argparse.Namespace, lines: Callable[[], list[str]]) -> None:
    """What to print if Ctrl-C stops the command: ``lines()`` is called then, not now."""
    args.interrupted_report = lines
