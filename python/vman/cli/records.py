"""vman's records as JSON objects, one explicit converter per record type.

The field names are the ``--json`` contract documented in docs/cli.md:
a field is never renamed or given a new meaning; new fields may be added.
They follow the Python attribute names; times are milliseconds since the
Unix epoch (``*_ms``), sizes bytes unless the name says otherwise.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import vman

Json = Dict[str, Any]


def template(t: vman.Template) -> Json:
    return {
        "id": t.id,
        "name": t.name,
        "vcpus": t.vcpus,
        "memory_mib": t.memory_mib,
        "disk_gib": t.disk_gib,
        "description": t.description,
        "created_at_ms": t.created_at_ms,
    }


def network(n: vman.Network, allocations: Optional[Sequence[vman.Allocation]] = None) -> Json:
    out: Json = {
        "id": n.id,
        "name": n.name,
        "vlan": n.vlan,
        "cidr": n.cidr,
        "gateway": n.gateway,
        "reserved": list(n.reserved),
        "dns": list(n.dns),
        "uplink": n.uplink,
        "created_at_ms": n.created_at_ms,
    }
    if allocations is not None:
        out["allocations"] = [allocation(a) for a in allocations]
    return out


def allocation(a: vman.Allocation) -> Json:
    return {"ip": a.ip, "mac": a.mac, "vm": a.vm_name, "vm_id": a.vm_id, "nic_index": a.nic_index}


def nic(n: vman.Nic) -> Json:
    return {
        "index": n.index,
        "network": n.network,
        "vlan": n.vlan,
        "ip": n.ip,
        "prefix_len": n.prefix_len,
        "gateway": n.gateway,
        "mac": n.mac,
        "host_interface": n.host_interface,
    }


def port_forward(f: vman.PortForward) -> Json:
    return {"nic_index": f.nic_index, "guest_port": f.guest_port, "host_address": f.host_address, "host_port": f.host_port}


def vm_ssh_key(k: vman.VmSshKey) -> Json:
    return {"name": k.name, "public_key": k.public_key, "fingerprint_sha256": k.fingerprint_sha256}


def vm(v: vman.Vm) -> Json:
    return {
        "id": v.id,
        "name": v.name,
        "state": v.state,
        "template": v.template,
        "vcpus": v.vcpus,
        "memory_mib": v.memory_mib,
        "disk_gib": v.disk_gib,
        "nics": [nic(n) for n in v.nics],
        "pid": v.pid,
        "accel": v.accel,
        "last_error": v.last_error,
        "port_forwards": [port_forward(f) for f in v.port_forwards],
        "kernel": v.kernel,
        "initrd": v.initrd,
        "cmdline": v.cmdline,
        "firmware": v.firmware,
        "cdrom": v.cdrom,
        "boot_from_cdrom": v.boot_from_cdrom,
        "display": v.display,
        "display_address": v.display_address,
        "cloud_init": v.cloud_init,
        "user_data": v.user_data,
        "ssh_keys": [vm_ssh_key(k) for k in v.ssh_keys],
        "created_at_ms": v.created_at_ms,
        "updated_at_ms": v.updated_at_ms,
    }


def vm_status(v: vman.Vm) -> Json:
    return {"name": v.name, "state": v.state, "pid": v.pid, "accel": v.accel, "last_error": v.last_error}


def vm_display(v: vman.Vm) -> Json:
    return {"name": v.name, "display": v.display, "address": v.display_address}


def disk(d: vman.Disk) -> Json:
    return {
        "id": d.id,
        "name": d.name,
        "state": d.state,
        "format": d.format,
        "size_bytes": d.size_bytes,
        "vm": d.vm,
        "slot": d.slot,
        "image": d.image,
        "delete_with_vm": d.delete_with_vm,
        "path": d.path,
        "owned": d.owned,
        "last_error": d.last_error,
        "created_at_ms": d.created_at_ms,
    }


def vm_disk(d: vman.Disk) -> Json:
    """A disk as ``vm show`` lists it under its VM."""
    return {"name": d.name, "slot": d.slot, "size_bytes": d.size_bytes}


def image(i: vman.Image) -> Json:
    return {
        "id": i.id,
        "name": i.name,
        "os": i.os,
        "arch": i.arch,
        "description": i.description,
        "format": i.format,
        "virtual_size": i.virtual_size,
        "firmware": i.firmware,
        "sha256": i.sha256,
        "path": i.path,
        "owned": i.owned,
        "created_at_ms": i.created_at_ms,
    }


def ssh_key(k: vman.SshKey) -> Json:
    return {
        "id": k.id,
        "name": k.name,
        "key_type": k.key_type,
        "bits": k.bits,
        "comment": k.comment,
        "fingerprint_sha256": k.fingerprint_sha256,
        "fingerprint_md5": k.fingerprint_md5,
        "public_key": k.public_key,
        "created_at_ms": k.created_at_ms,
    }


def snapshot(s: vman.Snapshot) -> Json:
    return {"id": s.id, "vm": s.vm, "name": s.name, "live": s.live, "state": s.state, "created_at_ms": s.created_at_ms}


def event(e: vman.Event) -> Json:
    return {
        "id": e.id,
        "at_ms": e.at_ms,
        "object_kind": e.object_kind,
        "object_id": e.object_id,
        "object_name": e.object_name,
        "action": e.action,
        "details": e.details,
        "os_user": e.os_user,
        "pid": e.pid,
    }


def reconcile_report(r: vman.ReconcileReport) -> Json:
    return {"drifts": [{"vm": d.vm, "found": d.found, "action": d.action} for d in r.drifts], "adopted": list(r.adopted)}


# Records of calls other parts of issue 10 add (batches, host health and
# stats, settings). The library's stubs do not name them yet, so they
# arrive as Any; each converter still lists its fields, which are those of
# vman-core's records.


def batch(b: Any) -> Json:
    return {
        "id": b.id,
        "name": b.name,
        "pattern": b.pattern,
        "count": b.count,
        "state": b.state,
        "vms": list(b.vms),
        "created_at_ms": b.created_at_ms,
    }


def health_check(c: Any) -> Json:
    return {"name": c.name, "ok": c.ok, "required": c.required, "detail": c.detail, "fix": c.fix}


def host_health(h: Any) -> Json:
    return {"ok": h.ok, "checks": [health_check(c) for c in h.checks]}


def vm_stats(s: Any) -> Json:
    return {
        "name": s.name,
        "id": s.id,
        "state": s.state,
        "pid": s.pid,
        "cpu_time_ms": s.cpu_time_ms,
        "cpu_percent": s.cpu_percent,
        "rss_bytes": s.rss_bytes,
        "disk_bytes": s.disk_bytes,
    }


def host_stats(s: Any) -> Json:
    return {
        "at_ms": s.at_ms,
        "sample_ms": s.sample_ms,
        "cpu_count": s.cpu_count,
        "cpu_busy_percent": s.cpu_busy_percent,
        "load_1": s.load_1,
        "load_5": s.load_5,
        "load_15": s.load_15,
        "memory_total_bytes": s.memory_total_bytes,
        "memory_available_bytes": s.memory_available_bytes,
        "disk_total_bytes": s.disk_total_bytes,
        "disk_available_bytes": s.disk_available_bytes,
        "vms": [vm_stats(v) for v in s.vms],
    }


def settings(s: Any) -> Json:
    return {
        "network": s.network,
        "accel": s.accel,
        "qemu_binary": str(s.qemu_binary),
        "dnsmasq_binary": str(s.dnsmasq_binary),
        "qemu_user": s.qemu_user,
        "serial_log_cap_bytes": s.serial_log_cap_bytes,
    }
