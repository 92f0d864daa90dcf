"""``gateway-async``: the argument parser, configuration, and the one place errors become exits.

Exit codes: 0 success; 1 an expected failure (a ``GatewayError``, a missing file, items
that failed); 2 a usage or configuration error (argparse's convention); 130 interrupted.
Expected errors print one line to stderr, never a traceback (``-v`` adds debug logs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from .. import ConfigurationError, Gateway, GatewayError
from .._version import __version__

__all__ = ["UsageError", "build_parser", "gateway_from", "main"]

PROG = "gateway-async"
ENV_KEY, ENV_URL = "GATEWAY_API_KEY", "GATEWAY_BASE_URL"


class UsageError(Exception):
    """The command line cannot work as given (exit 2)."""


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text!r}")
    return value


def _globals() -> argparse.ArgumentParser:
    """Flags accepted before or after the command (SUPPRESS: a later default never wins)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-key", default=argparse.SUPPRESS, help=f"(default: ${ENV_KEY})")
    common.add_argument("--base-url", default=argparse.SUPPRESS, help=f"(default: ${ENV_URL})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _globals()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common], description="The Gateway from the command line."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help, description=help)

    models = command("models", "browse the marketplace")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", parents=[common], help="list models").add_argument("--q")
    msub.add_parser("show", parents=[common], help="show one model").add_argument("slug")

    run = command("run", "run a model once")
    run.add_argument("model")
    run.add_argument("--input", required=True, help="the input, as JSON")
    run.add_argument("--mode", default="execute")
    run.add_argument("--scope")
    run.add_argument("--params", help="params, as a JSON object")

    upload = command("upload", "upload files (directories are walked)")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--glob", default="*", help="only files whose name matches")
    upload.add_argument("--concurrency", type=int, default=8)

    index = command("index", "upload files and index each one into a scope")
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--model", required=True)
    index.add_argument("--scope", required=True)
    index.add_argument("--mode", default="index")
    index.add_argument("--glob", default="*", help="only files whose name matches")
    index.add_argument("--journal", help="SQLite journal: resume, skip what is done")
    index.add_argument("--max-spend", type=_decimal, help="credits this command may spend")
    index.add_argument("--input-field", help="input field that takes the media_ref")
    index.add_argument("--concurrency", type=int, default=32, help="runs at once")

    search = command("search", "search a scope by text or by a file")
    search.add_argument("--model", required=True)
    search.add_argument("--scope", required=True)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text")
    query.add_argument("--file")
    search.add_argument("--top-k", type=int, default=5)

    command("wallet", "show the wallet balance")
    usage = command("usage", "show the usage summary")
    usage.add_argument("--start", help="RFC 3339 time (UTC if no offset)")
    usage.add_argument("--end", help="RFC 3339 time (UTC if no offset)")

    command("emulator", "run the local Gateway emulator (see: emulator --help)")
    demo = command("demo", "index sample images into an in-process emulator and search them")
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
    return Gateway(api_key=key, base_url=url)


def _configure_logging(verbose: bool) -> None:
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log = logging.getLogger("gateway_async")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def _fail(message: object, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "emulator" in argv and all(a.startswith("-") for a in argv[: argv.index("emulator")]):
        return _emulator(argv[argv.index("emulator") + 1 :])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    for name in ("api_key", "base_url", "json", "verbose"):  # flags given nowhere
        if not hasattr(args, name):
            setattr(args, name, None if name in ("api_key", "base_url") else False)
    _configure_logging(args.verbose)
    try:
        return asyncio.run(_dispatch(args))
    except (UsageError, ConfigurationError) as exc:
        return _fail(exc, 2)
    except (GatewayError, OSError) as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
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
