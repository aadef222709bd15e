//! Shared plumbing for the read-only record handles and their lists.

use std::ffi::{CString, c_char};

use crate::guard;

/// A C copy of a Rust string. Core strings never hold NUL (names are
/// validated, JSON escapes it); any that did would show as "\0".
pub(crate) fn cstring(text: impl AsRef<str>) -> CString {
    CString::new(text.as_ref().replace('\0', "\\0")).unwrap_or_default()
}

/// The borrowed `const char*` of a field; NULL when the handle is NULL.
pub(crate) fn text<T>(record: *const T, field: impl FnOnce(&T) -> &CString) -> *const c_char {
    guard::get(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live handle of this type, as
        // every getter documents.
        unsafe { record.as_ref() }.map_or(std::ptr::null(), |r| field(r).as_ptr())
    })
}

/// A numeric field; 0 when the handle is NULL.
pub(crate) fn number<T, N: Default>(record: *const T, field: impl FnOnce(&T) -> N) -> N {
    guard::get(N::default(), || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.map_or_else(N::default, field)
    })
}

/// A field for which 0 is a meaningful value (a file descriptor); `null`
/// when the handle is NULL or on a panic.
pub(crate) fn number_or<T, N: Copy>(record: *const T, null: N, field: impl FnOnce(&T) -> N) -> N {
    guard::get(null, || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.map_or(null, field)
    })
}

/// A borrowed element of a list handle; NULL when the list is NULL or
/// `pick` finds nothing (index out of range).
pub(crate) fn item<L, T>(list: *const L, pick: impl FnOnce(&L) -> Option<&T>) -> *const T {
    guard::get(std::ptr::null(), || {
        // SAFETY: as in `text`.
        unsafe { list.as_ref() }.and_then(pick).map_or(std::ptr::null(), |t| t as *const T)
    })
}

/// A borrowed string element of a record (a list field); NULL when the
/// record is NULL or `pick` finds nothing.
pub(crate) fn text_item<T>(record: *const T, pick: impl FnOnce(&T) -> Option<&CString>) -> *const c_char {
    guard::get(std::ptr::null(), || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.and_then(pick).map_or(std::ptr::null(), |s| s.as_ptr())
    })
}
