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

fn class_name(kind: ErrorKind) -> &'static str {
    // Exhaustive on purpose: a new kind must get a class here.
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
        _ => "VmanError",
    }
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
