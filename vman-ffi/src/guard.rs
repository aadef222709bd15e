//! The boundary every `extern "C"` body goes through: panics are caught (an
//! unwind out of `extern "C"` would abort the host), pointers are checked,
//! and out-params are written only on success.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Failure, VmanStatus, clear_last_error, set_last_error};

/// Runs a fallible body; maps its outcome to a status and the last error.
pub(crate) fn call(body: impl FnOnce() -> Result<(), Failure>) -> VmanStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            VmanStatus::Ok
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&format!("Internal panic in vman: {}", panic_message(payload.as_ref())));
            VmanStatus::Panic
        }
    }
}

/// Runs an infallible body (a getter, a free): a success clears the last
/// error, as after any successful call; a panic yields `default` and leaves
/// its message.
pub(crate) fn get<T>(default: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => {
            clear_last_error();
            value
        }
        Err(payload) => {
            set_last_error(&format!("Internal panic in vman: {}", panic_message(payload.as_ref())));
            default
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn null(name: &str) -> Failure {
    Failure::new(VmanStatus::NullParameter, format!("Parameter {name} is NULL"))
}

/// Borrows a handle the caller passed.
///
/// # Safety
/// `ptr` must be NULL or point to a live `T` created by this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: per this function's contract, a non-NULL `ptr` is a live `T`.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(name))
}

/// Mutably borrows a handle the caller passed.
///
/// # Safety
/// `ptr` must be NULL or point to a live `T` created by this library, not used
/// by another thread during the call.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: per this function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(name))
}

/// Reads a required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| Failure::new(VmanStatus::InvalidUtf8, format!("Parameter {name} is not UTF-8 (byte {})", e.valid_up_to())))
}

/// Reads an optional string argument: NULL means absent.
///
/// # Safety
/// As [`string`].
pub(crate) unsafe fn optional_string<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { string(ptr, name) }.map(Some)
}

/// Checks an out-parameter before any work is done, so a NULL one cannot
/// cause a side effect whose result is then lost.
pub(crate) fn out_param<T>(ptr: *mut T, name: &str) -> Result<(), Failure> {
    if ptr.is_null() { Err(null(name)) } else { Ok(()) }
}

/// Writes an out-parameter checked by [`out_param`].
///
/// # Safety
/// `ptr` must be non-NULL and valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: per this function's contract.
    unsafe { ptr.write(value) }
}

/// Runs a body that makes a new handle, written to a required `*out`:
/// `out` is checked before any work, so a NULL one cannot cause a side
/// effect whose result is lost.
///
/// # Safety
/// `out` must be NULL or valid for a write.
pub(crate) unsafe fn new_handle<T>(out: *mut *mut T, body: impl FnOnce() -> Result<T, Failure>) -> VmanStatus {
    call(|| {
        out_param(out, "out")?;
        let value = body()?;
        // SAFETY: checked non-NULL above; writable per this function's contract.
        unsafe { write_out(out, into_handle(value)) };
        Ok(())
    })
}

/// Runs a body that acts and makes a handle of the outcome, written to an
/// optional `*out` (NULL: the caller does not want it, and it is dropped).
///
/// # Safety
/// `out` must be NULL or valid for a write.
pub(crate) unsafe fn optional_handle<T>(out: *mut *mut T, body: impl FnOnce() -> Result<T, Failure>) -> VmanStatus {
    call(|| {
        let value = body()?;
        if !out.is_null() {
            // SAFETY: non-NULL, and writable per this function's contract.
            unsafe { write_out(out, into_handle(value)) };
        }
        Ok(())
    })
}

/// The shape of every builder setter that takes one string: borrow the
/// builder mutably, read the string, apply it.
///
/// # Safety
/// `handle` must be NULL or a live `T` not used by another thread during
/// the call; `value` NULL or NUL-terminated.
pub(crate) unsafe fn set_text<T>(
    handle: *mut T,
    handle_name: &str,
    value: *const c_char,
    value_name: &str,
    apply: impl FnOnce(&mut T, &str) -> Result<(), Failure>,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (handle, value) = unsafe { (handle_mut(handle, handle_name)?, string(value, value_name)?) };
        apply(handle, value)
    })
}

/// Moves a Rust value to C as an owned handle.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back and drops an owned handle; NULL is a no-op.
///
/// # Safety
/// `ptr` must be NULL or a handle from [`into_handle`] of the same `T`, not
/// freed before and not used afterwards.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: per this function's contract, it came from Box::into_raw.
        drop(unsafe { Box::from_raw(ptr) });
    }
}
