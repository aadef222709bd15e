"""vman from Python: a template, a VLAN network, two VMs with addresses, a
data disk, the live event stream and the history; with a kernel and an
initrd, one VM also boots and answers on its serial console.

    python examples/python/quickstart.py [STATE_DIR [KERNEL INITRD]]
    GUEST=$(tests/guest/build.sh)      # a small test guest, e.g.
    python examples/python/quickstart.py /tmp/qs "$GUEST/vmlinuz" "$GUEST/initrd.img"

STATE_DIR defaults to a new temporary directory. The example removes what it
made, so it can run again on the same directory. The guest must print
`VMAN-GUEST-READY` or `login:` on ttyS0 when it is up and run a shell there
(the test guest does).
"""

from __future__ import annotations

import sys
import tempfile

import vman


def main(argv: list[str]) -> int:
    if len(argv) not in (0, 1, 3):
        print(__doc__, file=sys.stderr)
        return 2
    state_dir = argv[0] if argv else tempfile.mkdtemp(prefix="vman-quickstart-")
    kernel, initrd = (argv[1], argv[2]) if len(argv) == 3 else (None, None)

    with vman.Manager(state_dir) as m:
        print(f"state directory {m.state_dir}")
        events = m.subscribe()  # every change committed from now on, by any process, in order

        m.create_template("qs-small", vcpus=1, memory_mib=256, disk_gib=1)
        m.create_network("qs-lan", vlan=3301, cidr="10.33.1.0/24", reserved=["10.33.1.2-10.33.1.9"])
        web = m.create_vm("qs-web", template="qs-small", nics=["qs-lan"],
                          kernel=kernel, initrd=initrd, cmdline="console=ttyS0 quiet panic=-1" if kernel else None)
        db = m.create_vm("qs-db", template="qs-small", nics=[vman.NicSpec("qs-lan", ip="10.33.1.100")])
        for vm in (web, db):
            print(vm.name, vm.state, vm.nics[0].ip, vm.nics[0].mac)
        for a in m.allocations("qs-lan"):
            print(f"qs-lan: {a.ip} held by {a.vm_name} (NIC {a.nic_index})")

        # A sparse qcow2 disk; qs-db has no QEMU, so it joins at its next start.
        m.create_disk("qs-data", 1 << 30)
        data = m.attach_disk("qs-db", "qs-data")
        print(f"disk {data.name}: {data.size_bytes} bytes, attached to {data.vm} at slot {data.slot}")

        if kernel:
            vm = m.start("qs-web")  # returns once QEMU answers; the guest boots on
            print(f"qs-web {vm.state} (pid {vm.pid}, {vm.accel})")
            m.wait_for_console("qs-web", r"VMAN-GUEST-READY|login:", timeout=120)
            with m.console("qs-web") as console:  # one client at a time
                console.write("uname -s\n")
                answer = console.read_until(r"(?m)^Linux", timeout=30)  # what came, ending with the match
                print(f"the guest says {answer.decode(errors='replace').splitlines()[-1]!r}")
            print(f"qs-web {m.stop('qs-web', timeout=30).state}")  # ACPI power button, then forced

        m.delete_vm("qs-web")  # releases its address, keeps its history
        m.delete_vm("qs-db")
        print(f"disks left: {[d.name for d in m.disks()]}")  # one the caller attached outlives its VM
        m.delete_disk("qs-data")
        m.delete_network("qs-lan")
        m.delete_template("qs-small")

        # The stream holds every event since subscribe(), none dropped; a
        # timeout of 0 takes what is there without waiting.
        while (event := events.next(timeout=0)) is not None:
            print(f"event {event.id} {event.object_kind} {event.object_name} {event.action}")
        for event in m.vm_history(web.id):  # a deleted VM's history stays, found by its id
            print(f"qs-web history: {event.action} {event.details_json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except vman.VmanError as e:  # the root of vman's exceptions
        print(f"quickstart: {e}", file=sys.stderr)
        sys.exit(1)
