"""What a command prints: aligned tables and ``key: value`` blocks for
people, JSON for scripts (``--json``). Results go to stdout; progress and
errors to stderr."""

from __future__ import annotations

import datetime
import json
import select
import sys
from typing import Any, Iterable, List, Optional, Sequence, Tuple


def when(at_ms: int) -> str:
    """A record's time, local, to the second."""
    return datetime.datetime.fromtimestamp(at_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def size(n: Optional[int]) -> str:
    """Bytes as a short binary size: 512 B, 1.5 KiB, 10 GiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".") if unit != "B" else str(int(value))
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def cell(value: Any) -> str:
    """A table cell: None and empty values as "-"."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def reader_gone() -> bool:
    """True once nobody will read stdout again: a pipe whose reader exited
    (``vman events --follow | head -1``). A command that waits for more to
    print asks between waits, so it ends then rather than at its next
    write."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return False  # not a file descriptor (tests capture stdout)
    poller = select.poll()
    poller.register(fd, 0)  # only POLLERR, POLLHUP, POLLNVAL are reported
    return bool(poller.poll(0))


class Output:
    """Where a command's results go, in the form the user asked for."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def line(self, text: str = "") -> None:
        """A line for people; nothing with ``--json``."""
        if not self.json:
            sys.stdout.write(text + "\n")

    def data(self, value: Any) -> None:
        """A JSON document (a record or a list of them), for ``--json``."""
        sys.stdout.write(json.dumps(value, indent=2) + "\n")

    def json_line(self, value: Any) -> None:
        """One JSON object on one line (JSON Lines, for streams)."""
        sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Columns padded to their widest cell; the last one is not padded."""
        cells: List[List[str]] = [list(headers)] + [[cell(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for r in cells:
            padded = [c.ljust(w) for c, w in zip(r[:-1], widths)] + [r[-1]]
            sys.stdout.write("  ".join(padded).rstrip() + "\n")

    def fields(self, pairs: Sequence[Tuple[str, Any]]) -> None:
        """``key: value`` lines, keys aligned."""
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            sys.stdout.write(f"{key + ':':<{width + 1}} {cell(value)}\n")
