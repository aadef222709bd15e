//! Disks and images: intents a crash left behind are finished or undone,
//! and each running VM's disks are compared with what its QEMU has plugged
//! (QMP `query-block`), so store, QEMU and guest agree.

use crate::context::Inner;
use crate::error::Result;
use crate::reconcile::report::{Drift, ReconcileReport};
use crate::storage::model::{Disk, DiskState};
use crate::storage::{hotplug, image, ops as disk};
use crate::store;

/// How long the reconciler waits for a guest to release a disk whose
/// detach was interrupted.
const RECONCILE_DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn reconcile_storage(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    for (image, state) in ctx.store().read(|tx| store::unsettled_images(tx))? {
        let action = if state == "deleting" {
            image::finish_delete(ctx, &image)?;
            "finished deleting it"
        } else {
            if image.owned {
                let _ = std::fs::remove_file(&image.path);
            }
            ctx.store().write(|tx| store::delete_image_row(tx, image.id))?;
            "removed the partial import"
        };
        report.drifts.push(Drift { vm: "-".into(), found: format!("image {:?} left {state}", image.name), action: action.into() });
    }
    let unsettled = [DiskState::Creating, DiskState::Attaching, DiskState::Detaching, DiskState::Deleting];
    for disk in ctx.store().read(|tx| store::disks_in_states(tx, &unsettled))? {
        settle_disk(ctx, disk, report)?;
    }
    for (snapshot, vm_id) in ctx.store().read(|tx| store::unsettled_snapshots(tx))? {
        settle_snapshot(ctx, &snapshot, &vm_id, report)?;
    }
    compare_with_qemu(ctx, report)
}

/// A snapshot left mid-operation. Offline the work is redone or undone
/// with qemu-img; a running VM's QEMU finishes a job on its own, so what
/// its disks hold decides.
fn settle_snapshot(ctx: &Inner, snapshot: &crate::Snapshot, vm_id: &str, report: &mut ReconcileReport) -> Result<()> {
    use crate::storage::qemu_img;
    let Ok(_lock) = ctx.runtime().try_lock_vm(vm_id) else { return Ok(()) };
    let Some(vm) = ctx.store().read(|tx| store::vm_by_id(tx, vm_id))? else { return Ok(()) };
    let disks = ctx.store().read(|tx| store::disks_of_vm(tx, vm_id))?;
    let running = vm.state.has_process();
    if !running && !unheld(disks.iter().map(|d| d.path.as_str())) {
        return Ok(()); // a dying qemu-img still has a disk open: next time
    }
    let tagged = disks
        .iter()
        .all(|d| qemu_img::info(std::path::Path::new(&d.path), Some(d.format), true).is_ok_and(|i| i.snapshots.contains(&snapshot.name)));
    let action = match snapshot.state.as_str() {
        "creating" if tagged => {
            ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, "ready"))?;
            "every disk has it: recorded it ready"
        }
        "reverting" if !running => {
            let redone = disks
                .iter()
                .try_for_each(|d| qemu_img::snapshot(std::path::Path::new(&d.path), qemu_img::SnapshotOp::Apply, &snapshot.name));
            let state = if redone.is_ok() { "ready" } else { "error" };
            ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, state))?;
            if redone.is_ok() { "reverted the disks again" } else { "could not revert again: recorded it error" }
        }
        "reverting" => {
            ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, "error"))?;
            "the running VM may be part-reverted: recorded it error (revert again or stop the VM)"
        }
        _ if running => return Ok(()), // QEMU may still be at it; a later reconcile with the VM stopped finishes
        _ => {
            crate::storage::ops::remove_tags(&disks, &snapshot.name)?;
            ctx.store().write(|tx| store::delete_snapshot_row(tx, snapshot.id))?;
            "removed it from every disk"
        }
    };
    report.drifts.push(Drift {
        vm: vm.name.clone(),
        found: format!("snapshot {:?} left {}", snapshot.name, snapshot.state),
        action: action.into(),
    });
    Ok(())
}

/// Whether no other process has any of `paths` open, waiting a moment for
/// one to let go: a killed embedder's qemu-img dies with it, but a write
/// it had in flight still lands, so an intent is settled only once its
/// files are nobody's.
pub(super) fn unheld<'a>(paths: impl IntoIterator<Item = &'a str> + Clone) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if paths.clone().into_iter().all(|p| crate::sys::proc::holders(std::path::Path::new(p)).is_empty()) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn drift(report: &mut ReconcileReport, vm: Option<&str>, disk: &Disk, found: &str, action: &str) {
    report.drifts.push(Drift { vm: vm.unwrap_or("-").to_string(), found: format!("disk {:?} {found}", disk.name), action: action.into() });
}

