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
}

impl ErrorKind {
    /// Every kind, so each façade can prove in a test that its map gives
    /// every kind a code (or class) of its own.
    pub const ALL: [ErrorKind; 14] = [
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
                | ErrorKind::Closed => {}
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
    InvalidArgument { what: &'static str, reason: String },

    #[error("No {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },

    #[error("A {kind} with {field} {value:?} already exists")]
    AlreadyExists { kind: &'static str, field: &'static str, value: String },

    /// A new network's subnet shares addresses with a live network's.
    #[error("CIDR {cidr} overlaps {other_cidr} of network {other:?}")]
    Overlap { cidr: String, other: String, other_cidr: String },

    #[error("{kind} {name:?} is in use by {user}")]
    InUse { kind: &'static str, name: String, user: String },

    #[error("Network {network:?} has no free address")]
    Exhausted { network: String },

    #[error("VM {vm:?} cannot go from {from} to {to}")]
    InvalidTransition { vm: String, from: crate::VmState, to: crate::VmState },

    #[error("VM {vm:?} is {state}; {action} needs {needs}")]
    InvalidState { vm: String, state: crate::VmState, action: &'static str, needs: &'static str },

    #[error("Permission denied: {what}")]
    PermissionDenied { what: String, #[source] source: Option<io::Error> },

    #[error("Unsupported on this host: {what}")]
    Unsupported { what: String },

    #[error("Timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },

    #[error("Cannot {action} {}", path.display())]
    Io { action: &'static str, path: PathBuf, #[source] source: io::Error },

    #[error("State database error")]
    Database(#[source] DatabaseError),

    /// QEMU failed to start or refused a request; `message` is QEMU's own.
    #[error("QEMU failed: {message}")]
    Qemu { message: String },

    #[error("Host networking failed")]
    HostNet(#[source] crate::net::linux::HostNetError),

    #[error("DHCP server failed")]
    Dhcp(#[source] crate::net::dhcp::DhcpError),

    #[error("QMP request {command} to VM {vm:?} failed")]
    Qmp { vm: String, command: &'static str, #[source] source: crate::runtime::qmp::QmpError },

    /// A VM's console or serial log failed at the OS level. The message
    /// names the VM, never a path inside the state directory.
    #[error("Cannot {action} of VM {vm:?}")]
    Console { action: &'static str, vm: String, #[source] source: io::Error },

    /// QEMU closed the VM's console (its QEMU exited): nothing more will
    /// come from it.
    #[error("QEMU closed the console of VM {vm:?}")]
    ConsoleEnded { vm: String },

    #[error("Internal error: {0}")]
    Internal(String),

    /// The manager, stream or console named by `what` was closed.
    #[error("{what} is closed")]
    Closed { what: &'static str },
}

impl Error {
    /// The kind of failure, for callers and façades to branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } | Error::Overlap { .. } => ErrorKind::AlreadyExists,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::Exhausted { .. } => ErrorKind::Exhausted,
            Error::InvalidTransition { .. } | Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Io { source, .. } if is_permission(source) => ErrorKind::PermissionDenied,
            Error::Io { .. } => ErrorKind::Io,
            Error::Console { source, .. } if is_permission(source) => ErrorKind::PermissionDenied,
            Error::Console { .. } => ErrorKind::Io,
            Error::ConsoleEnded { .. } => ErrorKind::Closed,
            Error::Database(_) => ErrorKind::Database,
            Error::Qemu { .. } => ErrorKind::Qemu,
            Error::HostNet(_) | Error::Dhcp(_) => ErrorKind::Io,
            Error::Qmp { source: crate::runtime::qmp::QmpError::Timeout, .. } => ErrorKind::Timeout,
            Error::Qmp { .. } => ErrorKind::Qemu,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Closed { .. } => ErrorKind::Closed,
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
        Error::InvalidArgument { what, reason: reason.into() }
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

/// Shorthand used throughout vman-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
