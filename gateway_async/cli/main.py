"""``gateway-async``: the argument parser, configuration, and the one place errors become exits.

Exit codes: 0 success; 1 an expected failure (a ``GatewayError``, a missing file, no files,
items that failed); 2 a usage or configuration error (argparse's convention); 130
interrupted (Ctrl-C); 141 stdout closed early (``| head``), silently.
Expected errors print one line to stderr, never a traceback (``-v`` adds debug logs), and
name CLI flags (``--scope``), never the SDK's argument names (``scope=``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from .. import (
    APITimeoutError,
    ConfigurationError,
    Gateway,
    GatewayError,
    InvalidRequestError,
    JournalError,
    Timeouts,
)
from .._version import __version__
from ._common import PROG, UsageError, error_line

__all__ = ["UsageError", "build_parser", "flag_message", "gateway_from", "main"]

ENV_KEY, ENV_URL = "GATEWAY_API_KEY", "GATEWAY_BASE_URL"
NO_RICH = "the command line needs rich: pip install 'gateway-async[cli]'"
_KWARG = re.compile(r"\b([a-z][a-z0-9_]*)=(?:True\b)?")
_LEADING_FIELD = re.compile(r"^([a-z][a-z0-9_]*):")
_CREDIT = Decimal("0.0001")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the flag, as the CLI's own are
    (argparse prints its whole usage block first), exit 2."""

    def error(self, message: str) -> NoReturn:
        text = message.removeprefix("argument ")
        self.exit(2, f"{error_line(text)} (see: {self.prog} --help)\n")


def flag_message(message: object) -> str:
    """An SDK message in CLI words: ``scope: pass scope='x'`` -> ``--scope: pass --scope 'x'``,
    ``allow_insecure_http=True`` -> ``--allow-insecure-http``."""
    text = _LEADING_FIELD.sub(lambda m: _flag(m[1]) + ":", str(message))
    return _KWARG.sub(lambda m: _flag(m[1]) + ("" if m[0].endswith("True") else " "), text)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text!r}")
    try:  # credits have 4 decimals: 1e999999 has more digits than a Decimal holds, and
        value.quantize(_CREDIT)  # dividing it by a price overflowed (a traceback)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"too large a number of credits: {text:.40}") from None
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return value


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON (one line per item for upload and index) instead of tables",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log requests to stderr (the key is masked)",
    )


def _globals(*, connect: bool = True) -> argparse.ArgumentParser:
    """Flags accepted before or after the command (SUPPRESS: a later default never wins)."""
    common = argparse.ArgumentParser(add_help=False)
    if connect:
        common.add_argument(
            "--api-key", default=argparse.SUPPRESS, help=f"API key (default: ${ENV_KEY})"
        )
        common.add_argument(
            "--base-url", default=argparse.SUPPRESS, help=f"Gateway URL (default: ${ENV_URL})"
        )
        common.add_argument(
            "--timeout",
            type=_seconds,
            default=argparse.SUPPRESS,
            help="seconds each call may take, retries included (default: 300)",
        )
        common.add_argument(
            "--max-retries",
            type=_count,
            default=argparse.SUPPRESS,
            help="retries of a failed call (default: 2; 0: fail at once)",
        )
        common.add_argument(
            "--allow-insecure-http",
            action="store_true",
            default=argparse.SUPPRESS,
            help="allow a plain http:// URL to a host other than loopback",
        )
    _output_flags(common)
    return common


def _ingest_flags(parser: argparse.ArgumentParser, concurrency: int, what: str) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument("--glob", default="*", help="only files whose name matches (default: *)")
    parser.add_argument(
        "--concurrency", type=_positive, default=concurrency, help=f"{what} at once"
    )


