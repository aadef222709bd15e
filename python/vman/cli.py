"""The `vman` command: a thin shell over the library for people and demos.

    vman demo                 the README's main job
    vman ls                   templates, networks and VMs
    vman history [VM] [-n N]  recent events, or one VM's
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Sequence

import vman

DEMO_PREFIX = "demo-"


def _when(at_ms: int) -> str:
    return datetime.datetime.fromtimestamp(at_ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _print_vms(vms: Sequence[vman.Vm]) -> None:
    print(f"{'VM':<12} {'STATE':<9} {'TEMPLATE':<11} NICS")
    for vm in vms:
        nics = ", ".join(f"{n.network}/{n.vlan} {n.ip}/{n.prefix_len} {n.mac}" for n in vm.nics) or "-"
        print(f"{vm.name:<12} {vm.state:<9} {vm.template:<11} {nics}")


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


def demo(m: vman.Manager) -> int:
    print(f"vman {vman.__version__}, state directory {m.state_dir}")
    _clean_demo(m)
    m.create_template("demo-small", vcpus=1, memory_mib=256, disk_gib=1, description="demo size")
    net = m.create_network("demo-lan", vlan=3100, cidr="10.31.0.0/24", reserved=["10.31.0.2-10.31.0.9"], dns=["10.31.0.1"])
    print(f"network {net.name}: VLAN {net.vlan}, {net.cidr}, gateway {net.gateway}, reserved {net.reserved}")
    m.create_vm("demo-web1", template="demo-small", nics=["demo-lan"])
    m.create_vm("demo-web2", template="demo-small", nics=["demo-lan"])
    m.create_vm("demo-db1", template="demo-small", nics=[vman.NicSpec("demo-lan", ip="10.31.0.50")])
    print()
    _print_vms(m.vms(name_prefix=DEMO_PREFIX))
    print("\nallocations on demo-lan:")
    for a in m.allocations("demo-lan"):
        print(f"  {a.ip:<12} {a.mac}  {a.vm_name} nic{a.nic_index}")
    print("\nhistory (newest 8):")
    _print_events(m.recent_events(8))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vman", description="Embeddable VM manager")
    parser.add_argument("--state-dir", default=None, help=f"default: {vman.default_state_dir()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="record a template, a VLAN network and three VMs, and show them")
    sub.add_parser("ls", help="list templates, networks and VMs")
    hist = sub.add_parser("history", help="show recent events")
    hist.add_argument("vm", nargs="?", help="only this VM (name, or id of a deleted one)")
    hist.add_argument("-n", type=int, default=20, help="how many events")
    args = parser.parse_args(argv)

    try:
        m = vman.Manager(args.state_dir or vman.default_state_dir())
        if args.command == "demo":
            return demo(m)
        if args.command == "ls":
            for t in m.templates():
                print(t)
            for n in m.networks():
                print(n)
            _print_vms(m.vms())
            return 0
        _print_events(m.vm_history(args.vm, args.n) if args.vm else m.recent_events(args.n))
        return 0
    except vman.VmanError as e:
        print(f"vman: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
