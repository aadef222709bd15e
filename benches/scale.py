"""Scale of the store from Python: what a call costs as the store fills.

The same series as benches/scale.rs, through the ``vman`` module:
scale/create (``Manager.create_vm`` of a VM with one NIC, so an address is
allocated), scale/get (``Manager.vm``) and scale/list (``Manager.vms()``)
with 0, 1,000 and 10,000 VMs in the store, filled through the API and
measured at each size on the way up. At n = 0 get reads the only VM.

Writes JSON lines (impl "vman-python") to the file named by VMAN_BENCH_OUT,
appending, and prints a table. Build the module first with
``maturin develop --release``. Run: python benches/scale.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Callable

import vman

SIZES = (0, 1_000, 10_000)


def fill_name(i: int) -> str:
    return f"vm{i:05}"


def emit(bench: str, params: dict[str, int], samples: list[float]) -> None:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[round((len(ordered) - 1) * q)]

    print(
        f"{bench:<14} {json.dumps(params):<16} median {statistics.median(samples) * 1e6:>10.1f} µs"
        f"  p10 {pick(0.1) * 1e6:>10.1f}  p90 {pick(0.9) * 1e6:>10.1f}  ({len(samples)} samples)"
    )
    out = os.environ.get("VMAN_BENCH_OUT")
    if out:
        line = {"bench": bench, "impl": "vman-python", "params": params, "unit": "s", "samples": samples}
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def timed(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def measure(m: vman.Manager, n: int, quick: bool) -> None:
    params = {"n": n}
    creates = 30 if quick else 200
    create = []
    for i in range(creates):
        start = time.perf_counter()
        m.create_vm(f"probe{i}", template="t", nics=["n"])
        create.append(time.perf_counter() - start)
    for i in range(creates):
        m.delete_vm(f"probe{i}")
    emit("scale/create", params, create)

    if n == 0:
        m.create_vm(fill_name(0), template="t", nics=["n"])
    names = [fill_name((i * 7919) % max(n, 1)) for i in range(300 if quick else 5_000)]
    get = []
    clock = time.perf_counter
    for name in names:
        start = clock()
        m.vm(name)
        get.append(clock() - start)
    emit("scale/get", params, get)
    if n == 0:
        m.delete_vm(fill_name(0))

    lists = {0: 200, 1_000: 50, 10_000: 15}[n] if not quick else {0: 50, 1_000: 10, 10_000: 3}[n]
    listed = timed(m.vms, lists)
    assert len(m.vms()) == n
    emit("scale/list", params, listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        m = vman.Manager(tmp)
        m.create_template("t", vcpus=1, memory_mib=512, disk_gib=1)
        m.create_network("n", vlan=16, cidr="10.16.0.0/16")
        filled = 0
        for size in SIZES:
            while filled < size:
                m.create_vm(fill_name(filled), template="t", nics=["n"])
                filled += 1
            measure(m, size, args.quick)
        m.close()


if __name__ == "__main__":
    main()
