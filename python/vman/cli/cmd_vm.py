"""The VM verbs (``vman vm <verb>``, each also top-level) and snapshots."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import vman

from . import console as console_cmd
from . import records
from .common import Ctx, check_pattern, count_arg, path_arg, read_text, seconds_arg
from .exits import CliError
from .grammar import Commands
from .output import Output, size, when
from .progress import console_reader, waiting
from .terminal import strip_escapes

DEFAULTS = vman.DEFAULTS
STATES = list(vman.VM_STATES)


def nic_arg(text: str) -> Tuple[str, Optional[str]]:
    """``NET`` or ``NET=IP``."""
    network, _, ip = text.partition("=")
    if not network or (_ and not ip):
        raise argparse.ArgumentTypeError(f"invalid NIC {text!r} (NET or NET=IP)")
    return network, ip or None


def addresses(v: vman.Vm) -> str:
    return ", ".join(f"{n.network}:{n.ip}" for n in v.nics) or "-"


def show_vm(ctx: Ctx, v: vman.Vm, **extra: Any) -> None:
    """One VM in full, with its disks (``vm show``, ``vm create``)."""
    disks = sorted(ctx.m.disks(vm=v.name), key=lambda d: (d.slot is None, d.slot or 0, d.name))
    if ctx.out.json:
        return ctx.out.data({**records.vm(v), "disks": [records.vm_disk(d) for d in disks], **extra})
    boot = "kernel " + (v.kernel or "") if v.kernel else None
    pairs: List[Tuple[str, Any]] = [
        ("name", v.name),
        ("id", v.id),
        ("state", v.state),
        ("template", f"{v.template} ({v.vcpus} vCPU, {v.memory_mib} MiB, {v.disk_gib} GiB)"),
        ("pid", v.pid),
        ("accel", v.accel),
        ("last error", v.last_error),
    ]
    for n in v.nics:
        tap = f", {n.host_interface}" if n.host_interface else ""
        pairs.append((f"nic {n.index}", f"{n.network} (VLAN {n.vlan}) {n.ip}/{n.prefix_len} gw {n.gateway} {n.mac}{tap}"))
    for f in v.port_forwards:
        pairs.append((f"forward {f.nic_index}", f"{f.host_address}:{f.host_port} -> guest port {f.guest_port}"))
    if boot:
        pairs += [("boot", boot), ("initrd", v.initrd), ("cmdline", v.cmdline)]
    pairs += [
        ("firmware", v.firmware),
        ("cdrom", f"{v.cdrom}{' (boots first)' if v.boot_from_cdrom else ''}" if v.cdrom else None),
        ("display", f"{v.display} {v.display_address or ''}".strip()),
        ("cloud-init", v.cloud_init),
        ("ssh keys", [k.name for k in v.ssh_keys]),
        ("disks", [f"{d.name} (slot {d.slot}, {size(d.size_bytes)})" for d in disks]),
        ("created", when(v.created_at_ms)),
        ("updated", when(v.updated_at_ms)),
    ]
    ctx.out.fields(pairs)


def one_line(out: Output, v: vman.Vm, note: str = "") -> None:
    """The state a lifecycle verb left the VM in."""
    facts = [f"pid {v.pid}", v.accel] if v.pid else []
    text = f"{v.name}: {v.state}"
    if facts or note:
        text += " (" + ", ".join([str(f) for f in facts if f] + ([note] if note else [])) + ")"
    out.line(text)


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    """The options that say how a VM is made, shared by ``vm create`` and
    ``batch create`` (so the two cannot drift); :func:`spec` reads them."""
    p.add_argument("--template", required=True)
    p.add_argument("--image", help="boot from a linked clone of this image")
    p.add_argument("--blank-disk", action="store_true", help="give it an empty boot disk of the template's size")
    p.add_argument("--nic", action="append", default=[], type=nic_arg, metavar="NET[=IP]", help="a NIC on network NET (repeatable)")
    p.add_argument("--kernel", type=path_arg, help="boot this kernel directly")
    p.add_argument("--initrd", type=path_arg)
    p.add_argument("--cmdline")
    p.add_argument("--key", action="append", default=[], metavar="KEY", help="an SSH key of the catalogue (repeatable)")
    p.add_argument("--cloud-init", action="store_true", help="give it a NoCloud seed (keys, addresses)")
    p.add_argument("--user-data", metavar="FILE", help="cloud-config merged into the seed (implies --cloud-init)")
    p.add_argument("--firmware", choices=["bios", "uefi"], help="default: the image's, else bios")
    p.add_argument("--cdrom", type=path_arg, metavar="ISO")
    p.add_argument("--boot-from-cdrom", action="store_true")
    p.add_argument("--display", choices=["none", "vnc-unix", "vnc-tcp"], default=DEFAULTS["display"])
    p.add_argument("--start", action="store_true", help="start it once made")


def spec(a: argparse.Namespace) -> Dict[str, Any]:
    """The keyword arguments of ``create_vm`` and ``create_batch`` the
    options of :func:`add_spec_arguments` give (the user data file read)."""
    user_data = read_text(a.user_data) if a.user_data else None
    nics: List[Union[str, vman.NicSpec]] = [net if ip is None else vman.NicSpec(net, ip=ip) for net, ip in a.nic]
    return dict(
        template=a.template,
        nics=nics,
        kernel=a.kernel,
        initrd=a.initrd,
        cmdline=a.cmdline,
        image=a.image,
        blank_disk=a.blank_disk,
        firmware=a.firmware,
        cdrom=a.cdrom,
        boot_from_cdrom=a.boot_from_cdrom,
        display=a.display,
        cloud_init=a.cloud_init or a.user_data is not None,
        user_data=user_data,
        ssh_keys=a.key,
    )


def vm_create(ctx: Ctx) -> None:
    a = ctx.args
    m = ctx.m
    for d in a.disk:
        m.disk(d)  # every named disk exists before anything is made
    v = m.create_vm(a.name, **spec(a))
    try:
        for d in a.disk:
            m.attach_disk(v.name, d)
    except BaseException:
        # All or nothing: the VM goes, the disks it was given stay.
        m.delete_vm(v.name, force=True)
        raise
    if a.start:
        v = m.start(v.name)
    show_vm(ctx, m.vm(v.name))


def vm_list(ctx: Ctx) -> None:
    vms = ctx.m.vms(state=ctx.args.state, name_prefix=ctx.args.prefix)
    if ctx.out.json:
        return ctx.out.data([records.vm(v) for v in vms])
    ctx.out.table(
        ["NAME", "STATE", "TEMPLATE", "VCPUS", "MEMORY", "ADDRESSES", "PID"],
        [(v.name, v.state, v.template, v.vcpus, f"{v.memory_mib} MiB", addresses(v), v.pid) for v in vms],
    )


def vm_show(ctx: Ctx) -> None:
    show_vm(ctx, ctx.m.vm(ctx.args.vm))


def vm_delete(ctx: Ctx) -> None:
    ctx.m.delete_vm(ctx.args.vm, force=ctx.args.force)
    ctx.out.line(f"deleted VM {ctx.args.vm}")


def vm_start(ctx: Ctx) -> None:
    a = ctx.args
    if a.wait_console is not None:
        check_pattern(ctx.m, a.vm, a.wait_console, "--wait-console")  # before the start: a refusal changes nothing
    v = ctx.m.start(a.vm)
    if a.wait_console is None:
        return show_state(ctx, v)
    line = waiting(
        lambda _: f"{v.name}: waiting for {a.wait_console!r} on the console",
        console_reader(ctx.m, v.name),
        lambda **cancel: ctx.m.wait_for_console(v.name, a.wait_console, timeout=a.timeout, **cancel),
    )
    v = ctx.m.vm(v.name)
    if ctx.out.json:
        return ctx.out.data({**records.vm(v), "console_line": line})
    one_line(ctx.out, v)
    ctx.out.line(f"{v.name}: console: {line}")


def show_state(ctx: Ctx, v: vman.Vm, note: str = "", **extra: Any) -> None:
    if ctx.out.json:
        return ctx.out.data({**records.vm(v), **extra})
    one_line(ctx.out, v, note)


def last_event_id(m: vman.Manager) -> int:
    newest = m.recent_events(1)
    return newest[-1].id if newest else 0


def vm_stop(ctx: Ctx) -> None:
    a = ctx.args
    m = ctx.m
    if a.force:
        return show_state(ctx, m.force_stop(a.vm))
    before = last_event_id(m)

    def describe(elapsed: float) -> str:
        if elapsed < a.timeout:
            return f"{a.vm}: stopping (ACPI power button; forced after {a.timeout:g} s)"
        return f"{a.vm}: forcing the stop (no power-off within {a.timeout:g} s)"

    v = waiting(describe, console_reader(m, a.vm), lambda **cancel: m.stop(a.vm, timeout=a.timeout, **cancel))
    forced = any(e.action == "forced" and e.id > before for e in m.vm_history(v.id, 10))
    note = f"forced: the guest did not power off within {a.timeout:g} s" if forced else ""
    show_state(ctx, v, note, forced=forced)


def vm_restart(ctx: Ctx) -> None:
    a = ctx.args
    v = waiting(
        lambda _: f"{a.vm}: restarting (ACPI power button, forced after {a.timeout:g} s, then start)",
        console_reader(ctx.m, a.vm),
        lambda **cancel: ctx.m.restart(a.vm, timeout=a.timeout, **cancel),
    )
    show_state(ctx, v)


def vm_pause(ctx: Ctx) -> None:
    show_state(ctx, ctx.m.pause(ctx.args.vm))


def vm_resume(ctx: Ctx) -> None:
    show_state(ctx, ctx.m.resume(ctx.args.vm))


def vm_status(ctx: Ctx) -> None:
    v = ctx.m.vm(ctx.args.vm)
    if ctx.out.json:
        return ctx.out.data(records.vm_status(v))
    ctx.out.line(f"{v.state}: {v.last_error}" if v.last_error else v.state)


def print_events(out: Output, events: Sequence[vman.Event]) -> None:
    for e in events:
        print_event(out, e)


def print_event(out: Output, e: vman.Event) -> None:
    if out.json:
        return out.json_line(records.event(e))
    out.line(f"{e.id:>6}  {when(e.at_ms)}  {e.object_kind:<8} {e.object_name:<16} {e.action:<16} {e.os_user}[{e.pid}]  {e.details_json}")


def vm_history(ctx: Ctx) -> None:
    print_events(ctx.out, ctx.m.vm_history(ctx.args.vm, ctx.args.n))


def vm_display(ctx: Ctx) -> None:
    v = ctx.m.vm(ctx.args.vm)
    if ctx.out.json:
        return ctx.out.data(records.vm_display(v))
    if v.display == "none":
        ctx.out.line("none")
    else:
        ctx.out.line(f"{v.display} {v.display_address or '(when it runs)'}")


def vm_cdrom(ctx: Ctx) -> None:
    a = ctx.args
    v = ctx.m.change_cdrom(a.vm, None if a.eject else a.iso)
    if ctx.out.json:
        return ctx.out.data(records.vm(v))
    when_ = "now" if v.pid else "from its next start"
    ctx.out.line(f"{v.name}: CD-ROM {v.cdrom} ({when_})" if v.cdrom else f"{v.name}: CD-ROM ejected ({when_})")


def vm_console(ctx: Ctx) -> None:
    a = ctx.args
    for kind, pattern in a.steps:
        if kind == "expect":
            check_pattern(ctx.m, a.vm, pattern, "--expect")  # before any --send reaches the guest
    console_cmd.console(ctx.m, ctx.out, a.vm, a.steps, a.timeout, a.raw)


def vm_tail(ctx: Ctx) -> None:
    a = ctx.args
    if ctx.out.json:
        if a.follow:
            raise CliError("invalid_argument", "--follow prints console output as it comes; it has no --json form")
        data = ctx.m.console_tail(a.vm, a.bytes)
        text = data.decode("utf-8", errors="replace") if a.raw else strip_escapes(data)
        return ctx.out.data({"vm": a.vm, "output": text})
    console_cmd.tail(ctx.m, a.vm, a.bytes, a.follow, a.raw)


class StepAction(argparse.Action):
    """``--send`` and ``--expect`` into one list, in command-line order."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Optional[str] = None
    ) -> None:
        steps = list(getattr(namespace, self.dest, None) or [])
        steps.append(("send" if option_string == "--send" else "expect", values))
        setattr(namespace, self.dest, steps)


