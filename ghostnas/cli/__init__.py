"""The ``ghostnas`` command line: a table of small subcommands, each a thin call into the library.

Every user mistake surfaces as a :class:`~ghostnas.errors.GhostnasError` (or an argparse error)
and is printed as one line on stderr with exit status 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ghostnas.errors import GhostnasError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line that says where to look, with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from ghostnas import __version__
    from ghostnas.cli import _data, _export, _latency, _models, _onnx, _plot, _search, _space, _train

    parser = _Parser(
        prog="ghostnas",
        description="Neural architecture search over the GhostNet design space.",
    )
    parser.add_argument("--version", action="version", version=f"ghostnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (_search, _space, _models, _onnx, _latency, _export, _plot, _train, _data):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded by commands that log runs
    try:
        return int(args.func(args) or 0)
    except GhostnasError as exc:
        print(f"ghostnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ghostnas {args.command}: interrupted", file=sys.stderr)
        return 130
