"""The ``vman`` command: the library for operators and shell scripts.

``vman [--state-dir DIR] [--json] <group> <verb> [args]``; ``vman --help``
lists the groups, docs/cli.md has every command, the ``--json`` shapes and
the exit codes. Each command opens the state directory, makes one or a few
library calls and prints the result; the rules are the library's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import vman

from . import cmd_objects, cmd_ops, cmd_vm
from .common import Ctx
from .exits import BROKEN_PIPE, EXIT_CODES, INTERRUPTED, USAGE, CliError, exit_code, kind_exit_code
from .grammar import Commands, Parser, global_options
from .output import Output

__all__ = ["main", "build_parser", "open_manager"]


def epilog() -> str:
    """The end of ``vman --help``; its exit codes are the table's."""
    codes = ["0 done,", "1 a bug in the CLI,", "2 usage;", "a vman error by kind (docs/cli.md):"]
    codes += [f"{code} {kind}," for kind, code in sorted(EXIT_CODES.items(), key=lambda kc: kc[1])]
    codes[-1] = codes[-1].rstrip(",") + ";"
    codes += [f"{INTERRUPTED} interrupted (Ctrl-C);", f"{BROKEN_PIPE} stdout's reader went away (| head)."]
    lines = ["Exit codes:"]
    for item in codes:  # wrapped between items, never inside one
        if len(lines[-1]) + 1 + len(item) > 78:
            lines.append(item)
        else:
            lines[-1] += " " + item
    return (
        "Every vm verb is also a top-level command: `vman start web1` is\n"
        "`vman vm start web1`, `vman ls` is `vman vm list`.\n"
        "Global options go anywhere on the line.\n\n" + "\n".join(lines) + "\n"
    )


def build_parser() -> Parser:
    common = global_options()
    parser = Parser(
        prog="vman",
        parents=[common],
        description="vman: virtual machines on this host (templates, VLAN networks, images, disks, VMs).",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vman {vman.__version__}")
    top = Commands(parser, common, dest="command", title="<command>")
    cmd_objects.register(top)
    cmd_vm.register(top)
    cmd_ops.register(top)
    return parser


def open_manager(state_dir: Optional[str]) -> vman.Manager:
    """Opens the state directory the user named, or the default one.

    Only the default directory is made when missing: a directory named on
    the command line must exist and be a vman state directory or empty, so
    a typing mistake is an error rather than a new, empty state."""
    default = vman.default_state_dir()
    path = Path(state_dir) if state_dir is not None else default
    create = True
    if os.path.abspath(path) != os.path.abspath(default):
        if path.is_dir() and not (path / "vman.db").exists() and any(path.iterdir()):
            raise CliError("invalid_argument", f"{str(path)!r} is not a vman state directory (it has no vman.db and is not empty)")
        # An empty directory made for vman may become one; a missing one
        # is the library's NotFound, and nothing is created.
        create = path.is_dir()
    try:
        return vman.Manager(path, create=create)
    except vman.NotFoundError:
        raise CliError("not_found", f"no state directory {str(path)!r} (only the default, {str(default)!r}, is made when missing)") from None


def one_line(message: str) -> str:
    """A message on one line (a cause chain may hold QEMU's own lines)."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def fail(message: str, code: int) -> int:
    sys.stderr.write(f"vman: {one_line(message)}\n")
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns its exit code (the console script exits
    with it)."""
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as e:  # --help, --version, or a usage error already reported
        return e.code if isinstance(e.code, int) else USAGE
    out = Output(getattr(args, "json", False))
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Each line reaches a pipe's reader when printed, not at exit.
        sys.stdout.reconfigure(line_buffering=True)
    try:
        with open_manager(getattr(args, "state_dir", None)) as m:
            return args.handler(Ctx(m, out, args)) or 0
    except vman.VmanError as e:
        return fail(str(e), exit_code(e))
    except CliError as e:
        return fail(str(e), kind_exit_code(e.kind))
    except KeyboardInterrupt:
        return fail("interrupted", INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`vman events | head`): not an error of ours,
        # so nothing is said. Point stdout at /dev/null so the interpreter's
        # final flush is quiet too.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return BROKEN_PIPE
