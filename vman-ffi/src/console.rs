//! The serial console: its captured log, and a live byte stream. Every
//! rule (one client per VM, timeouts, what a closed console answers) is
//! vman-core's `Console`; this file maps it.

use std::ffi::{CString, c_char, c_int};
use std::os::fd::AsRawFd;

use vman_core::Console;
use vman_core::convert::millis_arg;

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;

/// A live connection to a VM's serial console. One thread at a time.
///
/// Freeing the manager that made it does not free it: its reads and writes
/// then answer `VMAN_STATUS_CLOSED`, its descriptor stays open, and
/// `vman_console_free` is still required (and safe) after the manager is
/// gone.
#[derive(Debug)]
pub struct VmanConsole {
    inner: Console,
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

/// Frees what `bytes` holds and sets it to {NULL, 0}. NULL, and bytes
/// already freed, are a no-op.
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

/// Copies the last bytes of the VM's console output (at most `capacity`)
/// into `buf` and their number into `*out_len`. The bytes are the guest's
/// own (usually text, not NUL-terminated).
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `buf` NULL or
/// writable for `capacity` bytes; `out_len` NULL or writable.
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

/// Waits up to `timeout_ms` for a console line matching the regular
/// expression `pattern` printed during the current run of the VM's QEMU
/// (output of earlier runs never matches). On success, if `out_line` is
/// not NULL, `*out_line` is the line (free with `vman_string_free`).
/// `VMAN_STATUS_TIMEOUT` if none came; `VMAN_STATUS_INVALID_STATE` at once
/// for a VM without a running QEMU, and as soon as its QEMU exits during
/// the wait.
///
/// # Safety
/// `manager` NULL or live; strings NULL or NUL-terminated; `out_line` NULL or
/// writable.
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
            let line = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out_line, line.into_raw()) };
        }
        Ok(())
    })
}

/// Attaches to a running VM's serial console. One console per VM at a
/// time, across threads and processes: while one is attached, another
/// attach answers `VMAN_STATUS_IN_USE`; freeing it (or its process ending)
/// lets the next one in. `VMAN_STATUS_INVALID_STATE` if the VM has no
/// running QEMU. Free with `vman_console_free`, also after freeing the
/// manager (see `VmanConsole`).
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_attach(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanConsole) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let inner = manager.inner.console(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanConsole { inner })) };
        Ok(())
    })
}

/// Reads up to `len` bytes (`len` > 0) the guest printed into `buf`,
/// waiting up to `timeout_ms` for something to come (0: do not wait).
/// `*out_n` = 0 means QEMU closed the console (the VM stopped).
/// `VMAN_STATUS_TIMEOUT` if nothing came; `VMAN_STATUS_CLOSED` once the
/// manager was freed.
///
/// # Safety
/// `console` NULL or live, used by one thread; `buf` NULL or writable for
/// `len` bytes; `out_n` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_read(console: *mut VmanConsole, buf: *mut u8, len: usize, timeout_ms: u64, out_n: *mut usize) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let console = unsafe { guard::handle_mut(console, "console") }?;
        out_param(buf, "buf")?;
        out_param(out_n, "out_n")?;
        let timeout = millis_arg("timeout", timeout_ms)?;
        // SAFETY: `buf` is non-NULL and writable for `len` bytes per this
        // function's contract.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        let n = console.inner.read(slice, timeout)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_n, n) };
        Ok(())
    })
}

/// Sends all `len` bytes at `buf` to the guest's console (its keyboard),
/// waiting up to `timeout_ms` for QEMU to take them; on
/// `VMAN_STATUS_TIMEOUT` part may have been sent. `VMAN_STATUS_CLOSED` if
/// QEMU closed the console (the VM stopped) or the manager was freed.
///
/// # Safety
/// `console` NULL or live, used by one thread; `buf` NULL or readable for
/// `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_write(console: *mut VmanConsole, buf: *const u8, len: usize, timeout_ms: u64) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let console = unsafe { guard::handle_mut(console, "console") }?;
        if buf.is_null() {
            return Err(Failure::new(VmanStatus::NullParameter, "Parameter buf is NULL"));
        }
        let timeout = millis_arg("timeout", timeout_ms)?;
        // SAFETY: `buf` is readable for `len` bytes per this function's contract.
        let slice = unsafe { std::slice::from_raw_parts(buf, len) };
        console.inner.write_all(slice, timeout)?;
        Ok(())
    })
}

/// Reads until the output matches the regular expression `pattern` and
/// puts what was read, ending with the match, in `*out` (free with
/// `vman_bytes_free`). Output after the match is left for the next read.
/// `VMAN_STATUS_TIMEOUT` if no match came within `timeout_ms`,
/// `VMAN_STATUS_CLOSED` if QEMU closed the console first; then the bytes
/// read are kept and the next read returns them first.
///
/// # Safety
/// `console` NULL or live, used by one thread; `pattern` NULL or
/// NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_read_until(console: *mut VmanConsole, pattern: *const c_char, timeout_ms: u64, out: *mut VmanBytes) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (console, pattern) = unsafe { (guard::handle_mut(console, "console")?, guard::string(pattern, "pattern")?) };
        out_param(out, "out")?;
        let timeout = millis_arg("timeout", timeout_ms)?;
        let bytes = console.inner.read_until(pattern, timeout)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, bytes_out(bytes)) };
        Ok(())
    })
}

/// The console's file descriptor, for the caller's own poll loop (readable
/// means `vman_console_read` returns at once). -1 for NULL. Owned by the
/// console and open until `vman_console_free`, also after the manager is
/// freed: do not close it.
///
/// # Safety
/// `console` NULL or a live console.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_fd(console: *const VmanConsole) -> c_int {
    guard::get(-1, || {
        // SAFETY: NULL or a live console, as documented.
        unsafe { console.as_ref() }.and_then(|c| c.inner.fd().ok()).map_or(-1, |fd| fd.as_raw_fd())
    })
}

/// Disconnects and frees the console, so another can attach; NULL is a
/// no-op. Required and safe also after the manager was freed.
///
/// # Safety
/// `console` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_free(console: *mut VmanConsole) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(console) })
}
