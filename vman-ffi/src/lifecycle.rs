//! Running VMs: start, stop, pause, resume, restart.
//!
//! Each call blocks until the operation is done and, if `out` is not NULL,
//! hands back the VM as it is afterwards (owned; free with `vman_vm_free`).

use std::ffi::c_char;

use vman_core::Vm;
use vman_core::convert::millis_arg;

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, optional_handle};
use crate::manager::VmanManager;
use crate::vm::VmanVm;

/// The shape every lifecycle call shares: borrow the manager and name, run
/// the operation, hand back the VM if asked.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
unsafe fn operate(
    manager: *const VmanManager,
    name: *const c_char,
    out: *mut *mut VmanVm,
    op: impl FnOnce(&vman_core::Manager, &str) -> Result<Vm, Failure>,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(op(&manager.inner, name)?.into())
        })
    }
}

/// Starts a created, stopped or failed VM; returns once QEMU answers on QMP
/// (the guest then boots; see `vman_vm_wait_for_console`). On failure the VM
/// is left in state error with QEMU's message.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (not startable, or no boot source),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU (QEMU refused to start),
/// VMAN_STATUS_PERMISSION_DENIED (QEMU's user cannot reach the state
/// directory, or bridged networking without CAP_NET_ADMIN),
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_ALREADY_EXISTS (a host interface vman
/// did not make is in the way), VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_start(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.start(n)?)) }
}

/// Stops a running or paused VM: ACPI power button, up to `timeout_ms` for
/// the guest to power off (VMAN_DEFAULT_STOP_TIMEOUT_MS is vman's usual
/// wait), then SIGTERM (QEMU's own orderly quit), then SIGKILL.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (not running or paused),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_INVALID_ARGUMENT (a timeout beyond
/// range), VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_stop(
    manager: *const VmanManager,
    name: *const c_char,
    timeout_ms: u64,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.stop(n, millis_arg("timeout", timeout_ms)?)?)) }
}

/// Stops a VM at once: SIGTERM (QEMU's own orderly quit, as QMP quit), then SIGKILL if QEMU lingers.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (not running or paused),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_force_stop(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.force_stop(n)?)) }
}

/// Stops (gracefully, within `timeout_ms`) and starts the VM again.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with any status of `vman_vm_stop`, then of `vman_vm_start`:
/// VMAN_STATUS_INVALID_STATE, VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_INVALID_ARGUMENT, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_PERMISSION_DENIED, VMAN_STATUS_ALREADY_EXISTS,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_restart(
    manager: *const VmanManager,
    name: *const c_char,
    timeout_ms: u64,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.restart(n, millis_arg("timeout", timeout_ms)?)?)) }
}

/// Halts the guest's vCPUs (QMP stop); QEMU keeps running.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (not running),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_pause(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.pause(n)?)) }
}

/// Resumes a paused guest (QMP cont).
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (not paused),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_resume(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.resume(n)?)) }
}

/// Puts the ISO at `iso` (an absolute path to a regular file) in the VM's
/// CD-ROM drive, or ejects it when `iso` is NULL. A running or paused VM
/// sees the change at once; otherwise it holds from the next start.
///
/// `out` may be NULL; otherwise on success `*out` is the VM as it is
/// afterwards, owned by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad path, or an eject from a
/// VM that boots from its CD-ROM), VMAN_STATUS_INVALID_STATE (the VM is
/// starting or stopping), VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU,
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_change_cdrom(
    manager: *const VmanManager,
    name: *const c_char,
    iso: *const c_char,
    out: *mut *mut VmanVm,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name, iso) =
                (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::optional_string(iso, "iso")?);
            Ok(manager.inner.change_cdrom(name, iso)?.into())
        })
    }
}
