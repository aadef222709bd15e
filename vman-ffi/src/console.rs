//! The serial console: its captured log, and a live byte stream.

use std::ffi::{CString, c_char, c_int};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vman_core::convert::millis_arg;

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;

/// A live connection to a VM's serial console. One thread at a time.
#[derive(Debug)]
pub struct VmanConsole {
    stream: UnixStream,
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
/// expression `pattern` during the current boot. On success, if `out_line`
/// is not NULL, `*out_line` is the line (free with `vman_string_free`).
/// `VMAN_STATUS_TIMEOUT` if none came.
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

/// Connects to a running VM's serial console. QEMU serves one client at a
/// time; the log keeps recording either way. Free with `vman_console_free`.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_attach(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanConsole) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let stream = manager.inner.console_attach(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanConsole { stream })) };
        Ok(())
    })
}

fn io_failure(action: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Failure::new(VmanStatus::Timeout, format!("No console output within the timeout ({action})"))
        }
        _ => Failure::new(VmanStatus::Io, format!("Cannot {action} the console: {e}")),
    }
}

/// Reads up to `len` bytes the guest printed into `buf`, waiting up to
/// `timeout_ms` (0: do not wait). `*out_n` = 0 means QEMU closed the console
/// (the VM stopped). `VMAN_STATUS_TIMEOUT` if nothing came.
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
        // A zero read timeout means "block forever" to the OS; use 1 µs.
        let timeout = if timeout.is_zero() { Duration::from_micros(1) } else { timeout };
        console.stream.set_read_timeout(Some(timeout)).map_err(|e| io_failure("configure", e))?;
        // SAFETY: `buf` is writable for `len` bytes per this function's contract.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        let n = console.stream.read(slice).map_err(|e| io_failure("read", e))?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_n, n) };
        Ok(())
    })
}

/// Sends `len` bytes to the guest's console (its keyboard), all of them.
///
/// # Safety
/// `console` NULL or live, used by one thread; `buf` NULL or readable for
/// `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_write(console: *mut VmanConsole, buf: *const u8, len: usize) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let console = unsafe { guard::handle_mut(console, "console") }?;
        if buf.is_null() {
            return Err(Failure::new(VmanStatus::NullParameter, "Parameter buf is NULL"));
        }
        // SAFETY: `buf` is readable for `len` bytes per this function's contract.
        let slice = unsafe { std::slice::from_raw_parts(buf, len) };
        console.stream.write_all(slice).map_err(|e| io_failure("write to", e))?;
        Ok(())
    })
}

/// The console's file descriptor, for the caller's own poll loop (readable
/// means `vman_console_read` returns at once). -1 for NULL. Owned by the
/// console: do not close it.
///
/// # Safety
/// `console` NULL or a live console.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_fd(console: *const VmanConsole) -> c_int {
    guard::get(-1, || {
        // SAFETY: NULL or a live console, as documented.
        unsafe { console.as_ref() }.map_or(-1, |c| c.stream.as_raw_fd())
    })
}

/// Disconnects and frees the console; NULL is a no-op.
///
/// # Safety
/// `console` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_console_free(console: *mut VmanConsole) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(console) })
}
