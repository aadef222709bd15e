"""The old ``vman demo`` (hidden): records a template, a network and three
VMs and boots one real guest. scripts/demo still calls it; the README's
main job is becoming a scenario of ordinary commands, and this goes once
that lands."""

from __future__ import annotations

import datetime
import time
from typing import Sequence

import vman

from .common import Ctx
from .grammar import Commands

DEMO_PREFIX = "demo-"


def _when(at_ms: int) -> str:
    return datetime.datetime.fromtimestamp(at_ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _print_vms(vms: Sequence[vman.Vm]) -> None:
    print(f"{'VM':<12} {'STATE':<9} {'PID':>7} {'ACCEL':<5} {'TEMPLATE':<11} NICS")
    for vm in vms:
        nics = ", ".join(f"{n.network}/{n.vlan} {n.ip}/{n.prefix_len} {n.mac}" for n in vm.nics) or "-"
        pid = str(vm.pid) if vm.pid else "-"
        print(f"{vm.name:<12} {vm.state:<9} {pid:>7} {vm.accel or '-':<5} {vm.template:<11} {nics}")


def _print_events(events: Sequence[vman.Event]) -> None:
    for e in events:
        print(f"{_when(e.at_ms)}  {e.object_kind:<8} {e.object_name:<12} {e.action:<14} "
              f"{e.os_user}[{e.pid}]  {e.details_json}")


def _clean_demo(m: vman.Manager) -> None:
    """Removes what an earlier demo run left, so the demo can be re-run."""
    for vm in m.vms(name_prefix=DEMO_PREFIX):
        m.delete_vm(vm.name, force=True)
    for net in m.networks():
        if net.name.startswith(DEMO_PREFIX):
            m.delete_network(net.name)
    for t in m.templates():
        if t.name.startswith(DEMO_PREFIX):
            m.delete_template(t.name)


def _step(text: str) -> float:
    print(f"\n== {text}")
    return time.monotonic()


def demo(m: vman.Manager, kernel: str, initrd: str) -> int:
    print(f"vman {vman.__version__}, state directory {m.state_dir}")
    _clean_demo(m)
    m.create_template("demo-small", vcpus=1, memory_mib=256, disk_gib=1, description="demo size")
    net = m.create_network("demo-lan", vlan=3100, cidr="10.31.0.0/24", reserved=["10.31.0.2-10.31.0.9"], dns=["10.31.0.1"])
    print(f"network {net.name}: VLAN {net.vlan}, {net.cidr}, gateway {net.gateway}, reserved {net.reserved}")
    m.create_vm("demo-web1", template="demo-small", nics=["demo-lan"],
                kernel=kernel, initrd=initrd, cmdline="console=ttyS0 quiet panic=-1 vman.net=dhcp")
    m.create_vm("demo-web2", template="demo-small", nics=["demo-lan"])
    m.create_vm("demo-db1", template="demo-small", nics=[vman.NicSpec("demo-lan", ip="10.31.0.50")])
    _print_vms(m.vms(name_prefix=DEMO_PREFIX))

    t = _step("start demo-web1 (a real Linux guest)")
    vm = m.start("demo-web1")
    print(f"running: QEMU pid {vm.pid}, accelerator {vm.accel} ({(time.monotonic() - t) * 1000:.0f} ms to QMP ready)")
    line = m.wait_for_console("demo-web1", r"^VMAN-GUEST-READY$", timeout=120)
    print(f"guest says {line!r} after {time.monotonic() - t:.1f} s")
    dhcp = m.wait_for_console("demo-web1", r"^VMAN-(DHCP|WARN)", timeout=5)
    nic = vm.nics[0]
    how = f"on tap {nic.host_interface}" if nic.host_interface else "through QEMU's user-mode NAT"
    print(f"network: {nic.network} (VLAN {nic.vlan}) {how}; allocated {nic.ip}, guest's DHCP says {dhcp!r}")
    for f in vm.port_forwards:
        print(f"ssh forward: {f.host_address}:{f.host_port} -> guest port {f.guest_port}")
    _print_vms(m.vms(name_prefix=DEMO_PREFIX))
    print("\nconsole tail:")
    for text in m.console_tail("demo-web1", 600).decode(errors="replace").splitlines()[-6:]:
        print(f"  | {text}")

    t = _step("graceful stop (ACPI power button)")
    vm = m.stop("demo-web1", timeout=30)
    print(f"{vm.name} is {vm.state} after {time.monotonic() - t:.1f} s")
    print("\nhistory of demo-web1:")
    _print_events(m.vm_history("demo-web1"))
    return 0


def run(ctx: Ctx) -> int:
    return demo(ctx.m, ctx.args.kernel, ctx.args.initrd)


def register(top: Commands) -> None:
    p = top.add("demo", run, None, description="the old demo: boot one real guest (hidden; see scripts/demo)")
    p.add_argument("--kernel", required=True, help="kernel of a guest that prints VMAN-GUEST-READY on ttyS0 when up")
    p.add_argument("--initrd", required=True, help="that guest's initrd")
