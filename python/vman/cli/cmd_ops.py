"""Whole-directory commands: batch, events, host, settings, reconcile."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

import vman

from . import records
from .cmd_vm import add_spec_arguments, print_event, spec
from .common import Ctx, size_arg
from .exits import CliError
from .grammar import Commands
from .output import reader_gone, size, when

DEFAULTS = vman.DEFAULTS

# How often `events --follow` looks whether its reader is still there
# while no event comes.
FOLLOW_CHECK = 0.5


# --- batch ------------------------------------------------------------------


def show_batch(ctx: Ctx, b: Any) -> None:
    if ctx.out.json:
        return ctx.out.data(records.batch(b))
    ctx.out.fields(
        [
            ("name", b.name),
            ("pattern", b.pattern),
            ("count", b.count),
            ("state", b.state),
            ("vms", list(b.vms)),
            ("created", when(b.created_at_ms)),
        ]
    )


def batch_create(ctx: Ctx) -> None:
    a = ctx.args
    b = ctx.m.create_batch(a.pattern, count=a.count, first=a.first, start=a.start, name=a.name, **spec(a))
    show_batch(ctx, b)


def batch_list(ctx: Ctx) -> None:
    batches = ctx.m.batches()
    if ctx.out.json:
        return ctx.out.data([records.batch(b) for b in batches])
    ctx.out.table(
        ["NAME", "PATTERN", "COUNT", "STATE", "CREATED"],
        [(b.name, b.pattern, b.count, b.state, when(b.created_at_ms)) for b in batches],
    )


def batch_show(ctx: Ctx) -> None:
    show_batch(ctx, ctx.m.batch(ctx.args.batch))


def batch_delete(ctx: Ctx) -> None:
    a = ctx.args
    if a.prefix is not None:
        gone = ctx.m.delete_vms(prefix=a.prefix, force=a.force)
    else:
        gone = ctx.m.delete_batch(a.batch, force=a.force)
    names = [str(n) for n in gone or []]
    if ctx.out.json:
        return ctx.out.data({"deleted": names})
    ctx.out.line(f"deleted {len(names)} VMs: {', '.join(names)}" if names else "deleted no VM")


# --- events -----------------------------------------------------------------


def events(ctx: Ctx) -> None:
    """History, then (with --follow) live events as they are committed."""
    a = ctx.args
    m = ctx.m
    vm_id: Optional[str] = None
    if a.vm is not None:
        try:
            vm_id = m.vm(a.vm).id
        except vman.NotFoundError:
            m.vm_history(a.vm, 1)  # the id of a deleted VM, or NotFound
            vm_id = a.vm

    def wanted(e: vman.Event) -> bool:
        return vm_id is None or (e.object_kind == "vm" and e.object_id == vm_id)

    if a.after is not None:
        stream = m.subscribe(after=a.after)
        last = a.after
        if not a.follow:
            with stream:
                shown = 0
                while shown < a.n:
                    e = stream.next(timeout=0)
                    if e is None:
                        break
                    if wanted(e):
                        print_event(ctx.out, e)
                        shown += 1
            return
    else:
        # Subscribed before the history is read, so nothing committed in
        # between is missed; an event both return is printed once.
        stream = m.subscribe()
        history = m.vm_history(vm_id, a.n) if vm_id is not None else m.recent_events(a.n)
        for e in history:
            print_event(ctx.out, e)
        last = history[-1].id if history else 0
        if not a.follow:
            stream.close()
            return
    sys.stdout.flush()
    with stream:
        while True:
            e = stream.next(timeout=FOLLOW_CHECK)
            if e is None:
                if reader_gone():
                    raise BrokenPipeError("stdout's reader went away")  # main exits quietly
                continue
            if e.id > last and wanted(e):
                print_event(ctx.out, e)
                sys.stdout.flush()


# --- host -------------------------------------------------------------------


def host_health(ctx: Ctx) -> None:
    h = records.host_health(ctx.m.host_health())
    if ctx.out.json:
        return ctx.out.data(h)
    rows = []
    for c in h["checks"]:
        status = "ok" if c["ok"] else "FAILED" if c["required"] else "not usable (not needed)"
        rows.append((c["name"], status, c["detail"] + (f"; fix: {c['fix']}" if c["fix"] else "")))
    ctx.out.table(["CHECK", "STATUS", "DETAIL"], rows)
    ctx.out.line("healthy" if h["ok"] else "unhealthy: a required check failed")


def percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} %"


def host_stats(ctx: Ctx) -> None:
    s = records.host_stats(ctx.m.host_stats())
    if ctx.out.json:
        return ctx.out.data(s)
    ctx.out.fields(
        [
            ("cpus", f"{s['cpu_count']}, {percent(s['cpu_busy_percent'])} busy"),
            ("load", f"{s['load_1']:.2f} {s['load_5']:.2f} {s['load_15']:.2f}"),
            ("memory", f"{size(s['memory_available_bytes'])} available of {size(s['memory_total_bytes'])}"),
            ("disk", f"{size(s['disk_available_bytes'])} available of {size(s['disk_total_bytes'])} (state directory's filesystem)"),
        ]
    )
    if s["vms"]:
        ctx.out.line()
        rows = []
        for v in s["vms"]:
            cpu_time = None if v["cpu_time_ms"] is None else f"{v['cpu_time_ms'] / 1000:.1f} s"
            rows.append((v["name"], v["state"], v["pid"], percent(v["cpu_percent"]), cpu_time, size(v["rss_bytes"]), size(v["disk_bytes"])))
        ctx.out.table(["VM", "STATE", "PID", "CPU", "CPU TIME", "MEMORY", "DISK"], rows)


# --- settings ---------------------------------------------------------------


def show_settings(ctx: Ctx, values: Any) -> None:
    s = records.settings(values)
    if ctx.out.json:
        return ctx.out.data(s)
    ctx.out.fields(list(s.items()))


def settings_show(ctx: Ctx) -> None:
    show_settings(ctx, ctx.m.settings())


# Settings whose value is a size: they take what `disk create --size` takes.
SIZE_SETTINGS = {"serial_log_cap_bytes"}


def settings_set(ctx: Ctx) -> None:
    key, value = ctx.args.key, ctx.args.value
    if key in SIZE_SETTINGS:
        try:
            value = size_arg(value)
        except argparse.ArgumentTypeError as e:
            raise CliError("invalid_argument", f"{key}: {e}") from None
    show_settings(ctx, ctx.m.set_setting(key, value))


# --- reconcile --------------------------------------------------------------


def reconcile(ctx: Ctx) -> None:
    r = ctx.m.reconcile()
    if ctx.out.json:
        return ctx.out.data(records.reconcile_report(r))
    for d in r.drifts:
        ctx.out.line(f"{d.vm}: {d.found}; {d.action}")
    ctx.out.line(f"{len(r.drifts)} drift(s) repaired; adopted: {', '.join(r.adopted) or '-'}")


def register(top: Commands) -> None:
    g = top.group("batch", "many VMs in one call, rolled back as a whole if one fails")
    p = g.add("create", batch_create, "create COUNT VMs named by PATTERN (worker{:02} -> worker01, worker02, ...)")
    p.add_argument("pattern")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument("--first", type=int, default=1, metavar="N", help="the number of the first VM (default 1)")
    p.add_argument("--name", help="the batch's name (default: made from the pattern)")
    add_spec_arguments(p)  # each VM is made as `vm create` makes one; --start starts them all
    g.add("list", batch_list, "list batches", aliases=["ls"])
    g.add("show", batch_show, "show one batch").add_argument("batch")
    p = g.add("delete", batch_delete, "delete a batch's VMs, or every VM whose name starts with --prefix")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("batch", nargs="?")
    what.add_argument("--prefix", help="every VM whose name starts so, in a batch or not")
    p.add_argument("--force", action="store_true", help="stop running VMs first (without it, any running VM refuses the delete)")

    p = top.add(
        "events", events, "the event history; --follow for live events", description="events, oldest first (JSON Lines with --json)"
    )
    p.add_argument("--follow", "-f", action="store_true", help="then print events as they are committed, until Ctrl-C")
    p.add_argument("--after", type=int, metavar="ID", help="the events after this id (resume where a consumer stopped)")
    p.add_argument("-n", type=int, default=DEFAULTS["history_limit"], metavar="N", help="at most N events of history")
    p.add_argument("--vm", help="only this VM's events")

    g = top.group("host", "the host: can it run VMs, and what they use")
    g.add("health", host_health, "whether QEMU, qemu-img, acceleration, bridging and dnsmasq are usable, and why not")
    g.add("stats", host_stats, "host CPU, memory and disk; each VM's CPU time, memory and disk")

    g = top.group("settings", "settings of the state directory, used by every process that opens it")
    g.add("show", settings_show, "print the settings")
    p = g.add("set", settings_set, "change a setting")
    p.add_argument("key")
    p.add_argument("value", help="serial_log_cap_bytes takes a size as disk create --size does (4M, 4194304)")

    top.add("reconcile", reconcile, "make the records true to what runs (also done at every open)")
