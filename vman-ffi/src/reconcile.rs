//! The reconciler's report.

use vman_core::ReconcileReport;

use crate::error::VmanStatus;
use crate::guard::{self, optional_handle};
use crate::manager::VmanManager;

record! {
    /// What `vman_reconcile` found and did; immutable, thread-safe.
    pub struct VmanReconcileReport(report) from ReconcileReport;
    /// How many drifts (differences between the store and the host) it found.
    fn vman_reconcile_report_drift_count -> number<usize> = |r| r.drifts.len();
    /// The VM of drift `index` (or the run directory's name for an unknown one).
    fn vman_reconcile_report_drift_vm -> text_at = |r| r.drifts.iter().map(|d| &d.vm);
    /// What drift `index` found, e.g. "recorded running but its QEMU is gone".
    fn vman_reconcile_report_drift_found -> text_at = |r| r.drifts.iter().map(|d| &d.found);
    /// What was done about drift `index`.
    fn vman_reconcile_report_drift_action -> text_at = |r| r.drifts.iter().map(|d| &d.action);
    /// How many VMs' running QEMU this manager now supervises.
    fn vman_reconcile_report_adopted_count -> number<usize> = |r| r.adopted.len();
    /// The name of adopted VM `index`.
    fn vman_reconcile_report_adopted -> text_at = |r| &r.adopted;
    free vman_reconcile_report_free;
}

/// Compares the store with the running processes and run files, repairs
/// what it can, and reports every drift. Also runs at open.
///
/// `out` may be NULL (the repairs are made all the same); otherwise on
/// success `*out` is the report, owned by the caller (free it with
/// `vman_reconcile_report_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_TIMEOUT (a VM's lock
/// stayed held), VMAN_STATUS_PERMISSION_DENIED, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_reconcile(manager: *const VmanManager, out: *mut *mut VmanReconcileReport) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { optional_handle(out, || Ok(guard::handle(manager, "manager")?.inner.reconcile()?.into())) }
}
