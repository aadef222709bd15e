//! The one error type of vman, and the stable kinds both façades map.
//!
//! Every fallible call in vman-core returns [`Error`]. Callers that need to
//! react programmatically match on [`Error::kind`]; the C façade turns each
//! [`ErrorKind`] into a numbered status code and the Python façade into an
//! exception class. Messages are short and sentence-case; the cause (an
//! `io::Error`, SQLite's error, QEMU's stderr) travels in `source()`.

use std::io;
use std::path::PathBuf;

/// What went wrong, in terms a caller can act on.
///
/// New kinds may be added; both façades match this exhaustively so a new kind
/// cannot be forgotten in one language.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument was malformed or out of range; nothing was changed.
    InvalidArgument,
    /// The named template, network, VM or allocation does not exist.
    NotFound,
    /// An object with that name, VLAN id, address or MAC already exists, or
    /// a network's subnet overlaps an existing network's.
    AlreadyExists,
    /// The object is still used by another and cannot be deleted.
    InUse,
    /// A network has no free address left.
    Exhausted,
    /// The operation is not allowed in the object's current state.
    InvalidState,
    /// The caller lacks a privilege the operation needs.
    PermissionDenied,
    /// The host cannot do this (missing kernel feature or program).
    Unsupported,
    /// A wait ran out of time.
    Timeout,
    /// An operating-system call failed.
    Io,
    /// The state database failed or is corrupt.
    Database,
    /// QEMU refused or failed an operation.
    Qemu,
    /// A bug in vman; please report it.
    Internal,
    /// The manager (or the stream or console) was closed; nothing more
    /// will come from it.
    Closed,
    /// The opener asked for a setting (network mode, accelerator, a
    /// binary…) that differs from the one the state directory keeps;
    /// nothing was opened.
    SettingConflict,
    /// A wait was cancelled through a [`Cancel`](crate::Cancel) token;
    /// each cancellable operation says what it leaves.
    Cancelled,
}

