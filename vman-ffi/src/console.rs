//! The serial console: its captured log, and a live byte stream. Every
//! rule (one client per VM, timeouts, what a closed console answers) is
//! vman-core's `Console`; this file maps it.

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use vman_core::Console;
use vman_core::convert::millis_arg;

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, new_handle, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::cstring;

/// A live connection to a VM's serial console. Reads and writes on one
/// console are serialized (a second waits for the first); use it from one
/// thread at a time.
///
/// Freeing the manager that made it does not free it: its reads and writes
/// then answer `VMAN_STATUS_CLOSED`, its descriptor stays open, and
/// `vman_console_free` is still required (and safe) after the manager is
/// gone.
#[derive(Debug)]
pub struct VmanConsole {
    /// Behind a mutex so that every function borrows the handle shared and
    /// `vman_console_fd` may run beside a read.
    inner: Mutex<Console>,
    /// The connection's descriptor, open from attach to free (C never
    /// closes a console but by freeing it).
    fd: c_int,
}

impl VmanConsole {
    fn console(&self) -> MutexGuard<'_, Console> {
        // A panic in an earlier call leaves the console usable: it holds no
        // invariant a half-done read or write could break.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Bytes the library allocated for the caller: `len` bytes at `data`
/// (NULL when `len` is 0). Not NUL-terminated; console output may contain
/// NUL. Free with `vman_bytes_free`.
#[repr(C)]
#[derive(Debug)]
pub struct VmanBytes {
    pub data: *mut u8,
    pub len: usize,
}

/// Frees what `bytes` holds and sets it to {NULL, 0}; `bytes` itself is the
/// caller's. NULL, and bytes already freed, are a no-op. No other thread may
/// use `bytes` during the call. Never fails (clears the last error).
///
/// # Safety
/// `bytes` NULL, or filled by this library and not modified since.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_bytes_free(bytes: *mut VmanBytes) {
    guard::get((), || {
        // SAFETY: NULL or a live VmanBytes, per this function's contract.
        let Some(bytes) = (unsafe { bytes.as_mut() }) else { return };
        if !bytes.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(bytes.data, bytes.len);
            // SAFETY: `data` and `len` come from Box::<[u8]>::into_raw in
            // `bytes_out`, unmodified per this function's contract.
            drop(unsafe { Box::from_raw(slice) });
        }
        bytes.data = std::ptr::null_mut();
        bytes.len = 0;
    })
}

/// Moves `bytes` to C.
fn bytes_out(bytes: Vec<u8>) -> VmanBytes {
    if bytes.is_empty() {
        return VmanBytes { data: std::ptr::null_mut(), len: 0 };
    }
    let len = bytes.len();
    let data = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
    VmanBytes { data, len }
}

/// Copies the last bytes of the VM's console output (at most `capacity`;
/// VMAN_DEFAULT_CONSOLE_TAIL_BYTES is vman's usual size) into `buf` and
/// their number into `*out_len`. The bytes are the guest's own (usually
/// text, not NUL-terminated). Works for a stopped VM too.
///
/// `buf` and `out_len` must not be NULL; they are the caller's, written
/// only on success.
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_console_tail(
    manager: *const VmanManager,
    name: *const c_char,
    buf: *mut u8,
    capacity: usize,
    out_len: *mut usize,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(buf, "buf")?;
        out_param(out_len, "out_len")?;
        let tail = manager.inner.console_tail(name, capacity)?;
        // SAFETY: `tail` holds at most `capacity` bytes and `buf` is writable
        // for `capacity` per this function's contract; out_len checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(tail.as_ptr(), buf, tail.len());
            write_out(out_len, tail.len());
        }
        Ok(())
    })
}

/// Waits up to `timeout_ms` (VMAN_DEFAULT_CONSOLE_WAIT_TIMEOUT_MS is vman's
/// usual wait) for a console line matching the regular expression `pattern`
/// printed during the current run of the VM's QEMU (output of earlier runs
/// never matches).
///
/// `out_line` may be NULL; otherwise on success `*out_line` is the line,
/// owned by the caller (free it with `vman_string_free`).
///
/// Fails with VMAN_STATUS_TIMEOUT (no such line came),
/// VMAN_STATUS_INVALID_STATE (at once for a VM without a running QEMU, and
/// as soon as its QEMU exits during the wait), VMAN_STATUS_INVALID_ARGUMENT
/// (a bad pattern or timeout), VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_wait_for_console(
    manager: *const VmanManager,
    name: *const c_char,
    pattern: *const c_char,
    timeout_ms: u64,
    out_line: *mut *mut c_char,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name, pattern) =
            unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::string(pattern, "pattern")?) };
        let line = manager.inner.wait_for_console(name, pattern, millis_arg("timeout", timeout_ms)?)?;
        if !out_line.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out_line, cstring(line).into_raw()) };
        }
        Ok(())
    })
}

