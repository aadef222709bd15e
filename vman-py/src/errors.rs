//! Maps vman-core errors onto the Python exception tree in `vman._errors`.

use pyo3::prelude::*;
use vman_core::ErrorKind;

/// A core error on its way to Python (the orphan rule forbids
/// `From<vman_core::Error> for PyErr` directly).
pub(crate) struct PyVmanError(pub vman_core::Error);

impl From<vman_core::Error> for PyVmanError {
    fn from(e: vman_core::Error) -> Self {
        PyVmanError(e)
    }
}

/// The class a kind would get if this map did not know it. `ErrorKind` is
/// `#[non_exhaustive]` in another crate, so the match below needs a wildcard
/// arm the compiler cannot check; `error_classes` (exported for the tests)
/// runs the map over `ErrorKind::ALL`, and tests/python/test_errors.py proves
/// no kind reaches this arm and each gets a class of its own.
const UNMAPPED: &str = "VmanError";

/// The name of `kind`'s class in `vman._errors`.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "InvalidArgumentError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::AlreadyExists => "AlreadyExistsError",
        ErrorKind::InUse => "InUseError",
        ErrorKind::Exhausted => "ExhaustedError",
        ErrorKind::InvalidState => "InvalidStateError",
        ErrorKind::PermissionDenied => "PermissionDeniedError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::Io => "IoError",
        ErrorKind::Database => "DatabaseError",
        ErrorKind::Qemu => "QemuError",
        ErrorKind::Internal => "InternalError",
        ErrorKind::Closed => "ClosedError",
        ErrorKind::SettingConflict => "SettingConflictError",
        ErrorKind::Cancelled => "CancelledError",
        _ => UNMAPPED,
    }
}

/// `(kind, class name)` for every kind core has, in `ErrorKind::ALL`'s
/// order: the map as Python's tests see it (`vman._vman._error_classes`).
pub(crate) fn error_classes() -> Vec<(&'static str, &'static str)> {
    ErrorKind::ALL.iter().map(|&kind| (kind.as_str(), class_name(kind))).collect()
}

/// The first OS error in the cause chain, to chain as `__cause__`.
fn os_cause(e: &vman_core::Error) -> Option<&std::io::Error> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

impl From<PyVmanError> for PyErr {
    fn from(PyVmanError(e): PyVmanError) -> PyErr {
        Python::attach(|py| {
            let build = || -> PyResult<PyErr> {
                let class = py.import("vman._errors")?.getattr(class_name(e.kind()))?;
                let exception = class.call1((e.full_message(),))?;
                let err = PyErr::from_value(exception);
                if let Some(io) = os_cause(&e) {
                    let cause: PyErr = std::io::Error::new(io.kind(), io.to_string()).into();
                    let cause = match io.raw_os_error() {
                        Some(errno) => pyo3::exceptions::PyOSError::new_err((errno, io.to_string())),
                        None => cause,
                    };
                    err.set_cause(py, Some(cause));
                }
                Ok(err)
            };
            // If the package is broken enough that the tree cannot be
            // imported, the import error itself is the most useful answer.
            build().unwrap_or_else(|import_error| import_error)
        })
    }
}

pub(crate) type PyVmanResult<T> = Result<T, PyVmanError>;

/// Why a wait that Python can interrupt ended early: vman's own error, or
/// the exception a signal handler raised (KeyboardInterrupt for Ctrl-C).
pub(crate) enum Interrupted {
    Vman(vman_core::Error),
    Python(PyErr),
}

impl From<vman_core::Error> for Interrupted {
    fn from(e: vman_core::Error) -> Self {
        Interrupted::Vman(e)
    }
}

impl From<Interrupted> for PyErr {
    fn from(e: Interrupted) -> PyErr {
        match e {
            Interrupted::Vman(e) => PyVmanError(e).into(),
            Interrupted::Python(e) => e,
        }
    }
}

/// The check core calls between slices of a wait, with the GIL released:
/// takes the GIL for a moment and runs Python's signal handlers (see
/// `signals::check`).
pub(crate) fn check_signals() -> Result<(), Interrupted> {
    Python::attach(crate::signals::check).map_err(Interrupted::Python)
}
