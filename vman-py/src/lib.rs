//! The Python module `vman._vman` over `vman-core`. It maps; it never
//! decides: validation and every rule live in vman-core.

mod args;
mod console;
mod errors;
mod logging;
mod manager;
mod records;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _vman {
    use super::*;

    #[pymodule_export]
    use crate::console::PyConsole;
    #[pymodule_export]
    use crate::manager::{PyEventStream, PyManager, PyNicSpec};
    #[pymodule_export]
    use crate::records::{PyAllocation, PyDrift, PyEvent, PyNetwork, PyNic, PyPortForward, PyReconcileReport, PyTemplate, PyVm};

    /// The default state directory: ``$VMAN_STATE_DIR``, else
    /// ``/var/lib/vman`` for root, else ``$XDG_STATE_HOME/vman`` or
    /// ``~/.local/state/vman``.
    #[pyfunction]
    fn default_state_dir() -> std::path::PathBuf {
        vman_core::default_state_dir()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // vman-core logs through `log`; route it into Python's logging,
        // under the logger "vman" (python/vman/__init__.py gives it a
        // NullHandler, so nothing is printed unless the application asks).
        crate::logging::install(m.py())?;
        m.add("__version__", vman_core::VERSION)?;
        m.add("VM_STATES", vman_core::VmState::ALL.map(|s| s.as_str()).to_vec())?;
        Ok(())
    }
}
