"""Driver process of the comparative harness: libvirt, through its Python API.

Run with Debian's /usr/bin/python3 (python3-libvirt) against qemu:///system,
with the TCG domain type (``<domain type='qemu'>``). JSON lines on stdin,
one answer per line on stdout (see README.md); each operation is timed here
with ``time.perf_counter`` around the libvirt calls:

- create (define): with disk "linked", ``qemu-img create`` of the overlay
  (libvirt does not make it) + ``defineXML``; else ``defineXML`` alone.
- start: ``createWithFlags(0)``: returns once QEMU runs (QMP answered).
- force_stop: ``destroy()``: returns once QEMU is gone.
- graceful_stop: ``shutdownFlags(ACPI_POWER_BTN)`` → the lifecycle event
  STOPPED (an event, not a poll).
- delete (undefine): ``undefine()`` + removing the overlay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Optional
from xml.sax.saxutils import escape

import libvirt  # type: ignore[import-not-found,unused-ignore]
from protocol import serve

PREFIX = "vman-bench-"
# vman's argv has this many pcie-root-port devices (hot-plug slots).
ROOT_PORTS = 16


def domain_xml(name: str, d: dict[str, Any], overlay: Optional[str], serial: str) -> str:
    """The domain equivalent to vman's argv: q35, TCG, 1 vCPU, the guest's
    memory, direct kernel boot, no NIC, no USB, no balloon, no display, the
    serial console to a file, the boot disk as virtio-blk, and what vman
    always gives a VM: 16 PCIe root ports (its hot-plug slots) and an empty
    CD-ROM drive on q35's SATA (AHCI) controller."""
    ports = "\n    ".join(
        ["<controller type='pci' index='0' model='pcie-root'/>"]
        + [f"<controller type='pci' index='{i}' model='pcie-root-port'/>" for i in range(1, ROOT_PORTS + 1)]
    )
    disk = ""
    if overlay:
        disk = (
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>"
            f"<source file='{escape(overlay)}'/><target dev='vda' bus='virtio'/></disk>"
        )
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(d.get("memory_mib", 256))}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{escape(d["kernel"])}</kernel>
    <initrd>{escape(d["initrd"])}</initrd>
    <cmdline>{escape(d["cmdline"])}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {disk}
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>
    {ports}
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{escape(serial)}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


class Driver:
    def __init__(self, req: dict[str, Any]) -> None:
        self.req = req
        self.root = os.path.join(req["state"], "libvirt")
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        os.chmod(self.root, 0o755)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=self._loop, daemon=True).start()
        self.conn = libvirt.open("qemu:///system")
        self.stopped: dict[str, threading.Event] = {}
        self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None)
        self.defined: set[str] = set()

    @staticmethod
    def _loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    def _lifecycle(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            ev = self.stopped.get(dom.name())
            if ev is not None:
                ev.set()

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def op(self, op: str, req: dict[str, Any]) -> float:
        name = PREFIX + req["name"]
        timeout = float(req.get("timeout", 60.0))
        if op == "create":
            d = self._dir(name)
            os.makedirs(d, mode=0o755, exist_ok=True)
            os.chmod(d, 0o755)
            overlay = os.path.join(d, "disk.qcow2") if req["disk"] == "linked" else None
            xml = domain_xml(name, self.req, overlay, os.path.join(d, "serial.log"))
            t = time.perf_counter()
            if overlay:
                subprocess.run(
                    ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.req["base"], overlay, "1G"],
                    check=True,
                )
            self.conn.defineXML(xml)
            s = time.perf_counter() - t
            self.defined.add(name)
            return s
        dom = self.conn.lookupByName(name)
        if op == "start":
            self.stopped[name] = threading.Event()
            t = time.perf_counter()
            dom.createWithFlags(0)
            return time.perf_counter() - t
        if op == "force_stop":
            t = time.perf_counter()
            dom.destroy()
            return time.perf_counter() - t
        if op == "ready":
            log = os.path.join(self._dir(name), "serial.log")
            t = time.perf_counter()
            while time.perf_counter() - t < timeout:
                try:
                    with open(log, "rb") as f:
                        if b"VMAN-GUEST-READY" in f.read():
                            return time.perf_counter() - t
                except FileNotFoundError:
                    pass
                time.sleep(0.01)
            raise TimeoutError("no VMAN-GUEST-READY")
        if op == "graceful_stop":
            ev = self.stopped[name]
            t = time.perf_counter()
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            if not ev.wait(timeout):
                raise TimeoutError("the domain did not shut off")
            return time.perf_counter() - t
        if op == "delete":
            overlay = os.path.join(self._dir(name), "disk.qcow2")
            t = time.perf_counter()
            dom.undefine()
            if os.path.exists(overlay):
                os.remove(overlay)
            s = time.perf_counter() - t
            self.defined.discard(name)
            return s
        raise ValueError(f"unknown op {op!r}")

    def cleanup(self) -> None:
        """Destroys and undefines the domains this driver defined, and no other."""
        for name in list(self.defined):
            try:
                dom = self.conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass


def main() -> None:
    serve(Driver, lambda: libvirt.getVersion())


if __name__ == "__main__":
    main()
