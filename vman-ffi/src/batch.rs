//! Batches: N VMs made from one VM spec and a naming pattern, all or none;
//! deleted together or by name prefix.

use std::ffi::{CString, c_char};

use vman_core::{Batch, BatchSpec, BatchState};

use crate::error::VmanStatus;
use crate::guard::{self, call, new_handle, optional_handle};
use crate::manager::VmanManager;
use crate::record::cstring;
use crate::vm::VmanVmSpec;

/// The state of a batch. Numbers are stable.
// `repr(C)` for the reason given at `VmanStatus`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmanBatchState {
    #[default]
    Creating = 0,
    Created = 1,
    RollingBack = 2,
    Deleting = 3,
    Deleted = 4,
}

impl From<BatchState> for VmanBatchState {
    fn from(state: BatchState) -> Self {
        match state {
            BatchState::Creating => VmanBatchState::Creating,
            BatchState::Created => VmanBatchState::Created,
            BatchState::RollingBack => VmanBatchState::RollingBack,
            BatchState::Deleting => VmanBatchState::Deleting,
            BatchState::Deleted => VmanBatchState::Deleted,
        }
    }
}

/// A batch definition being built; create with `vman_batch_spec_new`. Not
/// thread-safe: one thread builds it.
#[derive(Debug)]
pub struct VmanBatchSpec {
    inner: BatchSpec,
}

record! {
    /// A batch record: a snapshot taken when it was read; immutable,
    /// thread-safe.
    pub struct VmanBatch(batch) from Batch;
    /// The store's id, never reused.
    fn vman_batch_id -> number<i64> = |b| b.id;
    fn vman_batch_name -> text = |b| &b.name;
    /// The naming pattern its VMs were named by, e.g. "worker{:02}".
    fn vman_batch_pattern -> text = |b| &b.pattern;
    /// How many VMs it was made with.
    fn vman_batch_count -> number<u32> = |b| b.count;
    /// The state when the record was read (0 is VMAN_BATCH_STATE_CREATING).
    fn vman_batch_state -> number<VmanBatchState> = |b| b.state.into();
    /// Unix time of the batch's creation in milliseconds.
    fn vman_batch_created_at_ms -> number<i64> = |b| b.created_at_ms;
    /// How many live VMs it has (fewer than its count once some were
    /// deleted on their own); see `vman_batch_vm`.
    fn vman_batch_vm_count -> number<usize> = |b| b.vms.len();
    /// The name of its VM `index`, in the order they were made.
    fn vman_batch_vm -> text_at = |b| b.vms.iter();
    free vman_batch_free;
    list VmanBatchList(vman_batch_list_len, vman_batch_list_get, vman_batch_list_free);
}

record! {
    /// Names (of the VMs a delete removed), in order; immutable,
    /// thread-safe.
    pub struct VmanNames(names) from Vec<String>;
    /// How many names there are.
    fn vman_names_len -> number<usize> = |n| n.len();
    /// Name `index`.
    fn vman_names_get -> text_at = |n| n.iter();
    free vman_names_free;
}

/// Starts a batch definition: `count` VMs named by `pattern` (one
/// placeholder, "{}" or "{:0N}", as in "worker{:02}" for worker01,
/// worker02…), each made as `vm` says. `vm` is copied (it stays the
/// caller's); its name must be empty (""), since each VM's name comes from
/// the pattern. The VMs are numbered from 1 and not started, and the batch
/// is named after the pattern, unless set otherwise. Everything is checked
/// when the batch is created.
///
/// `out` must not be NULL. On success `*out` is the spec, owned by the
/// caller (free it with `vman_batch_spec_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Thread-safe: `vm` is only read (no other thread may change it during
/// the call).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_spec_new(
    pattern: *const c_char,
    count: u32,
    vm: *const VmanVmSpec,
    out: *mut *mut VmanBatchSpec,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (pattern, vm) = (guard::string(pattern, "pattern")?, guard::handle(vm, "vm")?);
            Ok(VmanBatchSpec { inner: BatchSpec::new(pattern, count, vm.inner.clone()) })
        })
    }
}

/// Names the batch (unique among live batches); by default it is named
/// after its pattern without the placeholder ("worker{:02}" → "worker").
/// Checked when the batch is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_spec_set_name(spec: *mut VmanBatchSpec, name: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", name, "name", |s, v| {
            s.inner.name = Some(v.into());
            Ok(())
        })
    }
}

/// Numbers the VMs from `first` (1 by default).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_spec_set_first(spec: *mut VmanBatchSpec, first: u32) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        unsafe { guard::handle_mut(spec, "spec") }?.inner.first = first;
        Ok(())
    })
}

