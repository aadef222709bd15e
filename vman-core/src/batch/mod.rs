//! Batches: N VMs made in one call from one spec and a naming pattern,
//! whole or not at all, and deleted together or by name prefix.
//!
//! A batch is intent, act, outcome like every multi-step operation. Its
//! creator takes every new VM's lock, then records the batch (`creating`)
//! and all its VMs (addresses, MACs, keys, boot disk rows) in one
//! transaction: a VM that cannot be recorded (a name taken, a network
//! exhausted) leaves nothing. Then, outside any transaction, it makes the
//! boot disks and starts the VMs if asked, and records `created`. If any
//! step fails, every VM of the batch is deleted (stopped by force, its
//! disks, seed, taps and addresses released) and the batch recorded
//! `deleted`. The VMs' locks are held from before the first record to the
//! end, so "every VM lock of a batch left `creating` is free" means its
//! creator died: only then does the reconciler roll it back.

pub(crate) mod model;
pub(crate) mod state;

use std::collections::BTreeSet;

use serde_json::json;

use crate::context::Inner;
use crate::error::{Error, ErrorKind, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::name::validate_name;
use crate::storage::model::DiskState;
use crate::store;
use crate::vm::lifecycle;
use crate::vm::model::{Vm, VmFilter};
use model::{Batch, BatchSpec};
use state::BatchState;

impl Manager {
    /// Creates `spec.count` VMs named by `spec.pattern`, each as `spec.vm`
    /// says, and starts them if `spec.start`: all of them, or none. Every
    /// name, the batch's own and every VM's, is checked before anything is
    /// recorded ([`ErrorKind::InvalidArgument`] for a bad pattern or count,
    /// [`ErrorKind::AlreadyExists`] naming the VMs whose names are taken).
    /// If one VM cannot be recorded, made or started, the batch is rolled
    /// back: every VM of it is deleted (QEMU killed, disks, seeds, taps and
    /// addresses released) and the error that stopped it is returned.
    pub fn create_batch(&self, spec: &BatchSpec) -> Result<Batch> {
        let plan = spec.plan()?;
        let ctx = &*self.inner;
        // UUIDv7s increase, so the locks are taken in id order, as every
        // multi-VM operation takes them.
        let members: Vec<(String, crate::VmSpec)> = plan.members.into_iter().map(|m| (uuid::Uuid::now_v7().to_string(), m)).collect();
        let mut locks = Vec::with_capacity(members.len());
        for (id, member) in &members {
            locks.push(ctx.runtime().lock_vm(id, &member.name)?);
        }
        let names: Vec<&str> = members.iter().map(|(_, m)| m.name.as_str()).collect();
        let recorded = ctx.write(|w| {
            let batch_id = store::insert_batch(w.tx, &plan.name, &spec.pattern, spec.count, w.now)?;
            let mut taken = Vec::new();
            for name in &names {
                if store::live_vm_id(w.tx, name)?.is_some() {
                    taken.push(*name);
                }
            }
            if !taken.is_empty() {
                return Err(Error::AlreadyExists { kind: "VM", field: "name", value: taken.join(", ") });
            }
            let details = json!({"pattern": spec.pattern, "count": spec.count, "first": spec.first, "start": spec.start, "vms": names});
            w.record(ObjectKind::Batch, &batch_id.to_string(), &plan.name, "creating", details)?;
            let mut vms = Vec::with_capacity(members.len());
            for (id, member) in &members {
                vms.push(crate::manager::record_vm(ctx, w, id, member, &plan.nics)?);
                store::set_vm_batch(w.tx, id, batch_id)?;
            }
            Ok((batch_id, vms))
        });
        let (batch_id, vms) = match recorded {
            Ok(recorded) => recorded,
            Err(e) => {
                // Nothing was recorded; only the lock files of VMs that
                // never were remain.
                for (id, _) in &members {
                    ctx.runtime().forget_vm(id);
                }
                return Err(e);
            }
        };
        let made = (|| -> Result<()> {
            for (vm, disk) in &vms {
                if let Some(disk) = disk {
                    crate::storage::ops::make_boot_disk(ctx, disk)?;
                    crate::storage::ops::finish_create(ctx, disk.id, DiskState::Attached, Some((&vm.id, 0)))?;
                }
            }
            if spec.start {
                for (vm, _) in &vms {
                    lifecycle::start_locked(ctx, lifecycle::settled(ctx, &vm.id, &vm.name)?, None)?;
                }
            }
            ctx.write(|w| {
                if !store::set_batch_state(w.tx, batch_id, BatchState::Creating, BatchState::Created, w.now)? {
                    return Err(Error::Internal(format!("batch {:?} left creating while its VMs were locked", plan.name)));
                }
                w.record(ObjectKind::Batch, &batch_id.to_string(), &plan.name, "created", json!({"vms": names}))
            })
        })();
        if let Err(e) = made {
            let reason = format!("VM creation failed: {}", e.full_message());
            if let Err(undo) = remove_members(ctx, batch_id, &plan.name, BatchState::Creating, BatchState::RollingBack, &reason) {
                log::warn!("batch {:?} is only part rolled back (the reconciler will finish): {}", plan.name, undo.full_message());
            }
            return Err(e);
        }
        drop(locks);
        self.batch(&plan.name)
    }

    /// The live batch named `name`.
    pub fn batch(&self, name: &str) -> Result<Batch> {
        self.inner.store().read(|tx| store::batch_by_name(tx, name)?.ok_or_else(|| Error::not_found("batch", name)))
    }

    /// Every live batch (also those another process is creating or
    /// deleting), by name.
    pub fn batches(&self) -> Result<Vec<Batch>> {
        self.inner.store().read(|tx| store::list_batches(tx))
    }

    /// Deletes a batch and every VM of it; answers the names of the VMs
    /// deleted. Running (or paused) VMs are stopped by force when `force`
    /// says so; without it, a batch with any VM that has a QEMU is refused
    /// with [`ErrorKind::InvalidState`] naming them, and nothing is deleted.
    /// A batch another process is still creating is waited for (up to the
    /// lock timeout) and then deleted. A crash part-way leaves the batch
    /// `deleting`, which the reconciler finishes.
    pub fn delete_batch(&self, name: &str, force: bool) -> Result<Vec<String>> {
        let ctx = &*self.inner;
        let batch = self.batch(name)?;
        let mut members = ctx.store().read(|tx| store::batch_members(tx, batch.id))?;
        members.sort();
        let mut locks = Vec::with_capacity(members.len());
        for (id, vm_name) in &members {
            locks.push(ctx.runtime().lock_vm(id, vm_name)?);
        }
        // Under the locks: the creator (if any) is done or dead.
        let batch = ctx.store().read(|tx| store::batch_by_id(tx, batch.id))?.ok_or_else(|| Error::not_found("batch", name))?;
        if batch.state == BatchState::Deleted {
            return Err(Error::not_found("batch", name));
        }
        if !force {
            let members = ctx.store().read(|tx| store::batch_members(tx, batch.id))?;
            let vms = members.iter().map(|(id, vm_name)| lifecycle::settled(ctx, id, vm_name)).collect::<Result<Vec<_>>>()?;
            refuse_running(&vms, || format!("batch {:?}", batch.name))?;
        }
        remove_members(ctx, batch.id, &batch.name, batch.state, BatchState::Deleting, "deleted by request")
    }

    /// Deletes every live VM whose name starts with `prefix` (a non-empty
    /// prefix of a valid name; compared byte for byte, so it matches any
    /// VM, in a batch or not), one after another; answers their names.
    /// Running (or paused) VMs are stopped by force when `force` says so;
    /// without it, if any of them has a QEMU the call is refused with
    /// [`ErrorKind::InvalidState`] naming them, and nothing is deleted. It
    /// stops at the first VM that cannot be deleted (the ones before it are
    /// gone). A batch left with no VM by it is recorded deleted.
    pub fn delete_vms_by_prefix(&self, prefix: &str, force: bool) -> Result<Vec<String>> {
        validate_name("VM name prefix", prefix)?;
        let ctx = &*self.inner;
        let filter = VmFilter { name_prefix: Some(prefix.to_string()), ..VmFilter::default() };
        let mut found: Vec<(String, String)> = self.vms(&filter)?.into_iter().map(|vm| (vm.id, vm.name)).collect();
        // Every lock first, in id order (as a batch deletion takes them):
        // the check below must still hold when the last VM is deleted.
        found.sort();
        let mut locks = Vec::with_capacity(found.len());
        for (id, vm_name) in &found {
            locks.push(ctx.runtime().lock_vm(id, vm_name)?);
        }
        let mut vms = Vec::with_capacity(found.len());
        for (id, vm_name) in &found {
            match lifecycle::settled(ctx, id, vm_name) {
                Ok(vm) => vms.push(vm),
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        if !force {
            refuse_running(&vms, || format!("the VMs named {prefix}*"))?;
        }
        let mut deleted = Vec::new();
        let mut batches = BTreeSet::new();
        for vm in vms {
            if let Some(batch_id) = ctx.store().read(|tx| store::batch_of_vm(tx, &vm.id))? {
                batches.insert(batch_id);
            }
            let name = vm.name.clone();
            lifecycle::delete_locked(ctx, vm, force)?;
            deleted.push(name);
        }
        drop(locks);
        for batch_id in batches {
            ctx.write(|w| {
                let Some(batch) = store::batch_by_id(w.tx, batch_id)? else { return Ok(()) };
                if batch.vms.is_empty() && store::set_batch_state(w.tx, batch_id, BatchState::Created, BatchState::Deleted, w.now)? {
                    let details = json!({"vms": [], "reason": format!("its last VMs were deleted by prefix {prefix:?}")});
                    w.record(ObjectKind::Batch, &batch_id.to_string(), &batch.name, "deleted", details)?;
                }
                Ok(())
            })?;
        }
        Ok(deleted)
    }
}

/// Refuses, naming them, when any of `vms` (read under their locks) has a
/// QEMU: a deletion of several VMs without force must not kill one.
fn refuse_running(vms: &[Vm], what: impl FnOnce() -> String) -> Result<()> {
    let running: Vec<String> = vms.iter().filter(|vm| vm.state.has_process()).map(|vm| vm.name.clone()).collect();
    if running.is_empty() {
        return Ok(());
    }
    Err(Error::VmsRunning { what: what(), vms: store::describe_users("VM", &running) })
}

/// Deletes every live VM of batch `batch_id` and records it deleted: the
/// caller holds the locks of all its VMs. `from` is the state the caller
/// found it in, `via` the intent recorded first (`rolling_back` or
/// `deleting`; nothing is recorded if it is already there). VMs that
/// cannot be deleted are skipped and the first such error returned, the
/// batch staying in `via` for the reconciler. Answers the names deleted.
pub(crate) fn remove_members(
    ctx: &Inner,
    batch_id: i64,
    name: &str,
    from: BatchState,
    via: BatchState,
    reason: &str,
) -> Result<Vec<String>> {
    let object_id = batch_id.to_string();
    if from != via {
        ctx.write(|w| {
            if !store::set_batch_state(w.tx, batch_id, from, via, w.now)? {
                return Err(Error::Internal(format!("batch {name:?} left {from} while its VMs were locked")));
            }
            w.record(ObjectKind::Batch, &object_id, name, via.as_str(), json!({"reason": reason}))
        })?;
    }
    let mut deleted = Vec::new();
    let mut failed = None;
    for (id, vm_name) in ctx.store().read(|tx| store::batch_members(tx, batch_id))? {
        match lifecycle::settled(ctx, &id, &vm_name).and_then(|vm| lifecycle::delete_locked(ctx, vm, true)) {
            Ok(()) => deleted.push(vm_name),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                log::warn!("cannot delete VM {vm_name:?} of batch {name:?}: {}", e.full_message());
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    ctx.write(|w| {
        // Another process may have seen it empty and settled it first.
        if store::set_batch_state(w.tx, batch_id, via, BatchState::Deleted, w.now)? {
            w.record(ObjectKind::Batch, &object_id, name, "deleted", json!({"vms": deleted, "reason": reason}))?;
        }
        Ok(())
    })?;
    Ok(deleted)
}
