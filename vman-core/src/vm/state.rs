//! The VM state machine: the one place that says which transitions exist.
//!
//! ```text
//!            start            QMP ready
//! created ─────────► starting ─────────► running ◄──────┐
//!    │                 │   ▲               │ │ pause    │ resume
//!    │ delete          │   │ start         │ └──► paused┘
//!    ▼                 ▼   │               ▼ stop    │
//! deleted ◄──────── stopped ◄───────── stopping ◄────┘
//!    ▲                 ▲ ▲                 │
//!    └───── error ─────┘ └─────────────────┘
//! ```
//! Any live state may fall to `stopped` (QEMU exited cleanly) or `error`
//! (QEMU crashed or a start failed); `error` may be started again or deleted.

use std::fmt;

/// The lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Recorded, never started.
    Created,
    /// QEMU is being launched.
    Starting,
    /// QEMU runs and the guest executes.
    Running,
    /// QEMU runs with the guest's CPUs halted.
    Paused,
    /// A stop was asked for and QEMU has not exited yet.
    Stopping,
    /// QEMU is not running; the VM can be started again.
    Stopped,
    /// QEMU crashed or failed to start.
    Error,
    /// Soft-deleted: kept for history, name freed.
    Deleted,
}

impl VmState {
    /// Every state, in lifecycle order.
    pub const ALL: [VmState; 8] = [
        VmState::Created,
        VmState::Starting,
        VmState::Running,
        VmState::Paused,
        VmState::Stopping,
        VmState::Stopped,
        VmState::Error,
        VmState::Deleted,
    ];

    /// The state's lower-case name, as the store and serde write it:
    /// `created`, `running`…
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Created => "created",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
            VmState::Deleted => "deleted",
        }
    }

    /// True while a QEMU process is (or should be) alive for the VM.
    pub fn has_process(self) -> bool {
        matches!(self, VmState::Starting | VmState::Running | VmState::Paused | VmState::Stopping)
    }

    /// True for states that only last while an operation is in flight.
    pub fn is_transitional(self) -> bool {
        matches!(self, VmState::Starting | VmState::Stopping)
    }

    /// Whether the machine allows going from `self` to `to`.
    pub fn can_become(self, to: VmState) -> bool {
        use VmState::*;
        matches!(
            (self, to),
            (Created, Starting | Deleted)
                | (Starting, Running | Paused | Stopped | Error)
                | (Running, Paused | Stopping | Stopped | Error)
                | (Paused, Running | Stopping | Stopped | Error)
                | (Stopping, Running | Stopped | Error)
                | (Stopped, Starting | Deleted)
                | (Error, Starting | Stopped | Deleted)
        )
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::VmState::*;
    use super::*;

    #[test]
    fn deleted_is_terminal() {
        for to in VmState::ALL {
            assert!(!Deleted.can_become(to), "deleted -> {to}");
        }
    }

    #[test]
    fn a_vm_with_a_process_cannot_be_deleted_directly() {
        for from in VmState::ALL.into_iter().filter(|s| s.has_process()) {
            assert!(!from.can_become(Deleted), "{from} -> deleted");
        }
    }

    #[test]
    fn every_state_but_deleted_can_reach_stopped_or_is_created() {
        // No state may trap a VM: each one either reaches `stopped` in one
        // step (a crash or exit) or is `created`/`stopped`, which need no exit.
        for from in VmState::ALL {
            if matches!(from, Created | Stopped | Deleted) {
                continue;
            }
            assert!(from.can_become(Stopped) || from.can_become(Error), "{from} is a trap");
        }
    }

    #[test]
    fn the_lifecycle_the_runtime_needs_is_allowed() {
        let path =
            [Created, Starting, Running, Paused, Running, Stopping, Stopped, Starting, Running, Error, Starting, Running, Stopped, Deleted];
        for pair in path.windows(2) {
            pair[0].check_transition(pair[1], "vm").unwrap();
        }
    }

    #[test]
    fn illegal_transitions_are_typed_errors() {
        for (from, to) in
            [(Created, Running), (Stopped, Running), (Running, Starting), (Running, Deleted), (Stopping, Paused), (Deleted, Created)]
        {
            let err = from.check_transition(to, "web1").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidState);
            assert!(err.to_string().contains("web1"));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in VmState::ALL {
            assert_eq!(s.as_str().parse::<VmState>().unwrap(), s);
        }
        assert!("bogus".parse::<VmState>().is_err());
    }
}
