//! Snapshots of a VM: one internal qcow2 snapshot of the same name on each
//! of its disks. A stopped VM's are taken with qemu-img; a running VM's
//! with QMP snapshot jobs, which also save its memory and devices, so a
//! revert resumes the guest where it was.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cancel::Cancel;
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::name::validate_name;
use crate::storage::devices::node_name;
use crate::storage::model::{Disk, DiskFormat, Snapshot};
use crate::storage::ops::{disks_with_tag, remove_tags};
use crate::storage::qemu_img::{self, SnapshotOp};
use crate::store;
use crate::vm::lifecycle::lock_vm_cancellable;
use crate::vm::model::Vm;
use crate::vm::state::VmState;

/// How long a live snapshot job (saving or loading the guest's memory) may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// The VM's disks, all qcow2 (raw files cannot hold internal snapshots).
fn snapshot_disks(ctx: &Inner, vm: &Vm) -> Result<Vec<Disk>> {
    let disks = ctx.store().read(|tx| store::disks_of_vm(tx, &vm.id))?;
    if disks.is_empty() {
        return Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action: "snapshot", needs: "a VM with a disk" });
    }
    if let Some(raw) = disks.iter().find(|d| d.format != DiskFormat::Qcow2) {
        return Err(Error::Unsupported {
            what: format!(
                "snapshots of VM {:?}: its disk {:?} is raw, which cannot hold internal snapshots (use qcow2)",
                vm.name, raw.name
            ),
            source: None,
        });
    }
    Ok(disks)
}

/// Whether `vm` has a QEMU that takes QMP jobs; a VM between states is refused.
fn is_live(vm: &Vm, action: &'static str) -> Result<bool> {
    match vm.state {
        VmState::Running | VmState::Paused => Ok(true),
        VmState::Created | VmState::Stopped | VmState::Error => Ok(false),
        state => Err(Error::InvalidState { vm: vm.name.clone(), state, action, needs: "a running, paused or stopped VM" }),
    }
}

fn disk_op(disks: &[Disk], op: SnapshotOp, tag: &str) -> Result<()> {
    for disk in disks {
        qemu_img::snapshot(Path::new(&disk.path), op, tag)?;
    }
    Ok(())
}

/// Runs a QMP snapshot job (`snapshot-save`, `-load`, `-delete`) to its end.
fn run_job(ctx: &Inner, vm: &Vm, command: &'static str, mut args: Value) -> Result<()> {
    let job = format!("vman-{command}-{}", uuid::Uuid::new_v4().simple());
    args["job-id"] = json!(job);
    let mut qmp = crate::vm::qemu::qmp(ctx, vm)?;
    let qmp_err = |source| Error::Qmp { vm: vm.name.clone(), command, source };
    qmp.execute(command, Some(args)).map_err(qmp_err)?;
    let started = Instant::now();
    loop {
        let left = JOB_TIMEOUT.saturating_sub(started.elapsed());
        let event = qmp.wait_event("JOB_STATUS_CHANGE", left).map_err(|source| Error::Qmp { vm: vm.name.clone(), command, source })?;
        match event {
            Some(e)
                if e.data.get("id").and_then(Value::as_str) == Some(job.as_str())
                    && e.data.get("status").and_then(Value::as_str) == Some("concluded") =>
            {
                break;
            }
            Some(_) => continue,
            None => {
                return Err(Error::Timeout {
                    what: format!("QEMU's {command} job on VM {:?}", vm.name),
                    waited_ms: started.elapsed().as_millis() as u64,
                    source: None,
                });
            }
        }
    }
    let jobs = qmp.execute("query-jobs", None).map_err(|source| Error::Qmp { vm: vm.name.clone(), command: "query-jobs", source })?;
    let failure = jobs
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j.get("id").and_then(Value::as_str) == Some(job.as_str()))
        .and_then(|j| j.get("error").and_then(Value::as_str).map(str::to_string));
    let _ = qmp.execute("job-dismiss", Some(json!({"id": job})));
    match failure {
        Some(message) => Err(Error::Qemu { message: format!("{command}: {message}"), source: None }),
        None => Ok(()),
    }
}

fn devices(disks: &[Disk]) -> Vec<String> {
    disks.iter().map(|d| node_name(d.id)).collect()
}

fn not_found(vm: &Vm, name: &str) -> Error {
    Error::NotFound { kind: "snapshot", name: format!("{name} (of VM {})", vm.name) }
}

