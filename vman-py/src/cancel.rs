//! `vman.Cancel`, and how a waiting call is made interruptible: by the
//! caller's token, and by Ctrl-C on the main thread.
//!
//! A call that waits runs with a token of its own, a child of the caller's
//! `cancel=` token if one was given (so a Ctrl-C never cancels the
//! caller's token, which may serve other calls). Off the main thread, the
//! core call simply runs with the GIL released. On the main thread, where
//! Python runs signal handlers, it runs on a helper thread while the main
//! thread waits for it with the GIL released, checking for signals every
//! [`SIGNAL_CHECK`]: a handler's exception (`KeyboardInterrupt`) cancels
//! the token, the core call winds down and leaves what its
//! `*_cancellable` form documents, and only then is the exception raised,
//! unchanged. Python code therefore never runs in the middle of a core
//! operation (a handler that calls vman waits for the VM's lock instead of
//! deadlocking on it).

use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use vman_core::Cancel;

use crate::errors::PyVmanError;

/// How often the main thread checks for signals while a call waits.
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// A cancellation token for vman's waiting calls.
///
/// Pass it as ``cancel=`` to a method that waits (``start``, ``stop``,
/// ``restart``, ``detach_disk``, the snapshot methods,
/// ``wait_for_console``, ``EventStream.next``) and call :meth:`cancel`
/// from another thread (a progress display, a request handler) to end the
/// wait: the method then raises :class:`vman.CancelledError`, leaving the
/// VM as the method's documentation says (a cancelled graceful stop
/// leaves it running, for instance). A token already cancelled makes those
/// methods raise at once, changing nothing. A cancelled token stays
/// cancelled: make a new one for the next operation.
///
/// Ctrl-C needs no token: on the main thread every waiting method is
/// interrupted by it the same way and raises :class:`KeyboardInterrupt`.
///
/// >>> import threading, vman
/// >>> cancel = vman.Cancel()
/// >>> threading.Timer(0.1, cancel.cancel).start()
/// >>> # m.stop("web1", timeout=600, cancel=cancel) raises CancelledError
#[pyclass(frozen, module = "vman", name = "Cancel")]
pub(crate) struct PyCancel {
    pub(crate) inner: Cancel,
}

#[pymethods]
impl PyCancel {
    /// A token that is not cancelled.
    #[new]
    fn new() -> Self {
        PyCancel { inner: Cancel::new() }
    }

    /// Cancels every wait given this token, now and from now on. Safe to
    /// call from any thread, any number of times.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether :meth:`cancel` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("<vman.Cancel {}>", if self.inner.is_cancelled() { "cancelled" } else { "not cancelled" })
    }
}

/// Runs `f` (a core call that waits) with the GIL released and a token of
/// its own, interruptible as the module docs say.
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    cancel: Option<&PyCancel>,
    f: impl FnOnce(&Cancel) -> vman_core::Result<T> + Send,
) -> PyResult<T> {
    let token = cancel.map_or_else(Cancel::new, |c| c.inner.child());
    if !crate::signals::on_main_thread() {
        return py.detach(|| f(&token)).map_err(|e| PyVmanError(e).into());
    }
    let (result, interrupt) = py.detach(|| on_helper_thread(&token, f));
    match interrupt {
        Some(interrupt) => Err(interrupt),
        None => result.map_err(|e| PyVmanError(e).into()),
    }
}

/// Runs `f` on a helper thread while this (the main) thread checks for
/// signals; returns its result and the exception a signal handler raised.
fn on_helper_thread<T: Send>(
    token: &Cancel,
    f: impl FnOnce(&Cancel) -> vman_core::Result<T> + Send,
) -> (vman_core::Result<T>, Option<PyErr>) {
    let job = Mutex::new(Some(f));
    let job = &job;
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new().name("vman-call".into()).spawn_scoped(scope, move || {
            let f = job.lock().take();
            let result = f.map(|f| f(token));
            // The receiver lives until this thread is joined.
            let _ = done.send(());
            result
        });
        let worker = match spawned {
            Ok(worker) => worker,
            // No thread to be had: wait here, not interruptible.
            Err(_) => {
                let f = job.lock().take();
                let result = f.map_or_else(|| Err(vman_core::Error::Internal("a call ran twice".into())), |f| f(token));
                return (result, None);
            }
        };
        let mut interrupt = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(SIGNAL_CHECK) {
            if interrupt.is_none()
                && let Err(e) = Python::attach(crate::signals::check)
            {
                token.cancel();
                interrupt = Some(e);
            }
        }
        let result = match worker.join() {
            Ok(Some(result)) => result,
            Ok(None) => Err(vman_core::Error::Internal("a call ran twice".into())),
            // A panic in vman: let it reach pyo3's boundary, which turns it
            // into PanicException.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (result, interrupt)
    })
}
