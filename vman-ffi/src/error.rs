//! Status codes and the per-thread last error message.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

use vman_core::ErrorKind;

/// The result of every fallible vman call. Numbers are stable: a retired
/// value stays retired (listed in a comment) and is never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmanStatus {
    Ok = 0,
    /// An argument was malformed or out of range; nothing was changed.
    InvalidArgument = 1,
    /// A required pointer argument was NULL.
    NullParameter = 2,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 3,
    NotFound = 4,
    AlreadyExists = 5,
    /// The object is still used and cannot be deleted.
    InUse = 6,
    /// A network has no free address left.
    Exhausted = 7,
    /// The operation is not allowed in the object's current state.
    InvalidState = 8,
    PermissionDenied = 9,
    /// The host lacks a needed kernel feature or program.
    Unsupported = 10,
    Timeout = 11,
    Io = 12,
    Database = 13,
    Qemu = 14,
    /// A bug in vman.
    Internal = 15,
    /// The manager, stream or console was closed; nothing more will come.
    Closed = 16,
    /// vman panicked; the call was abandoned. Please report it.
    Panic = 99,
}

impl From<ErrorKind> for VmanStatus {
    fn from(kind: ErrorKind) -> VmanStatus {
        // Exhaustive on purpose: a new kind must get a code here.
        match kind {
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
            _ => VmanStatus::Internal,
        }
    }
}

impl VmanStatus {
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
            VmanStatus::Panic => c"panic",
        }
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
/// last call succeeded. Valid until the next vman call on this thread; do not
/// free it. Messages are sentence-case and include the cause chain.
#[unsafe(no_mangle)]
pub extern "C" fn vman_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
}

/// A static lower-case name for a status, e.g. "not_found"; never NULL,
/// never to be freed. Unknown numbers give "unknown".
#[unsafe(no_mangle)]
pub extern "C" fn vman_status_name(status: u32) -> *const c_char {
    let all = [
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
        VmanStatus::Panic,
    ];
    all.into_iter().find(|s| *s as u32 == status).map_or(c"unknown".as_ptr(), |s| s.name().as_ptr())
}
