"""The driver side of the comparison's protocol (README.md here): JSON
requests on stdin, one JSON answer per request on stdout.

Shared by driver.py (the .venv python with vman) and libvirt_driver.py
(Debian's python3 with libvirt); standard library only.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional, Protocol


class Driver(Protocol):
    def op(self, op: str, req: dict[str, Any]) -> float: ...

    def cleanup(self) -> None: ...


def serve(setup: Callable[[dict[str, Any]], Driver], version: Callable[[], object]) -> None:
    """Answers requests until `quit` or end of input, then cleans up what
    the driver made. `setup` makes the driver from the first request;
    every failure is an answer, never a dead driver."""
    driver: Optional[Driver] = None
    for line in sys.stdin:
        try:
            req = json.loads(line)
            op = req.get("op", "")
            if op == "quit":
                break
            if op == "setup":
                driver = setup(req)
                answer: dict[str, Any] = {"ok": True, "version": version()}
            elif driver is None:
                answer = {"ok": False, "error": "setup first"}
            else:
                answer = {"ok": True, "s": driver.op(op, req)}
        except Exception as e:  # every failure is an answer, never a dead driver
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if driver is not None:
        driver.cleanup()
