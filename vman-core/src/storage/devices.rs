//! How QEMU sees a VM's storage: node and device names, and the JSON of
//! `-blockdev`/`-device` (the same objects QMP's `blockdev-add` and
//! `device_add` take), so a disk plugged at start and one hot-plugged later
//! are the same device. Pure: no I/O.

use serde_json::{Value, json};

use crate::storage::model::{Disk, MAX_DISKS};

/// QEMU's block node of a disk: named by the disk's id, so a rename or a
/// slot change never confuses it with another.
pub(crate) fn node_name(disk_id: i64) -> String {
    format!("disk{disk_id}")
}

/// QEMU's device id of a disk.
pub(crate) fn device_id(disk_id: i64) -> String {
    format!("vd{disk_id}")
}

/// The PCIe root port a disk at `slot` plugs into. Every disk sits on a
/// port of its own, so any of them can be unplugged from a running VM.
pub(crate) fn port_id(slot: u32) -> String {
    format!("dp{slot}")
}

/// The guest-visible serial of a disk (`/dev/disk/by-id/virtio-vman-<id>`).
pub(crate) fn serial(disk_id: i64) -> String {
    format!("vman-{disk_id}")
}

/// The `-blockdev` (and `blockdev-add`) definition of a disk: the format
/// driver over a file; a linked clone's base is opened by QEMU from the
/// overlay's header, read-only.
pub(crate) fn blockdev(disk: &Disk) -> Value {
    json!({
        "driver": disk.format.as_str(),
        "node-name": node_name(disk.id),
        "discard": "unmap",
        "file": {"driver": "file", "filename": disk.path, "aio": "threads"},
    })
}

/// The `-device` (and `device_add`) arguments of a disk at `slot`.
pub(crate) fn device(disk: &Disk, slot: u32, bootindex: Option<u32>) -> Value {
    let mut dev = json!({
        "driver": "virtio-blk-pci",
        "id": device_id(disk.id),
        "drive": node_name(disk.id),
        "bus": port_id(slot),
        "serial": serial(disk.id),
    });
    if let Some(index) = bootindex {
        dev["bootindex"] = json!(index);
    }
    dev
}

/// The root ports every VM gets, one per disk slot, as `-device`
/// arguments: eight functions of one PCI slot each (multifunction), so 16
/// ports take two of the root bus's slots.
pub(crate) fn root_ports() -> Vec<String> {
    (0..MAX_DISKS as u32)
        .map(|slot| {
            let (dev, func) = (0x10 + slot / 8, slot % 8);
            let multi = if func == 0 { ",multifunction=on" } else { "" };
            format!("pcie-root-port,id={},chassis={},bus=pcie.0,addr=0x{dev:x}.{func}{multi}", port_id(slot), slot + 1)
        })
        .collect()
}