fn settle_disk(ctx: &Inner, disk: Disk, report: &mut ReconcileReport) -> Result<()> {
    if disk.state == DiskState::Deleting {
        disk::finish_delete(ctx, &disk)?;
        drift(report, None, &disk, "left deleting", "finished deleting it");
        return Ok(());
    }
    if disk.state == DiskState::Creating && !unheld([disk.path.as_str()]) {
        return Ok(()); // a dying qemu-img still has it open: next time
    }
    let Some(vm_id) = disk.vm_id.clone() else {
        // A standalone create or import that never finished: undo it.
        if disk.owned {
            let _ = std::fs::remove_file(&disk.path);
        }
        ctx.store().write(|tx| store::delete_disk_row(tx, disk.id))?;
        drift(report, None, &disk, "left creating", "removed the partial disk");
        return Ok(());
    };
    // Attached to a VM: settle it under the VM's lock, or leave it to the
    // operation that holds the lock now.
    let Ok(_lock) = ctx.runtime().try_lock_vm(&vm_id) else { return Ok(()) };
    let Some(disk) = ctx.store().read(|tx| store::disk_by_id(tx, disk.id))? else { return Ok(()) };
    let vm = ctx.store().read(|tx| store::vm_by_id(tx, &vm_id))?;
    let slot = disk.slot.unwrap_or_default();
    match (disk.state, vm) {
        // The VM went away (its delete crashed before its disks were settled).
        (_, None) => {
            let to = if disk.delete_with_vm { DiskState::Deleting } else { DiskState::Available };
            ctx.store().write(|tx| store::set_disk_state(tx, disk.id, disk.state, to, None, ""))?;
            if disk.delete_with_vm {
                disk::finish_delete(ctx, &Disk { state: DiskState::Deleting, ..disk.clone() })?;
            }
            drift(report, None, &disk, "of a deleted VM", if disk.delete_with_vm { "deleted it" } else { "detached it" });
        }
        (DiskState::Creating, Some(vm)) => {
            // A VM's boot disk: the VM is recorded, so make its disk.
            disk::make_boot_disk(ctx, &disk)?;
            disk::finish_create(ctx, disk.id, DiskState::Attached, Some((&vm.id, slot)))?;
            drift(report, Some(&vm.name), &disk, "left creating", "made it");
        }
        (state, Some(vm)) => {
            let live = vm.state.has_process();
            let plugged = |ctx: &Inner| -> Result<bool> {
                let mut qmp = crate::vm::qemu::qmp(ctx, &vm)?;
                Ok(hotplug::plugged_devices(&mut qmp, &vm)?.contains(&crate::storage::devices::device_id(disk.id)))
            };
            // A detach whose request QEMU still holds: its caller asked for
            // it and died, so see it through (the guest may be releasing the
            // disk right now); a guest that does not let go keeps it. What
            // QEMU has afterwards decides, not how the wait ended.
            if live
                && state == DiskState::Detaching
                && plugged(ctx)?
                && let Err(e) = hotplug::unplug(ctx, &vm, &disk, RECONCILE_DETACH_WAIT, None)
            {
                log::info!("reconcile: disk {:?} of VM {:?} was not released: {e}", disk.name, vm.name);
            }
            let attached = live && plugged(ctx)?;
            if live && !attached {
                let mut qmp = crate::vm::qemu::qmp(ctx, &vm)?;
                hotplug::remove_node(&mut qmp, &vm, disk.id)?;
            }
            // Plugged: it is attached, whatever was intended. Not plugged:
            // an attach that never happened is undone, a detach is finished.
            let (to, on) = if attached { (DiskState::Attached, Some((vm.id.as_str(), slot))) } else { (DiskState::Available, None) };
            ctx.store().write(|tx| store::set_disk_state(tx, disk.id, state, to, on, ""))?;
            let seen = if attached { "plugged" } else { "not plugged" };
            drift(report, Some(&vm.name), &disk, &format!("left {state}"), &format!("QEMU has it {seen}; recorded it {to}"));
        }
    }
    Ok(())
}

/// A disk recorded attached to a running VM that its QEMU no longer has
/// (the guest released it after a detach had timed out) is detached.
fn compare_with_qemu(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    for vm in ctx.store().read(|tx| store::vms_with_process(tx))? {
        let disks = ctx.store().read(|tx| store::disks_of_vm(tx, &vm.id))?;
        if disks.is_empty() {
            continue;
        }
        let Ok(_lock) = ctx.runtime().try_lock_vm(&vm.id) else { continue };
        let Some(vm) = ctx.store().read(|tx| store::vm_by_id(tx, &vm.id))? else { continue };
        if !matches!(vm.state, crate::VmState::Running | crate::VmState::Paused) {
            continue;
        }
        let Ok(mut qmp) = crate::vm::qemu::qmp(ctx, &vm) else { continue };
        let plugged = hotplug::plugged_devices(&mut qmp, &vm)?;
        for disk in ctx.store().read(|tx| store::disks_of_vm(tx, &vm.id))? {
            if disk.state == DiskState::Attached && !plugged.contains(&crate::storage::devices::device_id(disk.id)) {
                hotplug::remove_node(&mut qmp, &vm, disk.id)?;
                ctx.write(|w| {
                    store::set_disk_state(w.tx, disk.id, DiskState::Attached, DiskState::Available, None, "")?;
                    w.record(
                        crate::event::ObjectKind::Disk,
                        &disk.id.to_string(),
                        &disk.name,
                        "detached",
                        serde_json::json!({"vm": vm.name, "by": "reconcile: the guest released it"}),
                    )
                })?;
                drift(report, Some(&vm.name), &disk, "is not plugged in QEMU any more", "recorded it detached");
            }
        }
    }
    Ok(())
}
