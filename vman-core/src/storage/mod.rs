//! Storage: disks (qcow2 and raw files under the state directory, or a
//! caller's file used in place), the base-image catalogue with linked
//! clones, attaching disks to VMs (at start, or hot-plugged over QMP), and
//! snapshots.

pub(crate) mod attach;
pub(crate) mod boot;
pub(crate) mod cdrom;
pub(crate) mod devices;
pub(crate) mod disk;
pub(crate) mod hotplug;
pub(crate) mod image;
pub(crate) mod model;
pub(crate) mod ops;
pub(crate) mod path;
pub(crate) mod qemu_img;
pub(crate) mod snapshot;
pub(crate) mod state;
