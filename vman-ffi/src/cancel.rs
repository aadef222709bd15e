//! Cancellation tokens, and the forms of the waiting calls that take one.
//!
//! A `VmanCancel` is made by one thread and cancelled by any other (a UI
//! thread, a request handler); every `*_cancellable` call given it then
//! returns `VMAN_STATUS_CANCELLED` promptly, leaving what its comment says.
//! Each `*_cancellable` call is its plain form plus the token: a NULL
//! token makes it exactly the plain call.

use std::ffi::c_char;

use vman_core::Cancel;
use vman_core::convert::millis_arg;

use crate::disk::VmanDisk;
use crate::error::{Failure, VmanStatus};
use crate::event::{VmanEvent, VmanEventStream};
use crate::guard::{self, call, new_handle, optional_handle, write_out};
use crate::manager::VmanManager;
use crate::record::cstring;
use crate::snapshot::VmanSnapshot;
use crate::vm::VmanVm;

/// A cancellation token: `vman_cancel_cancel` makes every wait given it
/// end with `VMAN_STATUS_CANCELLED`. Thread-safe: a `const VmanCancel *`
/// may be used by any number of threads at once (that is its purpose), as
/// long as none of them frees it meanwhile.
#[derive(Debug)]
pub struct VmanCancel {
    pub(crate) inner: Cancel,
}

/// Borrows an optional token: NULL is no token.
///
/// # Safety
/// `cancel` NULL or live.
unsafe fn token<'a>(cancel: *const VmanCancel) -> Option<&'a Cancel> {
    // SAFETY: per this function's contract, a non-NULL pointer is live.
    unsafe { cancel.as_ref() }.map(|c| &c.inner)
}

/// Makes a token that is not cancelled.
///
/// `out` must not be NULL. On success `*out` is the token, owned by the
/// caller (free it with `vman_cancel_free` once no call uses it).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Thread-safe.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_cancel_new(out: *mut *mut VmanCancel) -> VmanStatus {
    // SAFETY: `out` is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(VmanCancel { inner: Cancel::new() })) }
}

/// Cancels every wait given `cancel`, now and from now on (a cancelled
/// token stays cancelled: make a new one for the next operation).
/// Idempotent; NULL is a no-op.
///
/// Thread-safe: call it from any thread while others wait with the token.
/// Never fails (clears the last error).
///
/// # Safety
/// `cancel` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_cancel_cancel(cancel: *const VmanCancel) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { token(cancel) }.map_or((), Cancel::cancel))
}

/// Whether `vman_cancel_cancel` was called on `cancel`; false for NULL.
/// Thread-safe; never fails (clears the last error).
///
/// # Safety
/// `cancel` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_cancel_is_cancelled(cancel: *const VmanCancel) -> bool {
    // SAFETY: per this function's contract.
    guard::get(false, || unsafe { token(cancel) }.is_some_and(Cancel::is_cancelled))
}

/// Frees a token; NULL is a no-op. No call may still be using it, and no
/// other thread may use it during or after the call. Never fails (clears
/// the last error).
///
/// # Safety
/// `cancel` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_cancel_free(cancel: *mut VmanCancel) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(cancel) })
}

/// `vman_vm_start` that `cancel` (may be NULL: no token) can end: while
/// waiting for another operation on the VM nothing has changed; while
/// waiting for the new QEMU to answer, that QEMU is killed, its network
/// unplugged and the VM recorded stopped (with a "cancelled" event). A
/// start whose QEMU answered is not undone.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_vm_start`:
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU,
/// VMAN_STATUS_PERMISSION_DENIED, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_ALREADY_EXISTS, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_start_cancellable(
    manager: *const VmanManager,
    name: *const c_char,
    cancel: *const VmanCancel,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(match token(cancel) {
                Some(cancel) => manager.inner.start_cancellable(name, cancel)?,
                None => manager.inner.start(name)?,
            }
            .into())
        })
    }
}

/// `vman_vm_stop` that `cancel` (may be NULL: no token) can end: while
/// waiting for another operation on the VM nothing has changed; while the
/// guest is given `timeout_ms` to power off, nothing has been forced, so
/// the VM is recorded running again (a paused VM was resumed for the power
/// button), with a "cancelled" event; the guest may still act on the power
/// button later. Once vman forces the stop it is seen through.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_vm_stop`:
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_stop_cancellable(
    manager: *const VmanManager,
    name: *const c_char,
    timeout_ms: u64,
    cancel: *const VmanCancel,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            let timeout = millis_arg("timeout", timeout_ms)?;
            Ok(match token(cancel) {
                Some(cancel) => manager.inner.stop_cancellable(name, timeout, cancel)?,
                None => manager.inner.stop(name, timeout)?,
            }
            .into())
        })
    }
}

