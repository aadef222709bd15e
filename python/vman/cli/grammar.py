"""The command line's grammar: groups of verbs on argparse, with the global
options (``--state-dir``, ``--json``) accepted before or after any word."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from .common import Ctx
from .exits import USAGE

Handler = Callable[[Ctx], Optional[int]]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vman: <command>: <problem> (see
    <command> --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        sys.stderr.write(f"vman: {where}{message} (see '{self.prog} --help')\n")
        sys.exit(USAGE)


def global_options() -> Parser:
    """The options every parser of the tree accepts. Their defaults are
    SUPPRESS, so a word that does not repeat them keeps what an earlier
    word set: ``vman --json vm list`` and ``vman vm list --json`` agree."""
    common = Parser(add_help=False)
    opts = common.add_argument_group("global options")
    opts.add_argument(
        "--state-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the state directory (default: $VMAN_STATE_DIR, else /var/lib/vman for root, else ~/.local/state/vman); "
        "only the default one is created when missing",
    )
    opts.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts (docs/cli.md)")
    return common


class Commands:
    """Adds verbs (or groups of verbs) under one parser."""

    def __init__(self, parent: argparse.ArgumentParser, common: Parser, dest: str, title: str) -> None:
        self._common = common
        self._sub = parent.add_subparsers(dest=dest, metavar=title, required=True, parser_class=Parser)

    def add(
        self, name: str, handler: Handler, help: Optional[str], aliases: Sequence[str] = (), description: Optional[str] = None
    ) -> Parser:
        """A verb. ``help=None`` hides it from the list (an alias of a verb
        shown elsewhere)."""
        kwargs: Any = {"help": help} if help is not None else {}
        parser: Parser = self._sub.add_parser(
            name, parents=[self._common], aliases=list(aliases), description=description or help, **kwargs
        )
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: Optional[str], description: Optional[str] = None) -> "Commands":
        """A group of verbs (``vman network ...``)."""
        kwargs: Any = {"help": help} if help is not None else {}
        parser: Parser = self._sub.add_parser(name, parents=[self._common], description=description or help, **kwargs)
        return Commands(parser, self._common, dest=f"{name}_verb", title="<verb>")
