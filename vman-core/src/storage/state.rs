//! A disk's states: free of the error type, so errors can name them.

use serde::{Deserialize, Serialize};

/// Where a disk is in its life. `Available` and `Attached` are at rest; the
/// others are intents recorded before host work and settled after it (or
/// by [`reconcile`](crate::Manager::reconcile) after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskState {
    /// Its file is being made (qemu-img create, a copy, a clone).
    Creating,
    /// Not attached to any VM.
    Available,
    /// Being hot-plugged into a running VM.
    Attaching,
    /// Attached to a VM: part of its next start, or plugged into its QEMU.
    Attached,
    /// Being unplugged from a running VM.
    Detaching,
    /// Its file is being removed.
    Deleting,
    /// An operation failed in a way that needs an operator; see `last_error`.
    Error,
}

impl DiskState {
    /// Every state, in declaration order.
    pub const ALL: [DiskState; 7] = [
        DiskState::Creating,
        DiskState::Available,
        DiskState::Attaching,
        DiskState::Attached,
        DiskState::Detaching,
        DiskState::Deleting,
        DiskState::Error,
    ];

    /// The state's lower-case name, as the store writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Creating => "creating",
            DiskState::Available => "available",
            DiskState::Attaching => "attaching",
            DiskState::Attached => "attached",
            DiskState::Detaching => "detaching",
            DiskState::Deleting => "deleting",
            DiskState::Error => "error",
        }
    }
}

impl std::fmt::Display for DiskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
