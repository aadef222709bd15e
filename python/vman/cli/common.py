"""What every command gets (the manager, the output, its arguments) and the
argument types the groups share."""

from __future__ import annotations

import argparse
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


def path_arg(text: str) -> str:
    """A file the user named, relative to the current directory (the
    library takes absolute paths)."""
    return os.path.abspath(text)


def read_text(path: str) -> str:
    """A text file the user named (``-``: stdin), or a CliError of the
    kind that fits."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CliError("not_found", f"no file {path!r}") from None
    except PermissionError:
        raise CliError("permission_denied", f"cannot read {path!r}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError("io", f"cannot read {path!r}: {e}") from None
