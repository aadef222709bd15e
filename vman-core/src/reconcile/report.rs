//! What a reconciliation found and did.

use serde::Serialize;

/// One difference between the store and reality, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Drift {
    /// The VM's name; its id (the name of its run directory or lock) for a
    /// deleted or unknown VM; `-` for a network's bridge or DHCP server.
    pub vm: String,
    /// What differed, in words, e.g. `tap vt1 of a VM with no QEMU`.
    pub found: String,
    /// What was done about it, in words (`removed it`), or why nothing was.
    pub action: String,
}

/// What one reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ReconcileReport {
    /// Every difference found, in the order it was found.
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