/// Whether every VM is started once all are made (not by default).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_spec_set_start(spec: *mut VmanBatchSpec, start: bool) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        unsafe { guard::handle_mut(spec, "spec") }?.inner.start = start;
        Ok(())
    })
}

/// Frees a spec; NULL is a no-op. No other thread may use `spec` during or
/// after the call. Never fails (clears the last error).
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_spec_free(spec: *mut VmanBatchSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Creates the batch's VMs, all or none: every name is checked first, then
/// all the VMs are recorded in one transaction, their boot disks made and,
/// if asked, each started. If one VM cannot be recorded, made or started,
/// every VM of the batch is deleted again (QEMU killed, disks, seeds, taps
/// and addresses released) and the status of what stopped it returned.
/// `spec` stays the caller's.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_batch_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad pattern, count, name or
/// VM spec; a fixed address or MAC shared by several VMs),
/// VMAN_STATUS_ALREADY_EXISTS (the batch's name or a VM's is taken; the
/// message names them), VMAN_STATUS_NOT_FOUND (no such template, network,
/// image or SSH key), VMAN_STATUS_EXHAUSTED (a network has too few free
/// addresses), VMAN_STATUS_QEMU (a VM did not start, or qemu-img failed),
/// VMAN_STATUS_UNSUPPORTED, VMAN_STATUS_PERMISSION_DENIED,
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once; `spec` is
/// only read.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_create(
    manager: *const VmanManager,
    spec: *const VmanBatchSpec,
    out: *mut *mut VmanBatch,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, spec) = (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?);
            Ok(manager.inner.create_batch(&spec.inner)?.into())
        })
    }
}

/// Looks a live batch up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_batch_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanBatch) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.batch(name)?.into())
        })
    }
}

/// Every live batch (also those being created or deleted), by name.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_batch_list_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_list(manager: *const VmanManager, out: *mut *mut VmanBatchList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.batches()?.into_iter().collect())) }
}

/// Deletes a batch and every VM of it. With `force`, running (or paused)
/// VMs are stopped by force; without it, a batch with any VM that has a
/// QEMU is refused with VMAN_STATUS_INVALID_STATE (the message names
/// them) and nothing is deleted. A batch another process is still
/// creating is waited for, then deleted.
///
/// `out` may be NULL; otherwise on success `*out` holds the names of the
/// VMs deleted, owned by the caller (free it with `vman_names_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (see above),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_TIMEOUT (another
/// operation held a VM too long), VMAN_STATUS_QEMU (stopping a VM
/// failed; the batch is left deleting, which reconcile finishes),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_batch_delete(
    manager: *const VmanManager,
    name: *const c_char,
    force: bool,
    out: *mut *mut VmanNames,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.delete_batch(name, force)?.into())
        })
    }
}

/// Deletes every live VM whose name starts with `prefix` (compared byte for
/// byte: any VM, in a batch or not), one after another; a batch left with
/// no VM is deleted too. With `force`, running (or paused) VMs are stopped
/// by force; without it, if any of them has a QEMU the call fails with
/// VMAN_STATUS_INVALID_STATE (the message names them) and nothing is
/// deleted. It stops at the first VM that cannot be deleted (the ones
/// before it are gone).
///
/// `out` may be NULL; otherwise on success `*out` holds the names of the
/// VMs deleted, in name order, owned by the caller (free it with
/// `vman_names_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an empty prefix, or one no
/// name can start with), VMAN_STATUS_INVALID_STATE (see above),
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_QEMU,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_delete_by_prefix(
    manager: *const VmanManager,
    prefix: *const c_char,
    force: bool,
    out: *mut *mut VmanNames,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, prefix) = (guard::handle(manager, "manager")?, guard::string(prefix, "prefix")?);
            Ok(manager.inner.delete_vms_by_prefix(prefix, force)?.into())
        })
    }
}

/// A static name for a batch state ("created"); "unknown" for a number
/// that is no state. Never NULL; static, never free it. Thread-safe; never
/// fails, and does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn vman_batch_state_name(state: u32) -> *const c_char {
    // The names are core's (BatchState::as_str), made C strings once; the
    // numbers follow BatchState::ALL, as VmanBatchState's do.
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| BatchState::ALL.iter().map(|s| cstring(s.as_str())).collect());
    names.get(state as usize).map_or(c"unknown".as_ptr(), |n| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_state_numbers_follow_cores_order() {
        for (i, state) in BatchState::ALL.into_iter().enumerate() {
            assert_eq!(VmanBatchState::from(state) as usize, i, "{state}");
            // SAFETY: a static, NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(vman_batch_state_name(i as u32)) };
            assert_eq!(name.to_str(), Ok(state.as_str()));
        }
        // SAFETY: as above.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(vman_batch_state_name(99)) }.to_str(), Ok("unknown"));
    }
}
