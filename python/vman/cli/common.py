"""What every command gets (the manager, the output, its arguments) and the
argument types the groups share."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass

import vman

from .exits import CliError
from .output import Output


@dataclass
class Ctx:
    """One command's world: the opened state directory, where results go,
    and the parsed command line."""

    m: vman.Manager
    out: Output
    args: argparse.Namespace


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def size_arg(text: str) -> int:
    """A size in bytes: ``1073741824``, ``512M``, ``10G``, ``1.5GiB``
    (K, M, G, T are powers of 1024, as in qemu-img)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 512M, 10G, 1073741824)")
    number, unit = match.groups()
    value = float(number) * _UNITS[unit.lower()]
    if value != int(value):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


# The longest wait the library takes (vman_core::convert::seconds_arg).
MAX_SECONDS = 86_400.0


def seconds_arg(text: str) -> float:
    """A wait in seconds, 0 to a day (the library's range), checked on the
    command line so a command never acts and then refuses its timeout."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if math.isnan(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} s is outside 0-{MAX_SECONDS:g} s")
    return value


def count_arg(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def check_pattern(m: vman.Manager, vm: str, pattern: str, option: str) -> None:
    """Refuses ``pattern`` if the library would: its regular expressions are
    Rust's, not Python's ``re``. The library has no call that only checks
    one; ``wait_for_console`` compiles the pattern before it looks at the
    VM, and with no time to wait it changes nothing, so it is asked. Only
    its verdict on the pattern counts: whether ``vm`` can be waited on is
    the command's business, later."""
    try:
        m.wait_for_console(vm, pattern, timeout=0)
    except vman.InvalidArgumentError as e:
        # The regex crate's message draws the pattern with a caret under
        # the fault; its last line says what the fault is.
        why = str(e).strip().splitlines()[-1].removeprefix("error: ")
        raise CliError("invalid_argument", f"{option} {pattern!r} is not a regular expression (Rust regex syntax): {why}") from None
    except vman.VmanError:
        pass


def path_arg(text: str) -> str:
    """A file the user named, relative to the current directory (the
    library takes absolute paths)."""
    return os.path.abspath(text)


def read_text(path: str) -> str:
    """A text file the user named (``-``: stdin), or a CliError of the
    kind that fits. A missing file is ``invalid_argument``, as the library
    answers for a missing image, disk or kernel path."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CliError("invalid_argument", f"{path!r} cannot be opened: no such file") from None
    except PermissionError:
        raise CliError("permission_denied", f"cannot read {path!r}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError("io", f"cannot read {path!r}: {e}") from None
