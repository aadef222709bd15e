"""The comparative harness: raw QEMU, libvirt and vman (Rust, Python, C)
side by side, interleaved in one run, with the same guest.

It spawns one long-lived driver process per implementation and talks JSON
lines with it (README.md). Every round runs each implementation once, in a
random order (A C B E D, then B A E D C, ...), so a slow spell of the
machine (other builds) falls on all of them alike. Two kinds of rounds:

- fast rounds: create → start → force_stop → delete (no guest boot needed);
- graceful rounds: create → start → guest READY → graceful_stop → delete.

Each with the disk "none" (kernel + initrd only) and "linked" (a qcow2
overlay of one base as the boot disk). The drivers time each operation
themselves; this program only collects the seconds and appends one JSON line
per series to --out (the format every bench program of vman writes).

Run by scripts/bench; by hand:
  .venv/bin/python benches/compare/run.py --out r.jsonl --state /tmp/s \\
      --kernel G/vmlinuz --initrd G/initrd.img --base B/disk.qcow2 \\
      --rust-driver PATH --c-driver PATH
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

IMPLS = ["qemu", "libvirt", "vman-rust", "vman-python", "vman-c"]
CMDLINE = "console=ttyS0 quiet panic=-1"
# Seconds every guest rests after READY before its graceful stop.
SETTLE_S = 1.0
# The series name of each operation, per implementation (libvirt defines and
# undefines; a raw QEMU has nothing to create without a disk).
NAMES = {"create": "create", "start": "start", "force_stop": "force_stop", "graceful_stop": "graceful_stop", "delete": "delete"}
LIBVIRT_NAMES = {**NAMES, "create": "define", "delete": "undefine"}


class DriverError(Exception):
    pass


class Driver:
    """One implementation's driver process."""

    def __init__(self, impl: str, argv: list[str], log: Any) -> None:
        self.impl = impl
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def call(self, timeout: float = 120.0, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise DriverError(f"{self.impl}: driver exited") from e
        if not self.sel.select(timeout):
            raise DriverError(f"{self.impl}: no answer to {req.get('op')} in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise DriverError(f"{self.impl}: driver exited")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise DriverError(f"{self.impl} {req.get('op')}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()


def driver_argv(impl: str, a: argparse.Namespace) -> Optional[list[str]]:
    if impl in ("qemu", "vman-rust"):
        return [a.rust_driver, impl] if a.rust_driver else None
    if impl == "vman-python":
        return [sys.executable, os.path.join(os.path.dirname(__file__), "driver.py")]
    if impl == "vman-c":
        return [a.c_driver] if a.c_driver else None
    if impl == "libvirt":
        return [a.libvirt_python, os.path.join(os.path.dirname(__file__), "libvirt_driver.py")]
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON lines file to append to")
    p.add_argument("--state", required=True, help="a fresh directory for every driver's state")
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--base", help="base qcow2 for the linked-clone disk (without: disk none only)")
    p.add_argument("--memory-mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=20, help="fast rounds (start/force_stop) per disk")
    p.add_argument("--graceful", type=int, default=5, help="graceful rounds per disk (each boots a guest)")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--rust-driver", help="the compare_driver bench executable")
    p.add_argument("--c-driver", help="the built benches/compare/driver.c")
    p.add_argument("--libvirt-python", default="/usr/bin/python3")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    rng = random.Random(a.seed)
    disks = ["none", "linked"] if a.base else ["none"]
    os.makedirs(a.state, exist_ok=True)
    os.chmod(a.state, 0o755)  # libvirt's QEMU user reaches its files below
    log = open(os.path.join(a.state, "drivers.log"), "a")

    drivers: dict[str, Driver] = {}
    for impl in a.impls.split(","):
        argv = driver_argv(impl, a)
        if argv is None:
            print(f"compare: {impl}: no driver given, not measured", file=sys.stderr)
            continue
        d = Driver(impl, argv, log)
        state = os.path.join(a.state, impl)
        os.makedirs(state, exist_ok=True)
        os.chmod(state, 0o755)
        try:
            info = d.call(op="setup", state=state, kernel=a.kernel, initrd=a.initrd, cmdline=CMDLINE, memory_mib=a.memory_mib, base=a.base)
            print(f"compare: {impl} ready ({info.get('version')})", file=sys.stderr)
            drivers[impl] = d
        except DriverError as e:
            print(f"compare: {impl} not measured: {e}", file=sys.stderr)
            d.close()

    samples: dict[tuple[str, str, str], list[float]] = {}

    def record(impl: str, op: str, disk: str, s: float) -> None:
        if impl == "qemu" and op in ("create", "delete") and disk == "none":
            return  # nothing to make or remove
        name = (LIBVIRT_NAMES if impl == "libvirt" else NAMES).get(op, op)
        samples.setdefault((name, impl, disk), []).append(s)

    def cycle(impl: str, name: str, disk: str, graceful: bool) -> None:
        d = drivers[impl]
        created = False
        try:
            record(impl, "create", disk, d.call(op="create", name=name, disk=disk)["s"])
            created = True
            s = d.call(op="start", name=name)["s"]
            if graceful:
                record(impl, "ready", disk, d.call(op="ready", name=name, timeout=120)["s"])
                # READY is printed while the guest's boot still has work in
                # flight; a second of rest lets every guest reach the same
                # idle state, so the shutdown times compare like with like.
                time.sleep(SETTLE_S)
                record(impl, "graceful_stop", disk, d.call(op="graceful_stop", name=name, timeout=60)["s"])
            else:
                record(impl, "start", disk, s)
                record(impl, "force_stop", disk, d.call(op="force_stop", name=name)["s"])
            record(impl, "delete", disk, d.call(op="delete", name=name)["s"])
        except DriverError as e:
            print(f"compare: {e}", file=sys.stderr)
            if created:
                try:
                    d.call(op="force_stop", name=name)
                except DriverError:
                    pass
                try:
                    d.call(op="delete", name=name)
                except DriverError:
                    pass

    interrupted = False
    try:
        for graceful, rounds in ((False, a.rounds), (True, a.graceful)):
            for disk in disks:
                for r in range(rounds):
                    order = list(drivers)
                    rng.shuffle(order)
                    for impl in order:
                        cycle(impl, f"{'g' if graceful else 'f'}{disk[0]}{r}", disk, graceful)
                    print(f"compare: {'graceful' if graceful else 'fast'} disk={disk} round {r + 1}/{rounds}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("compare: interrupted; writing the samples taken so far", file=sys.stderr)
    finally:
        for d in drivers.values():
            d.close()
        with open(a.out, "a") as out:
            for (name, impl, disk), ss in sorted(samples.items()):
                out.write(json.dumps({"bench": f"compare/{name}", "impl": impl, "params": {"disk": disk}, "unit": "s", "samples": ss}) + "\n")
    for (name, impl, disk), ss in sorted(samples.items()):
        print(f"{'compare/' + name:<24} {impl:<12} disk={disk:<7} median {statistics.median(ss) * 1e3:9.2f} ms  n={len(ss)}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
