//! What a reconciliation found and did.

use serde::Serialize;

/// One difference between the store and reality, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Drift {
    /// The VM's name, or the run directory's name for an unknown one.
    pub vm: String,
    pub found: String,
    pub action: String,
}

/// What one reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ReconcileReport {
    pub drifts: Vec<Drift>,
    /// VMs whose running QEMU this manager now supervises.
    pub adopted: Vec<String>,
}

impl ReconcileReport {
    /// Logs every drift (at info: a repair is worth knowing, not alarming).
    pub(crate) fn log(&self) {
        for drift in &self.drifts {
            log::info!("reconcile: {}: {}; {}", drift.vm, drift.found, drift.action);
        }
    }
}
