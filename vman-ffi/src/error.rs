//! Status codes and the per-thread last error message.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

use vman_core::ErrorKind;

/// The result of every fallible vman call. Numbers are stable: a retired
/// value stays retired (listed in a comment) and is never reused.
// `repr(C)`, a plain C enum (4 bytes on every ABI vman supports): cbindgen
// then declares one type as tag and typedef, which C++ accepts; with
// `repr(u32)` the tag is an enum and the typedef a uint32_t, which
// `-Wc++-compat` rejects.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmanStatus {
    /// Success.
    Ok = 0,
    /// An argument was malformed or out of range; nothing was changed.
    InvalidArgument = 1,
    /// A required pointer argument was NULL.
    NullParameter = 2,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 3,
    /// The named template, network, VM or item does not exist.
    NotFound = 4,
    /// An object with that name, VLAN id, address or MAC already exists, or
    /// a subnet overlaps an existing network's.
    AlreadyExists = 5,
    /// The object is still used and cannot be deleted, or (a console)
    /// another client holds it.
    InUse = 6,
    /// A network has no free address left.
    Exhausted = 7,
    /// The operation is not allowed in the object's current state.
    InvalidState = 8,
    /// The process lacks a privilege the operation needs.
    PermissionDenied = 9,
    /// The host lacks a needed kernel feature or program.
    Unsupported = 10,
    /// A wait ran out of time.
    Timeout = 11,
    /// An operating-system call failed.
    Io = 12,
    /// The state database failed or is corrupt.
    Database = 13,
    /// QEMU refused or failed an operation.
    Qemu = 14,
    /// A bug in vman.
    Internal = 15,
    /// The manager, stream or console was closed; nothing more will come.
    Closed = 16,
    /// The opener asked for a setting that differs from the one the state
    /// directory keeps (see `vman_settings`); nothing was opened.
    SettingConflict = 17,
    /// A wait was cancelled through its `VmanCancel` token; each
    /// cancellable call says what it leaves.
    Cancelled = 18,
    /// vman panicked; the call was abandoned. Please report it.
    Panic = 99,
}

impl VmanStatus {
    /// Every status, in number order.
    const ALL: [VmanStatus; 20] = [
        VmanStatus::Ok,
        VmanStatus::InvalidArgument,
        VmanStatus::NullParameter,
        VmanStatus::InvalidUtf8,
        VmanStatus::NotFound,
        VmanStatus::AlreadyExists,
        VmanStatus::InUse,
        VmanStatus::Exhausted,
        VmanStatus::InvalidState,
        VmanStatus::PermissionDenied,
        VmanStatus::Unsupported,
        VmanStatus::Timeout,
        VmanStatus::Io,
        VmanStatus::Database,
        VmanStatus::Qemu,
        VmanStatus::Internal,
        VmanStatus::Closed,
        VmanStatus::SettingConflict,
        VmanStatus::Cancelled,
        VmanStatus::Panic,
    ];

    /// The status of a core error kind. `ErrorKind` is `#[non_exhaustive]`
    /// in another crate, so this match needs a fallback arm; it answers
    /// `None` rather than a code, and the test over `ErrorKind::ALL` proves
    /// that no kind reaches it.
    fn of_kind(kind: ErrorKind) -> Option<VmanStatus> {
        Some(match kind {
            ErrorKind::InvalidArgument => VmanStatus::InvalidArgument,
            ErrorKind::NotFound => VmanStatus::NotFound,
            ErrorKind::AlreadyExists => VmanStatus::AlreadyExists,
            ErrorKind::InUse => VmanStatus::InUse,
            ErrorKind::Exhausted => VmanStatus::Exhausted,
            ErrorKind::InvalidState => VmanStatus::InvalidState,
            ErrorKind::PermissionDenied => VmanStatus::PermissionDenied,
            ErrorKind::Unsupported => VmanStatus::Unsupported,
            ErrorKind::Timeout => VmanStatus::Timeout,
            ErrorKind::Io => VmanStatus::Io,
            ErrorKind::Database => VmanStatus::Database,
            ErrorKind::Qemu => VmanStatus::Qemu,
            ErrorKind::Internal => VmanStatus::Internal,
            ErrorKind::Closed => VmanStatus::Closed,
            ErrorKind::SettingConflict => VmanStatus::SettingConflict,
            ErrorKind::Cancelled => VmanStatus::Cancelled,
            _ => return None,
        })
    }