def register_vm_verbs(g: Commands, shown: bool) -> None:
    """The VM verbs, under ``vm`` (``shown``) and again at the top level
    (hidden from the list; ``vman start web1`` is ``vman vm start web1``)."""

    def h(text: str) -> Optional[str]:
        return text if shown else None

    p = g.add("create", vm_create, h("create a VM"), description="create a VM (its addresses are allocated at once)")
    p.add_argument("name")
    add_spec_arguments(p)
    p.add_argument("--disk", action="append", default=[], metavar="DISK", help="attach this disk (repeatable)")
    p = g.add("list", vm_list, h("list VMs"), aliases=["ls"])
    p.add_argument("--prefix", help="only VMs whose name starts so")
    p.add_argument("--state", choices=STATES, help="only VMs in this state")
    g.add("show", vm_show, h("show one VM")).add_argument("vm")
    p = g.add("delete", vm_delete, h("delete a VM (releases its addresses, deletes its own disks)"))
    p.add_argument("vm")
    p.add_argument("--force", action="store_true", help="stop it first if it runs")
    p = g.add("start", vm_start, h("start a VM"))
    p.add_argument("vm")
    p.add_argument("--wait-console", metavar="REGEX", help="then wait for a console line matching REGEX")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULTS["console_wait_timeout"], metavar="S", help="how long --wait-console waits")
    p = g.add("stop", vm_stop, h("stop a VM: ACPI power button, forced after --timeout"))
    p.add_argument("vm")
    p.add_argument("--force", action="store_true", help="stop at once (no power button)")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULTS["stop_timeout"], metavar="S", help="seconds the guest has to power off")
    p = g.add("restart", vm_restart, h("stop (gracefully, up to --timeout) and start a VM"))
    p.add_argument("vm")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULTS["stop_timeout"], metavar="S", help="seconds the guest has to power off")
    g.add("pause", vm_pause, h("pause a running VM's vCPUs")).add_argument("vm")
    g.add("resume", vm_resume, h("resume a paused VM")).add_argument("vm")
    g.add("status", vm_status, h("print a VM's state")).add_argument("vm")
    p = g.add("history", vm_history, h("a VM's events, oldest first"))
    p.add_argument("vm", help="a VM's name, or the id of a deleted one")
    p.add_argument("-n", type=int, default=DEFAULTS["history_limit"], metavar="N", help="the newest N events")
    g.add("display", vm_display, h("where a VM's VNC display listens")).add_argument("vm")
    p = g.add("cdrom", vm_cdrom, h("put an ISO in a VM's CD-ROM drive, or eject it (at once if it runs)"))
    p.add_argument("vm")
    iso = p.add_mutually_exclusive_group(required=True)
    iso.add_argument("iso", nargs="?", type=path_arg, metavar="ISO")
    iso.add_argument("--eject", action="store_true", help="empty the drive")
    p = g.add(
        "console",
        vm_console,
        h("the serial console: interactive on a terminal (Ctrl-] leaves), scripted with --send/--expect"),
    )
    p.add_argument("vm")
    p.add_argument(
        "--send", action=StepAction, dest="steps", metavar="TEXT", help="type TEXT and Enter (repeatable; in order with --expect)"
    )
    p.add_argument("--expect", action=StepAction, dest="steps", metavar="REGEX", help="wait for output matching REGEX and print it")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULTS["console_wait_timeout"], metavar="S", help="how long each --expect waits")
    p.add_argument("--raw", action="store_true", help="print output with its escape codes")
    p.set_defaults(steps=[])
    p = g.add("tail", vm_tail, h("the end of a VM's console output (escape codes removed)"))
    p.add_argument("vm")
    p.add_argument("--bytes", type=count_arg, default=DEFAULTS["console_tail_bytes"], metavar="N", help="at most the last N bytes")
    p.add_argument("--follow", "-f", action="store_true", help="then print what comes, until Ctrl-C")
    p.add_argument("--raw", action="store_true", help="as the guest wrote it, escape codes included")


