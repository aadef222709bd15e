"""The catalogue groups: template, network, image, disk, key."""

from __future__ import annotations

from typing import Any, Sequence

import vman

from . import records
from .common import Ctx, path_arg, read_text, seconds_arg, size_arg
from .grammar import Commands
from .output import size, when
from .progress import console_reader, waiting

DEFAULTS = vman.DEFAULTS


def deleted(ctx: Ctx, what: str, name: str) -> None:
    ctx.out.line(f"deleted {what} {name}")


# --- template ---------------------------------------------------------------


def show_template(ctx: Ctx, t: vman.Template) -> None:
    if ctx.out.json:
        return ctx.out.data(records.template(t))
    ctx.out.fields(
        [
            ("name", t.name),
            ("vcpus", t.vcpus),
            ("memory", f"{t.memory_mib} MiB"),
            ("disk", f"{t.disk_gib} GiB"),
            ("description", t.description),
            ("created", when(t.created_at_ms)),
        ]
    )


def template_create(ctx: Ctx) -> None:
    a = ctx.args
    show_template(ctx, ctx.m.create_template(a.name, vcpus=a.vcpus, memory_mib=a.memory, disk_gib=a.disk, description=a.description))


def template_list(ctx: Ctx) -> None:
    ts = ctx.m.templates()
    if ctx.out.json:
        return ctx.out.data([records.template(t) for t in ts])
    ctx.out.table(
        ["NAME", "VCPUS", "MEMORY", "DISK", "DESCRIPTION"],
        [(t.name, t.vcpus, f"{t.memory_mib} MiB", f"{t.disk_gib} GiB", t.description) for t in ts],
    )


def template_show(ctx: Ctx) -> None:
    show_template(ctx, ctx.m.template(ctx.args.name))


def template_delete(ctx: Ctx) -> None:
    ctx.m.delete_template(ctx.args.name)
    deleted(ctx, "template", ctx.args.name)


# --- network ----------------------------------------------------------------


def show_network(ctx: Ctx, n: vman.Network, allocations: Sequence[vman.Allocation]) -> None:
    if ctx.out.json:
        return ctx.out.data(records.network(n, allocations))
    ctx.out.fields(
        [
            ("name", n.name),
            ("vlan", n.vlan),
            ("cidr", n.cidr),
            ("gateway", n.gateway),
            ("reserved", n.reserved),
            ("dns", n.dns),
            ("uplink", n.uplink),
            ("created", when(n.created_at_ms)),
            ("allocations", len(allocations)),
        ]
    )
    if allocations:
        ctx.out.line()
        ctx.out.table(["IP", "MAC", "VM", "NIC"], [(a.ip, a.mac, a.vm_name, a.nic_index) for a in allocations])


def network_create(ctx: Ctx) -> None:
    a = ctx.args
    n = ctx.m.create_network(a.name, vlan=a.vlan, cidr=a.cidr, gateway=a.gateway, reserved=a.reserve, dns=a.dns, uplink=a.uplink)
    show_network(ctx, n, [])


def network_list(ctx: Ctx) -> None:
    ns = ctx.m.networks()
    if ctx.out.json:
        return ctx.out.data([records.network(n) for n in ns])
    ctx.out.table(
        ["NAME", "VLAN", "CIDR", "GATEWAY", "RESERVED", "DNS", "UPLINK"],
        [(n.name, n.vlan, n.cidr, n.gateway, n.reserved, n.dns, n.uplink) for n in ns],
    )


def network_show(ctx: Ctx) -> None:
    show_network(ctx, ctx.m.network(ctx.args.name), ctx.m.allocations(ctx.args.name))


def network_delete(ctx: Ctx) -> None:
    ctx.m.delete_network(ctx.args.name)
    deleted(ctx, "network", ctx.args.name)


# --- image ------------------------------------------------------------------


def show_image(ctx: Ctx, i: vman.Image) -> None:
    if ctx.out.json:
        return ctx.out.data(records.image(i))
    ctx.out.fields(
        [
            ("name", i.name),
            ("os", i.os),
            ("arch", i.arch),
            ("description", i.description),
            ("format", i.format),
            ("virtual size", size(i.virtual_size)),
            ("firmware", i.firmware),
            ("sha256", i.sha256),
            ("path", i.path),
            ("owned", i.owned),
            ("created", when(i.created_at_ms)),
        ]
    )


def image_register(ctx: Ctx) -> None:
    a = ctx.args
    i = ctx.m.register_image(
        a.name, a.path, os=a.os, arch=a.arch, description=a.description, firmware=a.firmware, format=a.format, copy=not a.in_place
    )
    show_image(ctx, i)