impl ErrorKind {
    /// Every kind, so each façade can prove in a test that its map gives
    /// every kind a code (or class) of its own.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InUse,
        ErrorKind::Exhausted,
        ErrorKind::InvalidState,
        ErrorKind::PermissionDenied,
        ErrorKind::Unsupported,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Database,
        ErrorKind::Qemu,
        ErrorKind::Internal,
        ErrorKind::Closed,
        ErrorKind::SettingConflict,
        ErrorKind::Cancelled,
    ];

    /// A stable lower-case identifier, used in logs and by the façades' tests.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InUse => "in_use",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Database => "database",
            ErrorKind::Qemu => "qemu",
            ErrorKind::Internal => "internal",
            ErrorKind::Closed => "closed",
            ErrorKind::SettingConflict => "setting_conflict",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_once_with_its_own_name() {
        // Adding a kind without listing it here fails to compile (the match
        // below is exhaustive in this crate) or fails the count.
        for kind in ErrorKind::ALL {
            match kind {
                ErrorKind::InvalidArgument
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::InUse
                | ErrorKind::Exhausted
                | ErrorKind::InvalidState
                | ErrorKind::PermissionDenied
                | ErrorKind::Unsupported
                | ErrorKind::Timeout
                | ErrorKind::Io
                | ErrorKind::Database
                | ErrorKind::Qemu
                | ErrorKind::Internal
                | ErrorKind::Closed
                | ErrorKind::SettingConflict
                | ErrorKind::Cancelled => {}
            }
        }
        let names: std::collections::HashSet<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from vman-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied value was rejected; `what` names the field.
    #[error("Invalid {what}: {reason}")]
    InvalidArgument {
        /// The value, as the message names it: `VLAN id`, `CIDR`, `QEMU user`…
        what: &'static str,
        /// Why it was refused, with the accepted range where there is one.
        reason: String,
        /// The parser's or the OS's own error, when one said why.
        #[source]
        source: Option<Cause>,
    },

    /// No live object of that kind has that name (a deleted VM counts as
    /// absent, except to its history).
    #[error("No {kind} named {name:?}")]
    NotFound {
        /// What was looked up: `template`, `network`, `VM` or
        /// `uplink interface` (a host interface).
        kind: &'static str,
        /// The name (or, for a VM's history, the name or id) looked up.
        name: String,
    },

    /// Another object already holds a value that must be unique: a name, a
    /// VLAN id, a MAC, or an address asked for explicitly. Nothing was changed.
    #[error("{} {kind} with {field} {value:?} already exists", if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "An" } else { "A" })]
    AlreadyExists {
        /// The kind of the object holding it: `template`, `network`, `VM`,
        /// `NIC` or `allocation`.
        kind: &'static str,
        /// Which of its values collides: `name`, `VLAN id`, `MAC` or `address`.
        field: &'static str,
        /// The colliding value, sometimes with its holder
        /// (`100 (network lan)`, `10.0.0.5 on network lan`).
        value: String,
    },

    /// A new network's subnet shares addresses with a live network's; its
    /// kind is [`ErrorKind::AlreadyExists`].
    #[error("CIDR {cidr} overlaps {other_cidr} of network {other:?}")]
    Overlap {
        /// The new network's subnet, e.g. `10.0.0.0/16`.
        cidr: String,
        /// The name of the existing network it overlaps.
        other: String,
        /// That network's subnet.
        other_cidr: String,
    },

    /// The VM already has a snapshot of that name; its kind is
    /// [`ErrorKind::AlreadyExists`].
    #[error("Snapshot {snapshot:?} of VM {vm:?} already exists")]
    SnapshotExists {
        /// The snapshot's name.
        snapshot: String,
        /// The VM's name.
        vm: String,
    },

    /// A disk of the VM holds a snapshot tag that vman did not record for
    /// the VM (left from before the disk was the VM's, or made by hand);
    /// it was left untouched. Its kind is [`ErrorKind::AlreadyExists`].
    #[error("Disk {disk:?} holds a snapshot tagged {snapshot:?} that is not one of this VM's; remove it with qemu-img snapshot -d")]
    StraySnapshotTag {
        /// The tag, the name asked for.
        snapshot: String,
        /// The disk's name.
        disk: String,
    },

    /// A host interface has the name vman gives a VLAN's bridge or a NIC's
    /// tap, and vman did not make it; it was left untouched. Its kind is
    /// [`ErrorKind::AlreadyExists`].
    #[error("Host interface {name} exists and was not made by vman; {advice}")]
    ForeignInterface {
        /// The interface's name, e.g. `vmbr100`.
        name: String,
        /// What the user can do: `remove or rename it`, and for a bridge
        /// `or use another VLAN id`.
        advice: &'static str,
    },

    /// The object is still used and cannot be deleted (a template by live
    /// VMs, a network by its VMs' addresses) or taken (a console by
    /// another client).
    #[error("{kind} {name:?} is in use by {user}")]
    InUse {
        /// What is in use, capitalized to start the message: `Template`,
        /// `Network` or `Console of VM`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Who uses it, e.g. `VM a, b, c and others` (at most three names)
        /// or `another client`.
        user: String,
    },

    /// Every assignable address of the network is taken: an automatic
    /// allocation found nothing free.
    #[error("Network {network:?} has no free address")]
    Exhausted {
        /// The network's name.
        network: String,
    },

    /// The state machine has no step from the VM's state to the one asked
    /// for; usually another thread or process changed the VM first (see
    /// [`VmState`](crate::VmState)).
    #[error("VM {vm:?} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The VM's name.
        vm: String,
        /// The state the VM is in, as the store has it now.
        from: crate::VmState,
        /// The state that was asked for.
        to: crate::VmState,
    },

    /// The operation needs the VM in another state, e.g. a console on a VM
    /// that does not run, or deleting a running VM without force.
    #[error("VM {vm:?} is {state}; {action} needs {needs}")]
    InvalidState {
        /// The VM's name.
        vm: String,
        /// The state the VM is in.
        state: crate::VmState,
        /// What was attempted: `start`, `delete`, `reach QEMU`…
        action: &'static str,
        /// What it needs, in words: `a running VM`, `a stopped VM (or force)`…
        needs: &'static str,
    },

    /// The operation needs the disk in another state, e.g. deleting an
    /// attached disk or detaching one that is not attached; its kind is
    /// [`ErrorKind::InvalidState`].
    #[error("Disk {disk:?} is {state}{}; {action} needs {needs}", vm.as_ref().map(|v| format!(" (VM {v:?})")).unwrap_or_default())]
    DiskState {
        /// The disk's name.
        disk: String,
        /// The state it is in.
        state: crate::storage::state::DiskState,
        /// The VM it is attached to, if any.
        vm: Option<String>,
        /// What was attempted: `delete`, `detach`, `attach`…
        action: &'static str,
        /// What it needs, in words.
        needs: &'static str,
    },

    /// A deletion of several VMs without force found some with a QEMU; it
    /// deleted nothing. Its kind is [`ErrorKind::InvalidState`].
    #[error("Deleting {what} would kill {vms}, which have a QEMU; stop them first, or delete with force")]
    VmsRunning {
        /// What was to be deleted: `batch "web"`, `the VMs named web*`.
        what: String,
        /// The VMs with a QEMU, e.g. `VM a, b, c and others`.
        vms: String,
    },

    /// A setting that running VMs depend on (network mode, dnsmasq, QEMU
    /// user) was to change while some VM has a QEMU; its kind is
    /// [`ErrorKind::InvalidState`].
    #[error("Setting {key} changes only while no VM runs; stop {vms} first")]
    SettingNeedsStoppedVms {
        /// The setting's key.
        key: &'static str,
        /// The VMs with a QEMU, e.g. `VM a, b, c and others`.
        vms: String,
    },

    /// The operation needs the batch in another state, e.g. deleting a
    /// batch that another process is still creating; its kind is
    /// [`ErrorKind::InvalidState`].
    #[error("Batch {batch:?} is {state}; {action} needs {needs}")]
    BatchState {
        /// The batch's name.
        batch: String,
        /// The state it is in.
        state: crate::batch::state::BatchState,
        /// What was attempted: `delete`…
        action: &'static str,
        /// What it needs, in words.
        needs: &'static str,
    },

    /// This process lacks a privilege or access right the operation needs,
    /// e.g. CAP_NET_ADMIN for bridged networking.
    #[error("Permission denied: {what}")]
    PermissionDenied {
        /// What was denied and how to get it, in words for an operator.
        what: String,
        /// The OS's error; `None` when vman refused on its own check.
        #[source]
        source: Option<Cause>,
    },

    /// The host cannot do this: a missing program or kernel feature, or a
    /// state database written by a newer vman.
    #[error("Unsupported on this host: {what}")]
    Unsupported {
        /// What is missing, and what to install or change.
        what: String,
        /// The failure that showed it, when there was one.
        #[source]
        source: Option<Cause>,
    },

    /// A bounded wait ran out: for another operation's lock on the same
    /// object, or for output on a console.
    #[error("Timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// What was waited for, e.g. `another operation on VM "web1" to finish`.
        what: String,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
        /// The failure behind the timeout, when there was one.
        #[source]
        source: Option<Cause>,
    },

    /// An OS call on a file or directory failed; its kind is
    /// [`ErrorKind::PermissionDenied`] when the OS said EACCES or EPERM,
    /// else [`ErrorKind::Io`].
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What failed, as a verb phrase that `path` completes:
        /// `create state directory`, `lock`, `run`…
        action: &'static str,
        /// The file, directory or program it was done to.
        path: PathBuf,
        /// The OS's error.
        #[source]
        source: io::Error,
    },

    /// The state database failed a query or transaction; the engine's error
    /// is the source.
    #[error("State database error")]
    Database(#[source] DatabaseError),

    /// QEMU failed to start or refused a request; `message` is QEMU's own.
    #[error("QEMU failed: {message}")]
    Qemu {
        /// The last lines of QEMU's stderr, `; `-joined, or how it ended
        /// when it said nothing.
        message: String,
        /// The failure that stopped vman from reaching QEMU, when there was one.
        #[source]
        source: Option<Cause>,
    },

    /// QEMU could not bind a host port forwarded to a guest (user mode): the
    /// port was free when vman chose it and taken before QEMU bound it. A
    /// start retries with another port before answering this; its kind is
    /// [`ErrorKind::Qemu`].
    #[error("QEMU could not forward a host port: {message}")]
    HostPortTaken {
        /// QEMU's own words.
        message: String,
    },

    /// Making or removing a bridge, tap or VLAN link on the host failed;
    /// its kind is [`ErrorKind::Io`].
    #[error("Host networking failed")]
    HostNet(#[source] crate::net::linux::HostNetError),

    /// The DHCP server (dnsmasq) of a bridged network failed to start, stop
    /// or report its leases; its kind is [`ErrorKind::Io`].
    #[error("DHCP server failed")]
    Dhcp(#[source] crate::net::dhcp::DhcpError),

    /// A QMP request to a VM's QEMU failed; its kind is
    /// [`ErrorKind::Timeout`] when QEMU did not answer in time, else
    /// [`ErrorKind::Qemu`].
    #[error("QMP request {command} to VM {vm:?} failed")]
    Qmp {
        /// The VM's name.
        vm: String,
        /// The QMP command, e.g. `query-status`, or `connect` for the
        /// connection itself.
        command: &'static str,
        /// What went wrong on the QMP connection.
        #[source]
        source: crate::runtime::qmp::QmpError,
    },

    /// A VM's console or serial log failed at the OS level. The message
    /// names the VM, never a path inside the state directory.
    #[error("Cannot {action} of VM {vm:?}")]
    Console {
        /// What failed, as a verb phrase: `connect to the console`,
        /// `read the serial log`…
        action: &'static str,
        /// The VM's name.
        vm: String,
        /// The OS's error.
        #[source]
        source: io::Error,
    },

    /// QEMU closed the VM's console (its QEMU exited): nothing more will
    /// come from it.
    #[error("QEMU closed the console of VM {vm:?}")]
    ConsoleEnded {
        /// The VM's name.
        vm: String,
    },

    /// An invariant of vman broke (a bug, or a state database edited by
    /// hand); the text says which.
    #[error("Internal error: {0}")]
    Internal(String),

    /// The manager, stream or console named by `what` was closed.
    #[error("{what} is closed")]
    Closed {
        /// Which handle, capitalized to start the message: `Manager`,
        /// `Event stream`, `Console`…
        what: &'static str,
    },

    /// The opener asked for a value of a setting that the state directory
    /// keeps with another value (see [`Settings`](crate::Settings)).
    #[error(
        "Setting {key} of this state directory is {stored:?}, not {requested:?}; \
         leave it out to use the directory's, or change it with `vman settings set {key} {requested}`"
    )]
    SettingConflict {
        /// The setting's key, e.g. `network` or `accel`.
        key: &'static str,
        /// The value the state directory keeps.
        stored: String,
        /// The value the opener asked for.
        requested: String,
    },

    /// A wait was cancelled through its [`Cancel`](crate::Cancel) token.
    #[error("Cancelled while waiting for {what}")]
    Cancelled {
        /// What was being waited for, and what was left: `VM "web1" to
        /// power off (it was left running)`…
        what: String,
    },
}

