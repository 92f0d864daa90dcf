"""``python -m gateway_async`` and the ``gateway-async`` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import _startup


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (imported only now, so ``import gateway_async`` never loads it).

    A Ctrl-C before the CLI's own handling starts (while it imports rich and its commands,
    or parses) exits 130 quietly too; the CLI reports what was done once it runs.
    """
    try:
        _startup.release()
        from .cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:
        print("\ngateway-async: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