/// `vman_vm_restart` that `cancel` (may be NULL: no token) can end: during
/// the stop as `vman_vm_stop_cancellable` says (the VM stays running),
/// during the start as `vman_vm_start_cancellable` says (it is stopped).
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_vm_restart`:
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_PERMISSION_DENIED, VMAN_STATUS_ALREADY_EXISTS,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_restart_cancellable(
    manager: *const VmanManager,
    name: *const c_char,
    timeout_ms: u64,
    cancel: *const VmanCancel,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            let timeout = millis_arg("timeout", timeout_ms)?;
            Ok(match token(cancel) {
                Some(cancel) => manager.inner.restart_cancellable(name, timeout, cancel)?,
                None => manager.inner.restart(name, timeout)?,
            }
            .into())
        })
    }
}

/// `vman_vm_wait_for_console` that `cancel` (may be NULL: no token) can
/// end; waiting changes nothing, so nothing is left to undo.
///
/// `out_line` may be NULL; otherwise on success `*out_line` is the line,
/// owned by the caller (free it with `vman_string_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_vm_wait_for_console`:
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_INVALID_STATE,
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_wait_for_console_cancellable(
    manager: *const VmanManager,
    name: *const c_char,
    pattern: *const c_char,
    timeout_ms: u64,
    cancel: *const VmanCancel,
    out_line: *mut *mut c_char,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name, pattern, cancel) = unsafe {
            (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::string(pattern, "pattern")?, token(cancel))
        };
        let timeout = millis_arg("timeout", timeout_ms)?;
        let line = match cancel {
            Some(cancel) => manager.inner.wait_for_console_cancellable(name, pattern, timeout, cancel)?,
            None => manager.inner.wait_for_console(name, pattern, timeout)?,
        };
        if !out_line.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out_line, cstring(line).into_raw()) };
        }
        Ok(())
    })
}

/// `vman_disk_detach` that `cancel` (may be NULL: no token) can end: while
/// waiting for another operation on the VM nothing has changed; while the
/// guest is given `timeout_ms` to release the disk, it leaves what a
/// timeout leaves (the disk attached, the release still asked for: the
/// next detach or reconcile completes it if the guest lets go).
///
/// `out` may be NULL; otherwise on success `*out` is the disk as it is
/// afterwards, owned by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_disk_detach`:
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_detach_cancellable(
    manager: *const VmanManager,
    vm: *const c_char,
    disk: *const c_char,
    timeout_ms: u64,
    cancel: *const VmanCancel,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, disk) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(disk, "disk")?);
            let timeout = millis_arg("timeout", timeout_ms)?;
            Ok(match token(cancel) {
                Some(cancel) => manager.inner.detach_disk_cancellable(vm, disk, timeout, cancel)?,
                None => manager.inner.detach_disk(vm, disk, timeout)?,
            }
            .into())
        })
    }
}

/// `vman_snapshot_create` that `cancel` (may be NULL: no token) can end:
/// while waiting for another operation on the VM nothing has changed; a
/// cancel while the snapshot is taken lets it finish (QEMU cannot abandon
/// a snapshot job midway) and then removes it: a create that answers
/// VMAN_STATUS_CANCELLED leaves no snapshot.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_snapshot_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_snapshot_create`:
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_ALREADY_EXISTS,
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_UNSUPPORTED,
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` and `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_snapshot_create_cancellable(
    manager: *const VmanManager,
    vm: *const c_char,
    name: *const c_char,
    cancel: *const VmanCancel,
    out: *mut *mut VmanSnapshot,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, name) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(name, "name")?);
            Ok(match token(cancel) {
                Some(cancel) => manager.inner.create_snapshot_cancellable(vm, name, cancel)?,
                None => manager.inner.create_snapshot(vm, name)?,
            }
            .into())
        })
    }
}

/// `vman_event_stream_next` that `cancel` (may be NULL: no token) can end;
/// the stream stays open and loses nothing.
///
/// `out` must not be NULL. On success `*out` is the event, owned by the
/// caller (free it with `vman_event_free`).
///
/// Fails with VMAN_STATUS_CANCELLED, and as `vman_event_stream_next`:
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_CLOSED, VMAN_STATUS_INVALID_ARGUMENT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Not thread-safe for `stream` (one thread at a time per stream, as
/// `vman_event_stream_next`); `cancel` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_next_cancellable(
    stream: *mut VmanEventStream,
    timeout_ms: u64,
    cancel: *const VmanCancel,
    out: *mut *mut VmanEvent,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let stream = guard::handle(stream, "stream")?;
            let timeout = millis_arg("timeout", timeout_ms)?;
            let event = match token(cancel) {
                Some(cancel) => stream.inner.next_cancellable(timeout, cancel)?,
                None => stream.inner.next(timeout)?,
            };
            Ok(event.ok_or_else(|| Failure::new(VmanStatus::Timeout, format!("No event within {timeout_ms} ms")))?.into())
        })
    }
}
