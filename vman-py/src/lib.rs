//! The Python module `vman._vman` over `vman-core`. It maps; it never
//! decides: validation and every rule live in vman-core.

#![warn(missing_docs)]

mod args;
mod batch;
mod cancel;
mod console;
mod errors;
mod host;
mod logging;
mod manager;
mod records;
mod signals;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vman_core::defaults::{CONSOLE_TAIL_BYTES, CONSOLE_WAIT_TIMEOUT, DETACH_TIMEOUT, HISTORY_LIMIT, STOP_TIMEOUT};

/// `vman._vman.DEFAULTS`: core's defaults as Python sees them (seconds as
/// float; the default of each enumerated option by name), so a test can
/// hold the signatures' shown defaults to them.
fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("stop_timeout", STOP_TIMEOUT.as_secs_f64())?;
    d.set_item("console_tail_bytes", CONSOLE_TAIL_BYTES)?;
    d.set_item("console_wait_timeout", CONSOLE_WAIT_TIMEOUT.as_secs_f64())?;
    d.set_item("history_limit", HISTORY_LIMIT)?;
    d.set_item("detach_timeout", DETACH_TIMEOUT.as_secs_f64())?;
    d.set_item("batch_first", vman_core::defaults::BATCH_FIRST)?;
    d.set_item("disk_format", vman_core::DiskFormat::default().as_str())?;
    d.set_item("firmware", vman_core::Firmware::default().as_str())?;
    d.set_item("display", vman_core::Display::default().as_str())?;
    d.set_item("image_arch", vman_core::ImageSpec::new("", "").arch)?;
    Ok(d)
}

#[pymodule(gil_used = false)]
mod _vman {
    use super::*;

    #[pymodule_export]
    use crate::batch::PyBatch;
    #[pymodule_export]
    use crate::cancel::PyCancel;
    #[pymodule_export]
    use crate::console::PyConsole;
    #[pymodule_export]
    use crate::host::{PyHealthCheck, PyHostHealth, PyHostStats, PySettings, PyVmStats};
    #[pymodule_export]
    use crate::manager::{PyEventStream, PyManager, PyNicSpec};
    #[pymodule_export]
    use crate::records::{
        PyAllocation, PyDisk, PyDrift, PyEvent, PyImage, PyNetwork, PyNic, PyPortForward, PyReconcileReport, PySnapshot, PySshKey,
        PyTemplate, PyVm, PyVmSshKey,
    };

    /// The default state directory: ``$VMAN_STATE_DIR``, else
    /// ``/var/lib/vman`` for root, else ``$XDG_STATE_HOME/vman`` or
    /// ``~/.local/state/vman``.
    #[pyfunction]
    fn default_state_dir() -> std::path::PathBuf {
        vman_core::default_state_dir()
    }

    /// ``(kind, class name)`` for every error kind of vman-core: the map
    /// from core's errors to the classes of :mod:`vman._errors`, for the
    /// test that proves it complete.
    #[pyfunction]
    fn _error_classes() -> Vec<(&'static str, &'static str)> {
        crate::errors::error_classes()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // vman-core logs through `log`; route it into Python's logging,
        // under the logger "vman" (python/vman/__init__.py gives it a
        // NullHandler, so nothing is printed unless the application asks).
        crate::signals::init(m.py())?;
        crate::logging::install(m.py())?;
        m.add("__version__", vman_core::VERSION)?;
        m.add("VM_STATES", vman_core::VmState::ALL.map(|s| s.as_str()).to_vec())?;
        m.add("DISK_STATES", vman_core::DiskState::ALL.map(|s| s.as_str()).to_vec())?;
        m.add("DEFAULTS", defaults(m.py())?)?;
        Ok(())
    }
}