impl Error {
    /// The kind of failure, for callers and façades to branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. }
            | Error::Overlap { .. }
            | Error::ForeignInterface { .. }
            | Error::SnapshotExists { .. }
            | Error::StraySnapshotTag { .. } => ErrorKind::AlreadyExists,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::Exhausted { .. } => ErrorKind::Exhausted,
            Error::InvalidTransition { .. }
            | Error::InvalidState { .. }
            | Error::DiskState { .. }
            | Error::SettingNeedsStoppedVms { .. }
            | Error::VmsRunning { .. }
            | Error::BatchState { .. } => ErrorKind::InvalidState,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Io { source, .. } if is_permission(source) => ErrorKind::PermissionDenied,
            Error::Io { .. } => ErrorKind::Io,
            Error::Console { source, .. } if is_permission(source) => ErrorKind::PermissionDenied,
            Error::Console { .. } => ErrorKind::Io,
            Error::ConsoleEnded { .. } => ErrorKind::Closed,
            Error::Database(_) => ErrorKind::Database,
            Error::Qemu { .. } | Error::HostPortTaken { .. } => ErrorKind::Qemu,
            Error::HostNet(_) | Error::Dhcp(_) => ErrorKind::Io,
            Error::Qmp { source: crate::runtime::qmp::QmpError::Timeout, .. } => ErrorKind::Timeout,
            Error::Qmp { .. } => ErrorKind::Qemu,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Closed { .. } => ErrorKind::Closed,
            Error::SettingConflict { .. } => ErrorKind::SettingConflict,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
        }
    }

    /// The whole message with every cause, `: `-joined, as C and Python show it.
    pub fn full_message(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument { what, reason: reason.into(), source: None }
    }

    /// An invalid argument whose reason a parser or the OS gave: kept as
    /// the cause, not flattened into the message.
    pub(crate) fn invalid_because(
        what: &'static str,
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::InvalidArgument { what, reason: reason.into(), source: Some(Box::new(source)) }
    }

    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Error {
        Error::NotFound { kind, name: name.into() }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { action, path: path.into(), source }
    }
}

fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// The state database failed: the database engine's own error, kept as the
/// cause without naming the engine (the store may change engines).
#[derive(Debug)]
pub struct DatabaseError(Box<dyn std::error::Error + Send + Sync>);

impl DatabaseError {
    pub(crate) fn new(cause: impl std::error::Error + Send + Sync + 'static) -> DatabaseError {
        DatabaseError(Box::new(cause))
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A lower-level error kept as an [`Error`]'s cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand used throughout vman-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
