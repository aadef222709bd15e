//! Attaching disks to VMs and detaching them. To a VM without QEMU it is a
//! record that the next start reads; to a running VM it is a hot-plug over
//! QMP, recorded as an intent (`attaching`, `detaching`) before QEMU is
//! asked and settled after it answers, all under the VM's lock.

use std::time::Duration;

use serde_json::json;

use crate::cancel::Cancel;
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::storage::hotplug;
use crate::storage::model::{Disk, DiskState, MAX_DISKS};
use crate::store;
use crate::vm::lifecycle::{lock_vm, lock_vm_cancellable};
use crate::vm::model::Vm;
use crate::vm::state::VmState;

fn disk_by_name(ctx: &Inner, name: &str) -> Result<Disk> {
    ctx.store().read(|tx| store::disk_by_name(tx, name)?.ok_or_else(|| Error::not_found("disk", name)))
}

/// A VM with QEMU in a state where it takes hot-plug requests, or `None`
/// when the VM has no QEMU; any other state is refused.
fn live(vm: &Vm, action: &'static str) -> Result<bool> {
    match vm.state {
        VmState::Running | VmState::Paused => Ok(true),
        VmState::Created | VmState::Stopped | VmState::Error => Ok(false),
        state => Err(Error::InvalidState { vm: vm.name.clone(), state, action, needs: "a VM that is running, paused or stopped" }),
    }
}

impl Manager {
    /// Attaches an available disk to a VM at its lowest free slot. A VM
    /// without QEMU gets it at its next start; a running one gets it
    /// hot-plugged (the guest sees a new virtio disk).
    pub fn attach_disk(&self, vm: &str, disk: &str) -> Result<Disk> {
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm(ctx, vm)?;
        let hot = live(&vm, "attach a disk")?;
        let disk = disk_by_name(ctx, disk)?;
        let to = if hot { DiskState::Attaching } else { DiskState::Attached };
        let (disk, slot) = ctx.write(|w| {
            let disk = store::disk_by_id(w.tx, disk.id)?.ok_or_else(|| Error::not_found("disk", &disk.name))?;
            if disk.state != DiskState::Available {
                return Err(Error::DiskState {
                    disk: disk.name,
                    state: disk.state,
                    vm: disk.vm,
                    action: "attach",
                    needs: "an available disk",
                });
            }
            let slot = store::free_disk_slot(w.tx, &vm.id)?
                .ok_or_else(|| Error::invalid("disk", format!("VM {:?} already has {MAX_DISKS} disks, the most it can have", vm.name)))?;
            store::set_disk_state(w.tx, disk.id, DiskState::Available, to, Some((&vm.id, slot)), "")?;
            if !hot {
                w.record(
                    ObjectKind::Disk,
                    &disk.id.to_string(),
                    &disk.name,
                    "attached",
                    json!({"vm": vm.name, "slot": slot, "live": false}),
                )?;
            }
            Ok((disk, slot))
        })?;
        if hot {
            if let Err(e) = hotplug::plug(ctx, &vm, &disk, slot) {
                ctx.store().write(|tx| store::set_disk_state(tx, disk.id, DiskState::Attaching, DiskState::Available, None, ""))?;
                return Err(e);
            }
            ctx.write(|w| {
                store::set_disk_state(w.tx, disk.id, DiskState::Attaching, DiskState::Attached, Some((&vm.id, slot)), "")?;
                w.record(ObjectKind::Disk, &disk.id.to_string(), &disk.name, "attached", json!({"vm": vm.name, "slot": slot, "live": true}))
            })?;
        }
        disk_by_name(ctx, &disk.name)
    }

    /// Detaches a disk from a VM. From a running VM the guest is asked to
    /// release it and given `timeout`; if it does not, this fails with
    /// [`crate::ErrorKind::Timeout`] and the disk stays attached.
    /// [`defaults::DETACH_TIMEOUT`](crate::defaults::DETACH_TIMEOUT) is the usual wait.
    pub fn detach_disk(&self, vm: &str, disk: &str, timeout: Duration) -> Result<Disk> {
        self.detach_disk_with(vm, disk, timeout, None)
    }

    /// [`detach_disk`](Self::detach_disk) that ends with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) once `cancel`
    /// is cancelled: while waiting for another operation on the VM
    /// (nothing changed), or while the guest is given `timeout` to release
    /// the disk, which then leaves what a timeout leaves: the disk
    /// attached, the guest's release still asked for (the next detach or
    /// reconcile completes it if the guest lets go).
    pub fn detach_disk_cancellable(&self, vm: &str, disk: &str, timeout: Duration, cancel: &Cancel) -> Result<Disk> {
        self.detach_disk_with(vm, disk, timeout, Some(cancel))
    }

    fn detach_disk_with(&self, vm: &str, disk: &str, timeout: Duration, cancel: Option<&Cancel>) -> Result<Disk> {
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm_cancellable(ctx, vm, cancel)?;
        let hot = live(&vm, "detach a disk")?;
        let disk = disk_by_name(ctx, disk)?;
        if disk.vm_id.as_deref() != Some(vm.id.as_str()) || disk.state != DiskState::Attached {
            return Err(Error::DiskState {
                disk: disk.name,
                state: disk.state,
                vm: disk.vm,
                action: "detach",
                needs: "a disk attached to this VM",
            });
        }
        let slot = disk.slot.unwrap_or_default();
        if hot {
            ctx.store()
                .write(|tx| store::set_disk_state(tx, disk.id, DiskState::Attached, DiskState::Detaching, Some((&vm.id, slot)), ""))?;
            if let Err(e) = hotplug::unplug(ctx, &vm, &disk, timeout, cancel) {
                ctx.store()
                    .write(|tx| store::set_disk_state(tx, disk.id, DiskState::Detaching, DiskState::Attached, Some((&vm.id, slot)), ""))?;
                return Err(e);
            }
        }
        let from = if hot { DiskState::Detaching } else { DiskState::Attached };
        ctx.write(|w| {
            store::set_disk_state(w.tx, disk.id, from, DiskState::Available, None, "")?;
            w.record(ObjectKind::Disk, &disk.id.to_string(), &disk.name, "detached", json!({"vm": vm.name, "slot": slot, "live": hot}))
        })?;
        disk_by_name(ctx, &disk.name)
    }
}
