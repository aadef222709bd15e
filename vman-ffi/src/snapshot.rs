//! Snapshots of a VM's disks (and, taken live, of its memory).

use std::ffi::c_char;

use vman_core::Snapshot;

use crate::error::VmanStatus;
use crate::guard::{self, call, new_handle, optional_handle};
use crate::manager::VmanManager;

record! {
    /// A snapshot record; immutable, thread-safe.
    pub struct VmanSnapshot(snapshot) from Snapshot;
    /// The store's id, never reused.
    fn vman_snapshot_id -> number<i64> = |s| s.id;
    /// The VM's name.
    fn vman_snapshot_vm -> text = |s| &s.vm;
    /// The snapshot's name, unique per VM.
    fn vman_snapshot_name -> text = |s| &s.name;
    /// Whether it was taken while the VM ran: it then holds the guest's
    /// memory too, and a revert of the running VM resumes it there.
    fn vman_snapshot_live -> number<bool> = |s| s.live;
    /// "ready", or an intent a crash left behind ("creating", "reverting",
    /// "deleting") or "error", which `vman_reconcile` settles.
    fn vman_snapshot_state -> text = |s| &s.state;
    /// Unix time it was taken in milliseconds.
    fn vman_snapshot_created_at_ms -> number<i64> = |s| s.created_at_ms;
    free vman_snapshot_free;
    list VmanSnapshotList(vman_snapshot_list_len, vman_snapshot_list_get, vman_snapshot_list_free);
}

/// Takes snapshot `name` of every disk of VM `vm` (all qcow2). A stopped
/// VM's is taken with qemu-img; a running or paused VM's with a QMP job
/// that saves its memory too (the guest pauses meanwhile).
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_snapshot_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name),
/// VMAN_STATUS_ALREADY_EXISTS (the VM has a snapshot of that name),
/// VMAN_STATUS_INVALID_STATE (the VM has no disk, or is starting or
/// stopping), VMAN_STATUS_UNSUPPORTED (a raw disk, which cannot hold
/// snapshots), VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU,
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO; nothing
/// is left behind.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_snapshot_create(
    manager: *const VmanManager,
    vm: *const c_char,
    name: *const c_char,
    out: *mut *mut VmanSnapshot,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, name) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(name, "name")?);
            Ok(manager.inner.create_snapshot(vm, name)?.into())
        })
    }
}

/// VM `vm`'s snapshots, oldest first.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_snapshot_list_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_snapshot_list(manager: *const VmanManager, vm: *const c_char, out: *mut *mut VmanSnapshotList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, vm) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?);
            Ok(manager.inner.snapshots(vm)?.into_iter().collect())
        })
    }
}

/// Brings VM `vm`'s disks back to snapshot `name`: a stopped VM's with
/// qemu-img (any snapshot), a running one's with a QMP job (memory too),
/// and then only to a live snapshot.
///
/// `out` may be NULL; otherwise on success `*out` is the snapshot, owned by
/// the caller (free it with `vman_snapshot_free`).
///
/// Fails with VMAN_STATUS_UNSUPPORTED (a running VM and a snapshot taken
/// while it was stopped: reverting disks under a running guest would
/// corrupt them; stop it first), VMAN_STATUS_INVALID_STATE (the VM is
/// starting or stopping), VMAN_STATUS_NOT_FOUND (no such VM or snapshot),
/// VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_snapshot_revert(
    manager: *const VmanManager,
    vm: *const c_char,
    name: *const c_char,
    out: *mut *mut VmanSnapshot,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, name) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(name, "name")?);
            Ok(manager.inner.revert_snapshot(vm, name)?.into())
        })
    }
}

/// Deletes snapshot `name` from every disk of VM `vm`.
///
/// Fails with VMAN_STATUS_NOT_FOUND (no such VM or snapshot),
/// VMAN_STATUS_INVALID_STATE (the VM is starting or stopping),
/// VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_snapshot_delete(manager: *const VmanManager, vm: *const c_char, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, vm, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_snapshot(vm, name)?)
    })
}