# --- snapshot ---------------------------------------------------------------


def show_snapshot(ctx: Ctx, s: vman.Snapshot) -> None:
    if ctx.out.json:
        return ctx.out.data(records.snapshot(s))
    ctx.out.line(f"{s.vm}: snapshot {s.name} {s.state} ({'live, with memory' if s.live else 'disks only'})")


def snapshot_create(ctx: Ctx) -> None:
    a = ctx.args
    s = waiting(
        lambda _: f"{a.vm}: taking snapshot {a.name}",
        console_reader(ctx.m, a.vm),
        lambda **cancel: ctx.m.create_snapshot(a.vm, a.name, **cancel),
    )
    show_snapshot(ctx, s)


def snapshot_list(ctx: Ctx) -> None:
    snaps = ctx.m.snapshots(ctx.args.vm)
    if ctx.out.json:
        return ctx.out.data([records.snapshot(s) for s in snaps])
    ctx.out.table(["NAME", "STATE", "LIVE", "CREATED"], [(s.name, s.state, s.live, when(s.created_at_ms)) for s in snaps])


def snapshot_revert(ctx: Ctx) -> None:
    a = ctx.args
    s = waiting(
        lambda _: f"{a.vm}: reverting to {a.name}",
        console_reader(ctx.m, a.vm),
        lambda **cancel: ctx.m.revert_snapshot(a.vm, a.name, **cancel),
    )
    if ctx.out.json:
        return ctx.out.data(records.snapshot(s))
    ctx.out.line(f"{a.vm}: reverted to snapshot {s.name} ({'disks and memory' if s.live else 'disks'})")


def snapshot_delete(ctx: Ctx) -> None:
    a = ctx.args
    waiting(lambda _: f"{a.vm}: deleting snapshot {a.name}", None, lambda **cancel: ctx.m.delete_snapshot(a.vm, a.name, **cancel))
    ctx.out.line(f"deleted snapshot {a.name} of {a.vm}")


def register(top: Commands) -> None:
    register_vm_verbs(top.group("vm", "virtual machines (every vm verb is also a top-level command)"), shown=True)
    register_vm_verbs(top, shown=False)
    g = top.group("snapshot", "snapshots of a VM's disks (and memory, if it runs)")
    for verb, handler, text in [
        ("create", snapshot_create, "take a snapshot (live: with memory)"),
        ("revert", snapshot_revert, "bring a VM back to a snapshot"),
        ("delete", snapshot_delete, "delete a snapshot"),
    ]:
        p = g.add(verb, handler, text)
        p.add_argument("vm")
        p.add_argument("name")
    g.add("list", snapshot_list, "a VM's snapshots, oldest first", aliases=["ls"]).add_argument("vm")