def image_list(ctx: Ctx) -> None:
    images = ctx.m.images()
    if ctx.out.json:
        return ctx.out.data([records.image(i) for i in images])
    ctx.out.table(
        ["NAME", "OS", "ARCH", "FORMAT", "SIZE", "FIRMWARE", "DESCRIPTION"],
        [(i.name, i.os, i.arch, i.format, size(i.virtual_size), i.firmware, i.description) for i in images],
    )


def image_show(ctx: Ctx) -> None:
    show_image(ctx, ctx.m.image(ctx.args.name))


def image_delete(ctx: Ctx) -> None:
    ctx.m.delete_image(ctx.args.name)
    deleted(ctx, "image", ctx.args.name)


# --- disk -------------------------------------------------------------------


def show_disk(ctx: Ctx, d: vman.Disk) -> None:
    if ctx.out.json:
        return ctx.out.data(records.disk(d))
    ctx.out.fields(
        [
            ("name", d.name),
            ("state", d.state),
            ("format", d.format),
            ("size", size(d.size_bytes)),
            ("vm", d.vm),
            ("slot", d.slot),
            ("image", d.image),
            ("deleted with vm", d.delete_with_vm),
            ("path", d.path),
            ("owned", d.owned),
            ("last error", d.last_error),
            ("created", when(d.created_at_ms)),
        ]
    )


def disk_create(ctx: Ctx) -> None:
    show_disk(ctx, ctx.m.create_disk(ctx.args.name, ctx.args.size, format=ctx.args.format))


def disk_import(ctx: Ctx) -> None:
    a = ctx.args
    show_disk(ctx, ctx.m.import_disk(a.name, a.path, format=a.format, copy=not a.in_place))


def disk_list(ctx: Ctx) -> None:
    disks = ctx.m.disks(vm=ctx.args.vm)
    if ctx.out.json:
        return ctx.out.data([records.disk(d) for d in disks])
    ctx.out.table(
        ["NAME", "STATE", "FORMAT", "SIZE", "VM", "IMAGE"],
        [(d.name, d.state, d.format, size(d.size_bytes), d.vm, d.image) for d in disks],
    )


def disk_show(ctx: Ctx) -> None:
    show_disk(ctx, ctx.m.disk(ctx.args.name))


def disk_delete(ctx: Ctx) -> None:
    ctx.m.delete_disk(ctx.args.name)
    deleted(ctx, "disk", ctx.args.name)


def disk_attach(ctx: Ctx) -> None:
    show_disk(ctx, ctx.m.attach_disk(ctx.args.vm, ctx.args.disk))


def disk_detach(ctx: Ctx) -> None:
    a = ctx.args
    d = waiting(
        lambda _: f"{a.vm}: detaching {a.disk} (the guest has {a.timeout:g} s to release it)",
        console_reader(ctx.m, a.vm),
        lambda **cancel: ctx.m.detach_disk(a.vm, a.disk, timeout=a.timeout, **cancel),
    )
    show_disk(ctx, d)


def disk_resize(ctx: Ctx) -> None:
    show_disk(ctx, ctx.m.resize_disk(ctx.args.disk, ctx.args.size, force=ctx.args.force))


# --- key --------------------------------------------------------------------


def show_key(ctx: Ctx, k: vman.SshKey) -> None:
    if ctx.out.json:
        return ctx.out.data(records.ssh_key(k))
    ctx.out.fields(
        [
            ("name", k.name),
            ("type", k.key_type),
            ("bits", k.bits),
            ("comment", k.comment),
            ("fingerprint", k.fingerprint_sha256),
            ("md5", k.fingerprint_md5),
            ("public key", k.public_key),
            ("created", when(k.created_at_ms)),
        ]
    )


def key_import(ctx: Ctx) -> None:
    show_key(ctx, ctx.m.import_ssh_key(ctx.args.name, read_text(ctx.args.file).strip()))


def key_list(ctx: Ctx) -> None:
    keys = ctx.m.ssh_keys()
    if ctx.out.json:
        return ctx.out.data([records.ssh_key(k) for k in keys])
    ctx.out.table(
        ["NAME", "TYPE", "BITS", "FINGERPRINT", "COMMENT"],
        [(k.name, k.key_type, k.bits, k.fingerprint_sha256, k.comment) for k in keys],
    )


def key_show(ctx: Ctx) -> None:
    show_key(ctx, ctx.m.ssh_key(ctx.args.name))


def key_delete(ctx: Ctx) -> None:
    ctx.m.delete_ssh_key(ctx.args.name)
    deleted(ctx, "key", ctx.args.name)


