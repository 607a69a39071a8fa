"""The ``ghostnas`` command line: a table of small subcommands, each a thin call into the library.

Every user mistake surfaces as a :class:`~ghostnas.errors.GhostnasError` (or an argparse error)
and is printed as one line on stderr with exit status 2; no traceback reaches the user. A write
that fails mid-run (a full disk, a read-only file system) is one line too, with exit status 1: a
:class:`~ghostnas.errors.WriteFailedError` that says what filled up, what is safe, and the exact
command that resumes (this command line, as typed).
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from ghostnas.errors import GhostnasError, WriteFailedError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line that says where to look, with exit status 2, and a
    mistyped option or choice gets a "did you mean" (argparse has that only from Python 3.12)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_with_choice_hint(message)} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        ns, extras = self.parse_known_args(argv, namespace)
        if extras:
            command = self._command_parser(ns)
            command.error(_unrecognized(command, argv, extras))
        return ns

    def _command_parser(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The subcommand's parser (whose options a stray argument is compared with), or self."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(ns, action.dest, None), self)  # type: ignore[no-any-return]
        return self


# A budget unit typed as its own word: `--budget 150 MFLOPs`.
_UNIT_RE = re.compile(r"^[kKMGg]?(flops?|macs?|params?|ms|us|µs|s)$", re.IGNORECASE)


def _unrecognized(parser: argparse.ArgumentParser, argv: list[str], extras: list[str]) -> str:
    """``unrecognized arguments: ...`` with the likely fix for the first stray argument."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    first = extras[0]
    if first.startswith("--"):
        name = first.split("=", 1)[0]
        options = [o for o in parser._option_string_actions if o.startswith("--")]
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        if close:
            return f"{message}; did you mean {close[0]}?"
        return message
    if _UNIT_RE.match(first) and first in argv:
        i = argv.index(first)
        number = argv[i - 1] if i >= 1 else "150"
        option = argv[i - 2] if i >= 2 and argv[i - 2].startswith("--") else "--budget"
        return (
            f"{message}; {first!r} looks like the unit of {option} {number}: write it as one word, "
            f"{option} {number}{first}, or quote it, {option} '{number} {first}'"
        )
    return message


def _with_choice_hint(message: str) -> str:
    """argparse's ``invalid choice: 'x' (choose from ...)`` plus the closest choice, if any."""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if not m:
        return message
    choices = re.findall(r"'([^']*)'", m[2])
    close = difflib.get_close_matches(m[1], choices, n=1, cutoff=0.6)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def build_parser() -> argparse.ArgumentParser:
    from ghostnas.cli import _data, _export, _latency, _models, _onnx, _plot, _search, _space, _train, _yolo
    from ghostnas.version import VERSION

    parser = _Parser(
        prog="ghostnas",
        description="Neural architecture search over the GhostNet design space.",
    )
    parser.add_argument("--version", action="version", version=f"ghostnas {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (_search, _space, _models, _onnx, _latency, _export, _plot, _train, _data, _yolo):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 1 failed write, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded by commands that log runs
    try:
        return int(args.func(args) or 0)
    except WriteFailedError as exc:
        if exc.command is None:
            exc.command = shlex.join(["ghostnas", *args.argv])
        print(f"ghostnas {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except GhostnasError as exc:
        print(f"ghostnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ghostnas {args.command}: interrupted", file=sys.stderr)
        return 130
