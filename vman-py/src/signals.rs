//! Python's signal handlers and vman's Rust code, kept apart.
//!
//! CPython runs a signal's Python handler (for SIGINT, the one raising
//! `KeyboardInterrupt`) at the next check point of the main thread's
//! interpreter: between bytecodes, or in `PyErr_CheckSignals`. Rust code
//! that calls into Python on the main thread can therefore be where the
//! handler runs, and the handler's exception then surfaces *inside* that
//! call. The log bridge is such a call: every record vman-core emits runs
//! Python's `logging` code (at least `Logger.isEnabledFor`), and pyo3-log
//! answers an exception from it by setting it as the thread's current
//! exception. The handler has run, so the signal is no longer pending; the
//! stray exception then either made the surrounding vman method fail with
//! `SystemError: ... returned a result with an exception set` (it returned
//! a value) or was overwritten by the method's own error, and the
//! interrupt was lost.
//!
//! The bridge (`logging.rs`) therefore takes whatever its Python calls
//! raised and hands it to [`defer`]: on the main thread the exception is
//! kept and given back to the interpreter as a pending call
//! (`Py_AddPendingCall`), which raises it at the main thread's next check
//! point, where the signal would have surfaced had no record been logged;
//! [`check`], the one signal check of vman's interruptible waits, takes it
//! first. That is for what signal handlers raise: `KeyboardInterrupt`,
//! `SystemExit` and other `BaseException`s that are not `Exception`s. An
//! `Exception`, and anything raised off the main thread (where no signal
//! handler runs), is a failure of the application's logging set-up and is
//! reported as unraisable (`sys.unraisablehook`), as `logging` itself
//! reports a failing handler.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use parking_lot::Mutex;
use pyo3::prelude::*;

/// An exception a signal handler raised inside a Python call made from
/// Rust on the main thread, not yet delivered.
static DEFERRED: Mutex<Option<PyErr>> = Mutex::new(None);

/// The kernel thread id of the interpreter's main thread (where signal
/// handlers run), learnt when the module is initialized.
static MAIN_THREAD: OnceLock<i64> = OnceLock::new();

/// Remembers which thread is the main one; called once at module init.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    let id: i64 = py.import("threading")?.call_method0("main_thread")?.getattr("native_id")?.extract()?;
    let _ = MAIN_THREAD.set(id);
    Ok(())
}

/// Whether the calling thread is the interpreter's main thread: the only
/// one on which Python runs signal handlers.
pub(crate) fn on_main_thread() -> bool {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = i64::from(unsafe { libc::gettid() });
    MAIN_THREAD.get().is_some_and(|main| *main == tid)
}

/// Hands `raised`, an exception that escaped a Python call vman made from
/// Rust (the log bridge), to where it belongs: see the module docs.
pub(crate) fn defer(py: Python<'_>, raised: PyErr) {
    if !on_main_thread() || raised.is_instance_of::<pyo3::exceptions::PyException>(py) {
        raised.write_unraisable(py, None);
        return;
    }
    let mut slot = DEFERRED.lock();
    if slot.is_some() {
        // One is already on its way; a second interrupt before it was
        // delivered is what a second Ctrl-C during one bytecode is: one.
        return;
    }
    *slot = Some(raised);
    drop(slot);
    // SAFETY: `deliver` is an `extern "C"` function with the signature
    // Py_AddPendingCall expects, taking no data (the argument is NULL).
    // If the queue is full (-1), the exception stays in DEFERRED for the
    // next `check`.
    let _ = unsafe { pyo3::ffi::Py_AddPendingCall(Some(deliver), std::ptr::null_mut()) };
}

/// Run by the interpreter on the main thread, holding the GIL: raises the
/// deferred exception there (-1 with the exception set), or does nothing
/// if a `check` delivered it first.
extern "C" fn deliver(_: *mut c_void) -> c_int {
    let Some(raised) = DEFERRED.lock().take() else { return 0 };
    // SAFETY: pending calls run on the main thread with the GIL held.
    let py = unsafe { Python::assume_attached() };
    raised.restore(py);
    -1
}

/// The signal check of vman's interruptible waits: a deferred exception
/// first, then Python's pending signal handlers (which run only on the
/// main thread; elsewhere this is a cheap no-op).
pub(crate) fn check(py: Python<'_>) -> PyResult<()> {
    if let Some(raised) = DEFERRED.lock().take() {
        return Err(raised);
    }
    py.check_signals()
}
