//! `vman.Console`: the Python face of `vman_core::Console`.
//!
//! Every rule (one client per VM, timeouts, `read_until`, what a closed
//! console answers) is core's. This file maps arguments, releases the GIL
//! around each wait, and makes the waits interruptible: core calls back at
//! least every `CHECK_INTERVAL`, and the callback runs Python's signal
//! handlers (Ctrl-C) and notices a `close()` from another thread.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use vman_core::convert::{int_arg, seconds_arg};
use vman_core::defaults::CONSOLE_WAIT_TIMEOUT;
use vman_core::{CONSOLE_READ_MAX, Console};

use crate::errors::{Interrupted, PyVmanError, PyVmanResult, check_signals};

/// A VM's serial console: read what the guest prints, write its input.
///
/// One console per VM at a time, across threads and processes: while one
/// is attached, ``Manager.console`` answers :class:`vman.InUseError`.
/// Use as a context manager, or call :meth:`close`. After :meth:`close`,
/// or once its :class:`Manager` is gone, reads and writes raise
/// :class:`vman.ClosedError`.
#[pyclass(frozen, module = "vman", name = "Console")]
pub(crate) struct PyConsole {
    inner: Mutex<Console>,
    vm: String,
    /// Set by `close()`, so a wait in another thread ends at its next check
    /// instead of holding the console until its timeout.
    closing: AtomicBool,
}

impl PyConsole {
    pub(crate) fn new(inner: Console) -> Self {
        PyConsole { vm: inner.vm().to_string(), inner: Mutex::new(inner), closing: AtomicBool::new(false) }
    }

    /// The console, for one call at a time. A panic in another holder
    /// cannot leave a `Console` inconsistent (each call leaves it closed or
    /// open, with or without held bytes), so a poisoned lock is used as is.
    fn console(&self) -> MutexGuard<'_, Console> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by core between slices of a wait.
    fn check(&self) -> Result<(), Interrupted> {
        if self.closing.load(Ordering::Acquire) {
            return Err(vman_core::Error::Closed { what: "Console" }.into());
        }
        check_signals()
    }
}

/// A timeout in seconds; None waits without limit.
fn timeout_arg(timeout: Option<f64>) -> PyVmanResult<Duration> {
    Ok(match timeout {
        Some(t) => seconds_arg("timeout", t)?,
        None => Duration::MAX,
    })
}

#[pymethods]
impl PyConsole {
    /// Up to ``size`` bytes the guest printed, waiting up to ``timeout``
    /// seconds (None: no limit) for something to come; ``b""`` once QEMU
    /// closed the console (the VM stopped). Raises :class:`vman.TimeoutError`
    /// if nothing came.
    #[pyo3(signature = (size=4096, timeout=None))]
    fn read<'py>(&self, py: Python<'py>, size: i64, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let size: usize = int_arg("size", size).map_err(PyVmanError)?;
        let timeout = timeout_arg(timeout)?;
        let mut buf = vec![0u8; size.min(CONSOLE_READ_MAX)];
        let n = py.detach(|| self.console().read_with(&mut buf, timeout, || self.check()))?;
        Ok(PyBytes::new(py, &buf[..n]))
    }

    /// Sends ``data`` (bytes, or str as UTF-8) to the guest, waiting up to
    /// ``timeout`` seconds (None: no limit) for QEMU to take all of it.
    /// Returns the number of bytes sent.
    #[pyo3(signature = (data, timeout=None))]
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<usize> {
        let bytes: Vec<u8> = match data.cast::<PyString>() {
            Ok(text) => text.extract::<String>()?.into_bytes(),
            Err(_) => data.extract::<Cow<'_, [u8]>>()?.into_owned(),
        };
        let timeout = timeout_arg(timeout)?;
        py.detach(|| self.console().write_all_with(&bytes, timeout, || self.check()))?;
        Ok(bytes.len())
    }

    /// Reads until the output matches the regular expression ``pattern``
    /// (``(?m)`` for line anchors) and returns what was read, ending with
    /// the match; what follows stays for the next read. Raises
    /// :class:`vman.TimeoutError` if no match came in ``timeout`` seconds,
    /// :class:`vman.ClosedError` if QEMU closed the console first.
    #[pyo3(signature = (pattern, timeout=Some(CONSOLE_WAIT_TIMEOUT.as_secs_f64())), text_signature = "($self, pattern, timeout=60.0)")]
    fn read_until<'py>(&self, py: Python<'py>, pattern: &str, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let timeout = timeout_arg(timeout)?;
        let bytes = py.detach(|| self.console().read_until_with(pattern, timeout, || self.check()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The descriptor, for ``select``/``poll`` (readable: :meth:`read`
    /// returns at once). Owned by the console; raises
    /// :class:`vman.ClosedError` after :meth:`close`.
    fn fileno(&self, py: Python<'_>) -> PyVmanResult<i32> {
        use std::os::fd::AsRawFd;
        // Never wait for the lock with the GIL held: a read in another
        // thread needs the GIL to check for signals.
        Ok(py.detach(|| self.console().fd().map(|fd| fd.as_raw_fd()))?)
    }

    /// Disconnects, so another console can attach. A read or write waiting
    /// in another thread ends with :class:`vman.ClosedError`. Closing twice
    /// is harmless.
    fn close(&self, py: Python<'_>) {
        self.closing.store(true, Ordering::Release);
        py.detach(|| self.console().close());
    }

    /// Whether :meth:`close` was called (the only way a console closes).
    #[getter]
    fn closed(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The name of the VM.
    #[getter]
    fn vm(&self) -> &str {
        &self.vm
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = match self.inner.try_lock() {
            Ok(console) if console.is_closed() => "closed",
            Ok(_) => "open",
            Err(_) => "busy",
        };
        format!("<vman.Console vm={:?} {state}>", self.vm)
    }
}
