"""A Ctrl-C while ``gateway-async`` starts exits 130 quietly, not with a traceback.

Importing the SDK (aiohttp) is most of the command line's start-up, and it runs before any
CLI code can catch ``KeyboardInterrupt``: ``python -m gateway_async`` and the console script
both import this package first. So only in a process started as the CLI, a SIGINT during
that import ends it at once with 130, as an interrupted command does; ``__main__`` gives
Ctrl-C back to Python (``release``) before the CLI runs. A program that merely imports the
SDK keeps its own SIGINT handling.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

__all__ = ["guard", "release", "started_as_cli"]

_guarding = False


def started_as_cli(argv: Sequence[str], orig_argv: Sequence[str]) -> bool:
    """``python [options] -m gateway_async ...`` (``argv[0]`` is ``-m`` while the package
    imports), or the ``gateway-async`` console script run by the interpreter itself (not a
    child that inherited its ``sys.argv``, as multiprocessing's spawn does)."""
    if argv[:1] == ["-m"]:
        return "-m" in orig_argv and orig_argv[orig_argv.index("-m") + 1 :][:1] == [__package__]
    if not argv or list(argv[:1]) != list(orig_argv[1:2]):
        return False
    return os.path.splitext(os.path.basename(argv[0]))[0] == "gateway-async"


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"\ngateway-async: interrupted\n")
    os._exit(130)  # mid-import: nothing is open or half-written yet


def guard() -> None:
    """Run on import (``__init__`` imports this first): in the CLI's process, Ctrl-C exits
    130 until ``release``."""
    global _guarding
    if started_as_cli(sys.argv, getattr(sys, "orig_argv", ())):
        signal.signal(signal.SIGINT, _exit_interrupted)
        _guarding = True


def release() -> None:
    """Python's own Ctrl-C (``KeyboardInterrupt``) again, for the CLI to handle."""
    global _guarding
    if _guarding:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _guarding = False


guard()
