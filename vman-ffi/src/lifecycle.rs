//! Running VMs: start, stop, pause, resume, restart.
//!
//! Each call blocks until the operation is done and, if `out` is not NULL,
//! hands back the VM as it is afterwards (owned; free with `vman_vm_free`).

use std::ffi::c_char;

use vman_core::Vm;
use vman_core::convert::millis_arg;

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, write_out};
use crate::manager::VmanManager;
use crate::vm::VmanVm;

/// The shape every lifecycle call shares: borrow the manager and name, run
/// the operation, hand back the VM.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
unsafe fn operate(
    manager: *const VmanManager,
    name: *const c_char,
    out: *mut *mut VmanVm,
    op: impl FnOnce(&vman_core::Manager, &str) -> Result<Vm, Failure>,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        let vm = op(&manager.inner, name)?;
        if !out.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out, guard::into_handle(VmanVm::from(vm))) };
        }
        Ok(())
    })
}

/// Starts a created, stopped or failed VM; returns once QEMU answers on QMP
/// (the guest then boots; see `vman_vm_wait_for_console`). On failure the VM
/// is left in state error with QEMU's message.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_start(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.start(n)?)) }
}

/// Stops a running or paused VM: ACPI power button, up to `timeout_ms` for
/// the guest to power off, then QMP quit, then SIGKILL.
///
/// # Safety
/// As `vman_vm_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_stop(manager: *const VmanManager, name: *const c_char, timeout_ms: u64, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.stop(n, millis_arg("timeout", timeout_ms)?)?)) }
}

/// Stops a VM at once: QMP quit, then SIGKILL if QEMU lingers.
///
/// # Safety
/// As `vman_vm_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_force_stop(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.force_stop(n)?)) }
}

/// Stops (gracefully, within `timeout_ms`) and starts the VM again.
///
/// # Safety
/// As `vman_vm_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_restart(manager: *const VmanManager, name: *const c_char, timeout_ms: u64, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.restart(n, millis_arg("timeout", timeout_ms)?)?)) }
}

/// Halts the guest's vCPUs (QMP stop).
///
/// # Safety
/// As `vman_vm_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_pause(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.pause(n)?)) }
}

/// Resumes a paused guest (QMP cont).
///
/// # Safety
/// As `vman_vm_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_resume(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: forwarded contract.
    unsafe { operate(manager, name, out, |m, n| Ok(m.resume(n)?)) }
}
