//! A batch's states: free of the error type, so errors can name them.
//!
//! ```text
//!   creating ──► created ──► deleting ──► deleted
//!      │                        ▲
//!      └──► rolling_back ───────┴─────────► deleted
//! ```
//! `creating`, `rolling_back` and `deleting` are intents, written before
//! the host work they announce; a process that dies in one of them leaves
//! it to the reconciler, which rolls the batch back (or finishes its
//! delete) once no live process holds any of its VMs' locks.

use serde::Serialize;

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Its VMs are recorded and being made (boot disks, starts).
    Creating,
    /// Every VM was made (and started, if asked): at rest.
    Created,
    /// A VM failed (or its creator died): every VM of it is being removed.
    RollingBack,
    /// Being deleted with its VMs.
    Deleting,
    /// Gone, with its VMs; kept for its history only, never listed.
    Deleted,
}

impl BatchState {
    /// Every state, in declaration order.
    pub const ALL: [BatchState; 5] =
        [BatchState::Creating, BatchState::Created, BatchState::RollingBack, BatchState::Deleting, BatchState::Deleted];

    /// The state's name, as the store writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Creating => "creating",
            BatchState::Created => "created",
            BatchState::RollingBack => "rolling_back",
            BatchState::Deleting => "deleting",
            BatchState::Deleted => "deleted",
        }
    }

    /// Whether a process is (or was, before it died) in the middle of
    /// changing the batch.
    pub fn is_intent(self) -> bool {
        matches!(self, BatchState::Creating | BatchState::RollingBack | BatchState::Deleting)
    }
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