    fn name(self) -> &'static std::ffi::CStr {
        match self {
            VmanStatus::Ok => c"ok",
            VmanStatus::InvalidArgument => c"invalid_argument",
            VmanStatus::NullParameter => c"null_parameter",
            VmanStatus::InvalidUtf8 => c"invalid_utf8",
            VmanStatus::NotFound => c"not_found",
            VmanStatus::AlreadyExists => c"already_exists",
            VmanStatus::InUse => c"in_use",
            VmanStatus::Exhausted => c"exhausted",
            VmanStatus::InvalidState => c"invalid_state",
            VmanStatus::PermissionDenied => c"permission_denied",
            VmanStatus::Unsupported => c"unsupported",
            VmanStatus::Timeout => c"timeout",
            VmanStatus::Io => c"io",
            VmanStatus::Database => c"database",
            VmanStatus::Qemu => c"qemu",
            VmanStatus::Internal => c"internal",
            VmanStatus::Closed => c"closed",
            VmanStatus::SettingConflict => c"setting_conflict",
            VmanStatus::Cancelled => c"cancelled",
            VmanStatus::Panic => c"panic",
        }
    }
}

impl From<ErrorKind> for VmanStatus {
    /// A kind unknown to this crate (impossible while the test over
    /// `ErrorKind::ALL` passes) would be `Internal`, never a wrong code.
    fn from(kind: ErrorKind) -> VmanStatus {
        VmanStatus::of_kind(kind).unwrap_or(VmanStatus::Internal)
    }
}

/// A failed call: its status and the message the caller can read back.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: VmanStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: VmanStatus, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }
}

impl From<vman_core::Error> for Failure {
    fn from(e: vman_core::Error) -> Failure {
        Failure { status: e.kind().into(), message: e.full_message() }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot be shown by C; replace rather than lose the text.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(text));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = None);
}

/// The message of the last failed vman call on this thread, or NULL if the
/// last call succeeded. Messages are sentence-case and include the cause
/// chain.
///
/// Borrowed from the library: valid until the next vman call on this
/// thread; never free it. Thread-safe: each thread has its own message.
/// Never fails, and does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn vman_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
}

/// A static lower-case name for a status, e.g. "not_found"; "unknown" for
/// a number that is no status. Never NULL; static, never free it.
/// Thread-safe; never fails, and does not change the last error (so it
/// may be called in the same expression as `vman_last_error_message`).
#[unsafe(no_mangle)]
pub extern "C" fn vman_status_name(status: u32) -> *const c_char {
    VmanStatus::ALL.into_iter().find(|s| *s as u32 == status).map_or(c"unknown".as_ptr(), |s| s.name().as_ptr())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_error_kind_has_a_status_of_its_own() {
        let mut seen = HashSet::new();
        for kind in ErrorKind::ALL {
            let status = VmanStatus::of_kind(kind).unwrap_or_else(|| panic!("{kind:?} has no VmanStatus: map it in of_kind"));
            assert!(seen.insert(status), "{kind:?} shares {status:?} with another kind");
            assert!(kind == ErrorKind::Internal || status != VmanStatus::Internal, "{kind:?} maps to Internal");
            assert_eq!(VmanStatus::from(kind), status);
            // The status is named after its kind, in C as in every log.
            assert_eq!(status.name().to_str().unwrap(), kind.as_str());
        }
    }

    #[test]
    fn status_numbers_are_stable() {
        let numbers: Vec<(u32, &str)> = VmanStatus::ALL.iter().map(|s| (*s as u32, s.name().to_str().unwrap())).collect();
        assert_eq!(
            numbers,
            [
                (0, "ok"),
                (1, "invalid_argument"),
                (2, "null_parameter"),
                (3, "invalid_utf8"),
                (4, "not_found"),
                (5, "already_exists"),
                (6, "in_use"),
                (7, "exhausted"),
                (8, "invalid_state"),
                (9, "permission_denied"),
                (10, "unsupported"),
                (11, "timeout"),
                (12, "io"),
                (13, "database"),
                (14, "qemu"),
                (15, "internal"),
                (16, "closed"),
                (17, "setting_conflict"),
                (18, "cancelled"),
                (99, "panic"),
            ]
        );
    }

    #[test]
    fn a_success_clears_the_message_and_a_failure_sets_it() {
        set_last_error("earlier failure");
        assert!(!vman_last_error_message().is_null());
        crate::guard::get((), || ());
        assert!(vman_last_error_message().is_null(), "an infallible call (getter, free) clears it");
        let status = crate::guard::call(|| Err(Failure::new(VmanStatus::NotFound, "No such thing")));
        assert_eq!(status, VmanStatus::NotFound);
        // SAFETY: non-NULL, NUL-terminated, read before the next vman call.
        let message = unsafe { std::ffi::CStr::from_ptr(vman_last_error_message()) };
        assert_eq!(message.to_str().unwrap(), "No such thing");
        let _ = vman_status_name(4);
        assert!(!vman_last_error_message().is_null(), "status names leave the message");
    }
}
