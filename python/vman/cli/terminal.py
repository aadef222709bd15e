"""Console bytes made fit for a terminal or a file: escape codes removed."""

from __future__ import annotations

import re
from typing import Optional

# CSI (colours, cursor moves, clears), OSC (titles, links; ended by BEL or
# ST), the other ESC sequences (charset selection, keypad modes, ST...),
# then the C0 controls and DEL, except tab and newline. Carriage returns go
# too: a guest ends its lines with CR LF, and a lone CR would overwrite the
# line on a terminal.
_ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    rb"|\x1b[ -/]*[0-~]"
    rb"|[\x00-\x08\x0b-\x1f\x7f]"
)


def strip_escapes(data: bytes) -> str:
    """Console output as plain text: escape sequences and control
    characters removed (tab and newline kept), invalid UTF-8 replaced."""
    return _ESCAPES.sub(b"", data).decode("utf-8", errors="replace")


def last_line(data: bytes) -> Optional[str]:
    """The last non-blank line of console output, as plain text."""
    for line in reversed(strip_escapes(data).splitlines()):
        if line.strip():
            return line.strip()
    return None


def new_bytes(previous: bytes, current: bytes) -> bytes:
    """What ``current`` adds to ``previous``, both tails of one growing
    stream (the serial log with its rotated part): the shortest advance
    whose overlap matches. A ``current`` that does not overlap at all (the
    stream moved on by more than a tail, or a new boot replaced it) is new
    as a whole."""
    if not previous:
        return current
    anchor = previous[-min(len(previous), 256) :]
    end = len(current)
    while True:
        at = current.rfind(anchor, 0, end)
        if at < 0:
            return current
        cut = at + len(anchor)
        if previous.endswith(current[:cut]):
            return current[cut:]
        end = cut - 1
