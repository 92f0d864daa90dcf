"""Command line: ``python -m gateway_async.emulator`` (and ``gateway-async emulator``).

Serves until SIGINT or SIGTERM. Binds loopback unless ``--allow-remote`` is given: the
emulator has a well-known default key and no TLS, so exposing it is a deliberate choice.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys

from ._emulator import DEFAULT_API_KEY, Emulator
from ._faults import Faults
from ._wire import parse_credits

_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def byte_size(text: str) -> int:
    """``"64MiB"``, ``"5242880"``, ``"1GiB"``... as a byte count."""
    number = text.rstrip("KMGiBkmgb")
    unit = text[len(number) :].lower()
    if not number.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64MiB, 5000000)")
    return int(number) * _UNITS[unit]


def _faults(text: str) -> Faults:
    try:
        return Faults.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workspaces(pairs: list[str] | None, api_keys: list[str] | None) -> dict[str, list[str]] | None:
    """``--workspace NAME=KEY`` flags grouped by name (ValueError naming the bad one)."""
    if not pairs:
        return None
    if api_keys:
        raise ValueError("--api-key and --workspace do not mix: give every key a workspace")
    workspaces: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, key = pair.partition("=")
        if not sep or not name or not key:
            raise ValueError(f"--workspace {pair!r}: expected NAME=KEY")
        workspaces.setdefault(name, []).append(key)
    return workspaces


def build_parser() -> argparse.ArgumentParser:
    """The emulator's argument parser."""
    parser = argparse.ArgumentParser(
        prog="gateway-async emulator", description="Run a local Gateway emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8080, help="API port (0 = any free port)")
    parser.add_argument("--storage-port", type=int, default=0, help="storage listener port")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key, repeatable (default {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--workspace",
        action="append",
        dest="workspaces",
        metavar="NAME=KEY",
        help="a workspace and one of its API keys, repeatable (separate wallets, uploads, "
        "media, indexes, usage); instead of --api-key",
    )
    parser.add_argument("--data-dir", help="keep media and state here across restarts")
    parser.add_argument("--faults", type=_faults, help='e.g. "503=0.1,429=0.05,latency=0-0.02"')
    parser.add_argument(
        "--balance",
        default="100.0000",
        help="initial wallet balance in credits (at most 4 decimals)",
    )
    parser.add_argument(
        "--multipart-threshold",
        type=byte_size,
        help="answer init with parts (contract v2) above this size, e.g. 64MiB",
    )
    parser.add_argument(
        "--multipart-part-size",
        type=byte_size,
        default=64 * 1024**2,
        help="part size of multipart uploads (at least 5MiB; default 64MiB)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="close a request whose headers take, or whose body stalls, this long (default 60)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding an address other than loopback"
    )
    return parser


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(emulator: Emulator) -> None:
    async with emulator:
        print(
            f"Gateway emulator running (Ctrl+C to stop)\nbase URL: {emulator.base_url}\n"
            f"storage URL: {emulator.storage_url}\nAPI key: {emulator.api_key}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    print("Gateway emulator stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # one line naming the flag (not argparse's usage), exit 2
        balance = parse_credits(args.balance, "--balance")
        workspaces = _workspaces(args.workspaces, args.api_keys)
    except ValueError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        if not args.allow_remote:
            print(
                f"refusing to bind {args.host}: not a loopback address. The emulator has no "
                "TLS and a well-known key; pass --allow-remote to bind it anyway.",
                file=sys.stderr,
            )
            return 2
        print(
            f"WARNING: binding {args.host}: anyone who can reach it can use the emulator.",
            file=sys.stderr,
            flush=True,
        )
    try:  # e.g. a workspace name the emulator refuses
        emulator = Emulator(
            host=args.host,
            port=args.port,
            storage_port=args.storage_port,
            api_keys=args.api_keys or (DEFAULT_API_KEY,),
            workspaces=workspaces,
            data_dir=args.data_dir,
            initial_balance=balance,
            faults=args.faults,
            multipart_threshold=args.multipart_threshold,
            multipart_part_size=args.multipart_part_size,
            idle_timeout=args.idle_timeout,
        )
    except ValueError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(emulator))
    except OSError as exc:
        print(f"cannot start the emulator: {exc}", file=sys.stderr)
        return 1
    return 0