# --- grammar ----------------------------------------------------------------


def crud(group: Commands, what: str, list_: Any, show: Any, delete: Any) -> None:
    """The list, show and delete verbs every catalogue group has."""
    group.add("list", list_, f"list {what}s", aliases=["ls"])
    group.add("show", show, f"show one {what}").add_argument("name")
    group.add("delete", delete, f"delete a {what}").add_argument("name")


FORMATS = ["qcow2", "raw"]
FIRMWARES = ["bios", "uefi"]


def register(top: Commands) -> None:
    g = top.group("template", "VM sizes: vCPUs, memory, disk")
    p = g.add("create", template_create, "create a template")
    p.add_argument("name")
    p.add_argument("--vcpus", type=int, required=True, metavar="N")
    p.add_argument("--memory", type=int, required=True, metavar="MIB", help="memory in MiB")
    p.add_argument("--disk", type=int, required=True, metavar="GIB", help="boot disk size in GiB (for VMs made from an image)")
    p.add_argument("--description", default=None, metavar="TEXT")
    crud(g, "template", template_list, template_show, template_delete)

    g = top.group("network", "VLAN networks and their address allocations")
    p = g.add("create", network_create, "create a VLAN network")
    p.add_argument("name")
    p.add_argument("--vlan", type=int, required=True, metavar="N", help="VLAN id (1-4094)")
    p.add_argument("--cidr", required=True, help="IPv4 subnet, e.g. 10.100.0.0/24")
    p.add_argument("--gateway", metavar="IP", help="default: the subnet's first address")
    p.add_argument("--reserve", action="append", default=[], metavar="RANGE", help="addresses never allocated: IP or IP-IP (repeatable)")
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="DNS server given to guests (repeatable)")
    p.add_argument("--uplink", metavar="IF", help="host interface whose 802.1Q sub-interface joins the VLAN")
    crud(g, "network", network_list, network_show, network_delete)

    g = top.group("image", "base images that VMs boot from as linked clones")
    p = g.add("register", image_register, "register a disk image (copied in, SHA-256 kept)")
    p.add_argument("name")
    p.add_argument("path", type=path_arg)
    p.add_argument("--os", default="", help="e.g. debian-12")
    p.add_argument("--arch", default=DEFAULTS["image_arch"])
    p.add_argument("--description", default="", metavar="TEXT")
    p.add_argument("--firmware", choices=FIRMWARES, default=DEFAULTS["firmware"])
    p.add_argument("--format", choices=FORMATS, default=None, help="default: probed")
    p.add_argument("--in-place", action="store_true", help="use the file where it is (inside the state directory) instead of a copy")
    crud(g, "image", image_list, image_show, image_delete)

    g = top.group("disk", "disks: create, import, attach to VMs, resize")
    p = g.add("create", disk_create, "create an empty disk")
    p.add_argument("name")
    p.add_argument("--size", type=size_arg, required=True, help="e.g. 512M, 10G")
    p.add_argument("--format", choices=FORMATS, default=DEFAULTS["disk_format"])
    p = g.add("import", disk_import, "make a disk of an image file (copied in)")
    p.add_argument("name")
    p.add_argument("path", type=path_arg)
    p.add_argument("--format", choices=FORMATS, default=None, help="default: probed")
    p.add_argument("--in-place", action="store_true", help="use the file where it is (inside the state directory) instead of a copy")
    g.add("list", disk_list, "list disks", aliases=["ls"]).add_argument("--vm", help="only the disks of this VM")
    g.add("show", disk_show, "show one disk").add_argument("name")
    g.add("delete", disk_delete, "delete a disk attached to no VM").add_argument("name")
    p = g.add("attach", disk_attach, "attach a disk to a VM (hot-plugged if it runs)")
    p.add_argument("vm")
    p.add_argument("disk")
    p = g.add("detach", disk_detach, "detach a disk from a VM (a running guest is asked to release it)")
    p.add_argument("vm")
    p.add_argument("disk")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULTS["detach_timeout"], metavar="S", help="seconds the guest has to release it")
    p = g.add("resize", disk_resize, "grow a disk (live if its VM runs); shrinking needs --force")
    p.add_argument("disk")
    p.add_argument("size", type=size_arg)
    p.add_argument("--force", action="store_true", help="allow shrinking (data past the new end is lost)")

    g = top.group("key", "SSH public keys that VMs are given through cloud-init")
    p = g.add("import", key_import, "import an OpenSSH public key")
    p.add_argument("name")
    p.add_argument("file", metavar="FILE|-", help="a .pub file, or - for stdin")
    crud(g, "key", key_list, key_show, key_delete)