/// Attaches to a running VM's serial console. One console per VM at a
/// time, across threads and processes: freeing it (or its process ending)
/// lets the next one in.
///
/// `out` must not be NULL. On success `*out` is the console, owned by the
/// caller (free it with `vman_console_free`, also after freeing the
/// manager).
///
/// Fails with VMAN_STATUS_IN_USE (another console is attached),
/// VMAN_STATUS_INVALID_STATE (the VM has no running QEMU),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_attach(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanConsole) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            let console = manager.inner.console(name)?;
            let fd = console.fd()?.as_raw_fd();
            Ok(VmanConsole { inner: Mutex::new(console), fd })
        })
    }
}

/// Reads up to `len` bytes (`len` > 0) the guest printed into `buf`,
/// waiting up to `timeout_ms` for something to come (0: do not wait).
/// `*out_n` = 0 means QEMU closed the console (the VM stopped).
///
/// `buf` and `out_n` must not be NULL; they are the caller's, written only
/// on success.
///
/// Fails with VMAN_STATUS_TIMEOUT (nothing came), VMAN_STATUS_CLOSED (the
/// manager was freed), VMAN_STATUS_INVALID_ARGUMENT (`len` is 0, or a
/// timeout beyond range), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_IO.
///
/// Not thread-safe: one thread at a time per console (a second call waits
/// for the first); `vman_console_fd` may be called meanwhile.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_read(
    console: *mut VmanConsole,
    buf: *mut u8,
    len: usize,
    timeout_ms: u64,
    out_n: *mut usize,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let console = unsafe { guard::handle(console, "console") }?;
        out_param(buf, "buf")?;
        out_param(out_n, "out_n")?;
        let timeout = millis_arg("timeout", timeout_ms)?;
        // SAFETY: `buf` is non-NULL and writable for `len` bytes per this
        // function's contract.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        let n = console.console().read(slice, timeout)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_n, n) };
        Ok(())
    })
}

/// Sends all `len` bytes at `buf` to the guest's console (its keyboard),
/// waiting up to `timeout_ms` for QEMU to take them. `buf` is only read.
///
/// Fails with VMAN_STATUS_TIMEOUT (part may have been sent),
/// VMAN_STATUS_CLOSED (QEMU closed the console, the VM stopped, or the
/// manager was freed), VMAN_STATUS_INVALID_ARGUMENT (a timeout beyond
/// range), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_IO.
///
/// Not thread-safe: one thread at a time per console (a second call waits
/// for the first).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_write(console: *mut VmanConsole, buf: *const u8, len: usize, timeout_ms: u64) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let console = unsafe { guard::handle(console, "console") }?;
        if buf.is_null() {
            return Err(Failure::new(VmanStatus::NullParameter, "Parameter buf is NULL"));
        }
        let timeout = millis_arg("timeout", timeout_ms)?;
        // SAFETY: `buf` is readable for `len` bytes per this function's contract.
        let slice = unsafe { std::slice::from_raw_parts(buf, len) };
        console.console().write_all(slice, timeout)?;
        Ok(())
    })
}

/// Reads until the output matches the regular expression `pattern`, waiting
/// up to `timeout_ms`. Output after the match is left for the next read.
///
/// `out` must not be NULL; it is the caller's. On success `*out` holds what
/// was read, ending with the match (free it with `vman_bytes_free`).
///
/// Fails with VMAN_STATUS_TIMEOUT (no match came), VMAN_STATUS_CLOSED (QEMU
/// closed the console first, or the manager was freed; either way the
/// bytes read are kept and the next read returns them first),
/// VMAN_STATUS_INVALID_ARGUMENT (a bad pattern or timeout),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_IO.
///
/// Not thread-safe: one thread at a time per console (a second call waits
/// for the first).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_read_until(
    console: *mut VmanConsole,
    pattern: *const c_char,
    timeout_ms: u64,
    out: *mut VmanBytes,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (console, pattern) = unsafe { (guard::handle(console, "console")?, guard::string(pattern, "pattern")?) };
        out_param(out, "out")?;
        let timeout = millis_arg("timeout", timeout_ms)?;
        let bytes = console.console().read_until(pattern, timeout)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, bytes_out(bytes)) };
        Ok(())
    })
}

/// The console's file descriptor, for the caller's own poll loop (readable
/// means `vman_console_read` returns at once). -1 for NULL. Owned by the
/// console and open until `vman_console_free`, also after the manager is
/// freed: never close it. Thread-safe; never fails (clears the last error).
///
/// # Safety
/// `console` NULL or a live console.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_fd(console: *const VmanConsole) -> c_int {
    crate::record::number_or(console, -1, |c| c.fd)
}

/// Disconnects and frees the console, so another can attach; NULL is a
/// no-op. Required and safe also after the manager was freed. No other
/// thread may use `console` during or after the call. Never fails (clears
/// the last error).
///
/// # Safety
/// `console` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_free(console: *mut VmanConsole) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(console) })
}
