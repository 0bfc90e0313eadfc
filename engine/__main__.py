"""``python -m engine`` (console script ``hookloop``): subcommands ``fit``, ``validate``, ``test``, ``plugins``."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each subcommand's module adds its own arguments."""
    from hookloop.engine import cli, listing

    parser = argparse.ArgumentParser(
        prog="hookloop",
        description="hookloop: an event-driven training engine for PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cli.add_subcommands(sub)
    listing.add_subcommand(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m engine`` and the ``hookloop`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Subcommands that parse their own flags (fit/validate/test) get the rest of the line.
    args, rest = parser.parse_known_args(argv)
    try:
        return int(args.run(args, rest, parser) or 0)
    except KeyboardInterrupt:  # Ctrl-C: the plugins already ran on_exception; no traceback for it
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