impl Manager {
    /// Takes a snapshot of every disk of a VM. A stopped VM's is taken
    /// with qemu-img; a running or paused VM's with a QMP `snapshot-save`
    /// job, which saves its memory too (the guest pauses while it runs).
    pub fn create_snapshot(&self, vm: &str, name: &str) -> Result<Snapshot> {
        self.create_snapshot_with(vm, name, None)
    }

    /// [`create_snapshot`](Self::create_snapshot) with a cancellation
    /// token. A cancel while waiting for another operation on the VM
    /// changes nothing; one while the snapshot is taken lets it finish
    /// (QEMU does a live snapshot job's work in one step that cannot be
    /// abandoned, and qemu-img's are short), then removes it again: a
    /// create that answers [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled)
    /// leaves no snapshot.
    pub fn create_snapshot_cancellable(&self, vm: &str, name: &str, cancel: &Cancel) -> Result<Snapshot> {
        self.create_snapshot_with(vm, name, Some(cancel))
    }

    fn create_snapshot_with(&self, vm: &str, name: &str, cancel: Option<&Cancel>) -> Result<Snapshot> {
        validate_name("snapshot name", name)?;
        if name.bytes().all(|b| b.is_ascii_digit()) {
            // qemu-img and QEMU look a tag up among snapshot ids too: "1"
            // could name another snapshot.
            return Err(Error::invalid("snapshot name", format!("{name:?} is all digits, which QEMU would take for a snapshot id")));
        }
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm_cancellable(ctx, vm, cancel)?;
        let live = is_live(&vm, "snapshot")?;
        let disks = snapshot_disks(ctx, &vm)?;
        // One of this VM's own first: its tags are on the disks too.
        if ctx.store().read(|tx| store::snapshot_by_name(tx, &vm.id, name))?.is_some() {
            return Err(Error::SnapshotExists { snapshot: name.to_string(), vm: vm.name.clone() });
        }
        // A tag vman did not record for this VM (left by another VM the
        // disk belonged to, or made by hand) would be taken for this one.
        if let Some(disk) = disks_with_tag(&disks, name)?.first() {
            return Err(Error::StraySnapshotTag { snapshot: name.to_string(), disk: disk.name.clone() });
        }
        let id = ctx.store().write(|tx| store::insert_snapshot(tx, &vm.id, &vm.name, name, live, store::now_ms()))?;
        let taken = if live {
            let all = devices(&disks);
            run_job(ctx, &vm, "snapshot-save", json!({"tag": name, "vmstate": all[0], "devices": all}))
        } else {
            disk_op(&disks, SnapshotOp::Create, name)
        };
        // Cancelled while it was taken: it is undone like a failure.
        let taken = taken
            .and_then(|()| crate::cancel::check(cancel, || format!("snapshot {name:?} of VM {:?} (it was taken, then removed)", vm.name)));
        if let Err(e) = taken {
            // Whatever part was taken goes (the tag is this call's own: a
            // stale one was refused above).
            let undone = if live {
                run_job(ctx, &vm, "snapshot-delete", json!({"tag": name, "devices": devices(&disks)}))
            } else {
                remove_tags(&disks, name)
            };
            if let Err(undo) = undone {
                log::warn!("cannot remove the part-taken snapshot {name:?} of VM {:?}: {undo}", vm.name);
            }
            let _ = ctx.store().write(|tx| store::delete_snapshot_row(tx, id));
            return Err(e);
        }
        ctx.write(|w| {
            store::set_snapshot_state(w.tx, id, "ready")?;
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "snapshot_created", json!({"snapshot": name, "live": live}))?;
            store::snapshot_by_name(w.tx, &vm.id, name)?.ok_or_else(|| not_found(&vm, name))
        })
    }

    /// A VM's snapshots, oldest first.
    pub fn snapshots(&self, vm: &str) -> Result<Vec<Snapshot>> {
        let vm = self.inner.vm(vm)?;
        self.inner.store().read(|tx| store::snapshots_of(tx, &vm.id))
    }

    /// Brings a VM's disks back to a snapshot. A stopped VM's disks are
    /// reverted with qemu-img (any snapshot); a running VM is reverted with
    /// `snapshot-load` (memory too) and only to a live snapshot: reverting
    /// a running guest's disks under it would corrupt its filesystems, so
    /// a disk-only snapshot needs the VM stopped first (`Unsupported`).
    pub fn revert_snapshot(&self, vm: &str, name: &str) -> Result<Snapshot> {
        self.revert_snapshot_with(vm, name, None)
    }

    /// [`revert_snapshot`](Self::revert_snapshot) with a cancellation
    /// token: a cancel while waiting for another operation on the VM
    /// changes nothing; once the revert has begun it is seen through (a
    /// half-loaded guest or half-reverted set of disks is no state to
    /// leave), and the call answers its outcome.
    pub fn revert_snapshot_cancellable(&self, vm: &str, name: &str, cancel: &Cancel) -> Result<Snapshot> {
        self.revert_snapshot_with(vm, name, Some(cancel))
    }

    fn revert_snapshot_with(&self, vm: &str, name: &str, cancel: Option<&Cancel>) -> Result<Snapshot> {
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm_cancellable(ctx, vm, cancel)?;
        let live = is_live(&vm, "revert to a snapshot")?;
        let snapshot = ctx.store().read(|tx| store::snapshot_by_name(tx, &vm.id, name))?.ok_or_else(|| not_found(&vm, name))?;
        if live && !snapshot.live {
            return Err(Error::Unsupported {
                what: format!(
                    "reverting running VM {:?} to disk-only snapshot {name:?} (taken while it was stopped); stop the VM first",
                    vm.name
                ),
                source: None,
            });
        }
        let disks = snapshot_disks(ctx, &vm)?;
        // Every disk must hold the snapshot before any is touched: a disk
        // attached since has no state to go back to.
        let holding = disks_with_tag(&disks, name)?;
        if let Some(newer) = disks.iter().find(|d| !holding.iter().any(|h| h.id == d.id)) {
            return Err(Error::Unsupported {
                what: format!(
                    "reverting VM {:?} to snapshot {name:?}: its disk {:?} was attached after the snapshot was taken; detach it first",
                    vm.name, newer.name
                ),
                source: None,
            });
        }
        ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, "reverting"))?;
        let reverted = if live {
            let all = devices(&disks);
            run_job(ctx, &vm, "snapshot-load", json!({"tag": name, "vmstate": all[0], "devices": all}))
        } else {
            disk_op(&disks, SnapshotOp::Apply, name)
        };
        let state = if reverted.is_ok() { "ready" } else { "error" };
        ctx.write(|w| {
            store::set_snapshot_state(w.tx, snapshot.id, state)?;
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "snapshot_reverted", json!({"snapshot": name, "live": live, "ok": reverted.is_ok()}))
        })?;
        reverted?;
        ctx.store().read(|tx| store::snapshot_by_name(tx, &vm.id, name))?.ok_or_else(|| not_found(&vm, name))
    }

    /// Deletes a snapshot from every disk of the VM.
    pub fn delete_snapshot(&self, vm: &str, name: &str) -> Result<()> {
        self.delete_snapshot_with(vm, name, None)
    }

    /// [`delete_snapshot`](Self::delete_snapshot) with a cancellation
    /// token: a cancel while waiting for another operation on the VM
    /// changes nothing; once the delete has begun it is seen through and
    /// the call answers its outcome.
    pub fn delete_snapshot_cancellable(&self, vm: &str, name: &str, cancel: &Cancel) -> Result<()> {
        self.delete_snapshot_with(vm, name, Some(cancel))
    }

    fn delete_snapshot_with(&self, vm: &str, name: &str, cancel: Option<&Cancel>) -> Result<()> {
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm_cancellable(ctx, vm, cancel)?;
        let live = is_live(&vm, "delete a snapshot")?;
        let snapshot = ctx.store().read(|tx| store::snapshot_by_name(tx, &vm.id, name))?.ok_or_else(|| not_found(&vm, name))?;
        let disks = ctx.store().read(|tx| store::disks_of_vm(tx, &vm.id))?;
        ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, "deleting"))?;
        let removed = if live {
            run_job(ctx, &vm, "snapshot-delete", json!({"tag": name, "devices": devices(&disks)}))
        } else {
            remove_tags(&disks, name)
        };
        if let Err(e) = removed {
            let _ = ctx.store().write(|tx| store::set_snapshot_state(tx, snapshot.id, "error"));
            return Err(e);
        }
        ctx.write(|w| {
            store::delete_snapshot_row(w.tx, snapshot.id)?;
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "snapshot_deleted", json!({"snapshot": name}))
        })
    }
}
