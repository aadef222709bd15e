"""Driver process of the comparative harness: vman from Python.

JSON lines on stdin, one answer per line on stdout (see README.md). Each
operation is timed here with ``time.perf_counter`` around the one vman call,
so the pipe to the orchestrator costs nothing. Run with the .venv python
(``maturin develop --release`` first).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Optional

import vman
from protocol import serve


class Driver:
    def __init__(self, req: dict[str, Any]) -> None:
        self.kernel: str = req["kernel"]
        self.initrd: str = req["initrd"]
        self.cmdline: str = req["cmdline"]
        base: Optional[str] = req.get("base")
        self.m = vman.Manager(req["state"] + "/vman", accel="tcg")
        self.m.create_template("t", vcpus=1, memory_mib=int(req.get("memory_mib", 256)), disk_gib=1)
        if base:
            self.m.register_image("base", base)

    def op(self, op: str, req: dict[str, Any]) -> float:
        name: str = req["name"]
        timeout = float(req.get("timeout", 60.0))
        call: Callable[[], object]
        if op == "create":
            image = "base" if req["disk"] == "linked" else None
            kernel, initrd, cmdline = self.kernel, self.initrd, self.cmdline

            def call() -> object:
                return self.m.create_vm(name, template="t", kernel=kernel, initrd=initrd, cmdline=cmdline, image=image)

        elif op == "start":

            def call() -> object:
                return self.m.start(name)

        elif op == "force_stop":

            def call() -> object:
                return self.m.force_stop(name)

        elif op == "ready":

            def call() -> object:
                return self.m.wait_for_console(name, "VMAN-GUEST-READY", timeout)

        elif op == "graceful_stop":

            def call() -> object:
                return self.m.stop(name, timeout)

        elif op == "delete":

            def call() -> object:
                self.m.delete_vm(name, force=True)
                return None

        else:
            raise ValueError(f"unknown op {op!r}")
        t = time.perf_counter()
        call()
        return time.perf_counter() - t

    def cleanup(self) -> None:
        for vm in self.m.vms():
            try:
                self.m.delete_vm(vm.name, force=True)
            except vman.VmanError:
                pass


def main() -> None:
    serve(Driver, lambda: vman.__version__)


if __name__ == "__main__":
    main()
