//! The reconciler's report.

use std::ffi::{CString, c_char};

use crate::error::VmanStatus;
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::{self, cstring};

/// What `vman_reconcile` found and did; read-only.
#[derive(Debug)]
pub struct VmanReconcileReport {
    /// (vm, found, action) per drift.
    drifts: Vec<[CString; 3]>,
    adopted: Vec<CString>,
}

/// Compares the store with the running processes and run files, repairs
/// what it can, and reports every drift. Also runs at open.
///
/// # Safety
/// `manager` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_reconcile(manager: *const VmanManager, out: *mut *mut VmanReconcileReport) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let report = manager.inner.reconcile()?;
        let report = VmanReconcileReport {
            drifts: report.drifts.iter().map(|d| [cstring(&d.vm), cstring(&d.found), cstring(&d.action)]).collect(),
            adopted: report.adopted.iter().map(cstring).collect(),
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(report)) };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_drift_count(report: *const VmanReconcileReport) -> usize {
    record::number(report, |r| r.drifts.len())
}

/// The VM of drift `index`; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_drift_vm(report: *const VmanReconcileReport, index: usize) -> *const c_char {
    record::text_item(report, |r| r.drifts.get(index).map(|d| &d[0]))
}

/// What drift `index` found, e.g. "recorded running but its QEMU is gone".
#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_drift_found(report: *const VmanReconcileReport, index: usize) -> *const c_char {
    record::text_item(report, |r| r.drifts.get(index).map(|d| &d[1]))
}

/// What was done about drift `index`.
#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_drift_action(report: *const VmanReconcileReport, index: usize) -> *const c_char {
    record::text_item(report, |r| r.drifts.get(index).map(|d| &d[2]))
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_adopted_count(report: *const VmanReconcileReport) -> usize {
    record::number(report, |r| r.adopted.len())
}

/// The name of adopted VM `index`; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_reconcile_report_adopted(report: *const VmanReconcileReport, index: usize) -> *const c_char {
    record::text_item(report, |r| r.adopted.get(index))
}

/// Frees a report; NULL is a no-op.
///
/// # Safety
/// `report` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_reconcile_report_free(report: *mut VmanReconcileReport) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(report) })
}