def build_parser() -> argparse.ArgumentParser:
    common = _globals()
    # Typed as argparse's: subcommands are made with type(parser), so they are _Parsers too.
    parser: argparse.ArgumentParser = _Parser(
        prog=PROG, parents=[common], description="The Gateway from the command line."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, parents: Sequence[argparse.ArgumentParser] = (common,)
    ) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=list(parents), help=help, description=help)

    models = command("models", "browse the marketplace")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = msub.add_parser("list", parents=[common], help="list models")
    listing.add_argument("--q", help="only models matching this text")
    shown = msub.add_parser("show", parents=[common], help="show one model")
    shown.add_argument("slug", help="the model's slug, e.g. demo-image-embed")

    run = command("run", "run a model once")
    run.add_argument("model", help="the model's slug")
    run.add_argument("--input", required=True, help="the input, as a JSON object")
    run.add_argument("--mode", default="execute", help="execute (default), index or search")
    run.add_argument("--scope", help="the vector scope (index and search modes)")
    run.add_argument("--params", help="params, as a JSON object")

    upload = command("upload", "upload files (directories are walked)")
    _ingest_flags(upload, 8, "uploads")
    upload.add_argument(
        "--journal", help="SQLite journal: a rerun skips files uploaded before (shared with index)"
    )
    upload.add_argument(
        "--job", help="name the uploads by content: a rerun of the job sends no byte again"
    )

    index = command("index", "upload files and index each one into a scope")
    _ingest_flags(index, 32, "runs")
    index.add_argument("--model", required=True, help="a model that takes media")
    index.add_argument("--scope", required=True, help="the vector scope to index into")
    index.add_argument("--mode", default="index", help="run mode (default: index)")
    index.add_argument("--journal", help="SQLite journal: resume, skip what is done")
    index.add_argument(
        "--job",
        help="name the work (e.g. photos-2026-12): a rerun from any machine, even without "
        "the journal, uploads and executes nothing twice (for 24 h)",
    )
    index.add_argument("--max-spend", type=_decimal, help="credits this command may spend")
    index.add_argument("--input-field", help="input field that takes the media_ref")

    search = command("search", "search a scope by text or by a file")
    search.add_argument("--model", required=True, help="the model the scope was indexed with")
    search.add_argument("--scope", required=True, help="the vector scope to search")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="search by this text (text models)")
    query.add_argument("--file", help="search by this file (media models)")
    search.add_argument("--top-k", type=_positive, default=5, help="matches to show")

    command("wallet", "show the wallet balance")
    usage = command("usage", "show the usage summary")
    usage.add_argument("--start", help="RFC 3339 time (UTC if no offset)")
    usage.add_argument("--end", help="RFC 3339 time (UTC if no offset)")

    command("emulator", "run the local Gateway emulator (see: emulator --help)", parents=())
    demo = command(
        "demo",
        "index sample images into an in-process emulator and search them",
        parents=[_globals(connect=False)],
    )
    demo.add_argument("--media", help="folder for the sample PNGs (default: a temp folder)")
    return parser


def gateway_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Gateway:
    """A Gateway from flags, then the environment; a UsageError names what is missing."""
    env = os.environ if env is None else env
    key = getattr(args, "api_key", None) or env.get(ENV_KEY)
    url = getattr(args, "base_url", None) or env.get(ENV_URL)
    missing = [
        what
        for what, value in (
            (f"API key (--api-key or {ENV_KEY})", key),
            (f"Gateway URL (--base-url or {ENV_URL})", url),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}")
    insecure = bool(getattr(args, "allow_insecure_http", False))
    options: dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        # One attempt may use the whole deadline: --timeout 600 means 600 s for a slow run.
        options["timeout"] = Timeouts(total=args.timeout, attempt=args.timeout)
    if getattr(args, "max_retries", None) is not None:
        options["max_retries"] = args.max_retries
    return Gateway(api_key=key, base_url=url, allow_insecure_http=insecure, **options)


def _configure_logging(verbose: bool) -> None:
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log = logging.getLogger("gateway_async")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def _fail(message: object, code: int) -> int:
    print(error_line(message), file=sys.stderr)
    return code


def _parse(argv: list[str]) -> argparse.Namespace | int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    for name in ("api_key", "base_url", "timeout", "max_retries"):
        if not hasattr(args, name):  # flags given nowhere
            setattr(args, name, None)
    for name in ("allow_insecure_http", "json", "verbose"):
        if not hasattr(args, name):
            setattr(args, name, False)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "emulator" in argv and all(a.startswith("-") for a in argv[: argv.index("emulator")]):
        return _emulator(argv[argv.index("emulator") + 1 :])
    try:
        import rich  # noqa: F401  (the `cli` extra)
    except ImportError:
        return _fail(NO_RICH, 2)
    args = _parse(argv)
    if isinstance(args, int):
        return args
    args.argv = argv  # for the exact command to rerun
    _configure_logging(args.verbose)
    try:
        return asyncio.run(_dispatch(args))
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return _interrupted(args)
    except (UsageError, ConfigurationError, InvalidRequestError) as exc:
        return _fail(flag_message(exc), 2)
    except APITimeoutError as exc:  # names the deadline, and --timeout to change it
        return _fail(flag_message(exc), 1)
    except (GatewayError, OSError) as exc:
        if _journal_refused(exc):  # the flag the user typed, then what is wrong with it
            return _fail(f"--journal: {exc}", 2)
        return _fail(exc, 1)


def _journal_refused(exc: BaseException) -> bool:
    """A journal that cannot be used (damaged, another's, locked) is a usage error: exit 2."""
    return isinstance(exc, JournalError)


def _quiet_broken_pipe() -> int:
    """The reader went away (``| head -1``): stop silently, as a SIGPIPE'd tool would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush cannot fail
    return 141


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: a newline after the ^C, what was done, and how to resume (exit 130)."""
    report: Callable[[], list[str]] = getattr(args, "interrupted_report", list)
    lines = ["", f"{PROG}: interrupted", *report()]
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 130


def _emulator(argv: list[str]) -> int:
    from ..emulator.cli import main as emulator_main

    return emulator_main(argv)


async def _dispatch(args: argparse.Namespace) -> int:
    from . import commands

    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(args)
    handlers: dict[str, Callable[[Gateway, argparse.Namespace], Awaitable[int]]] = {
        "models": commands.models,
        "run": commands.run,
        "upload": commands.upload,
        "index": commands.index,
        "search": commands.search,
        "wallet": commands.wallet,
        "usage": commands.usage,
    }
    async with gateway_from(args) as gw:
        return await handlers[args.command](gw, args)
