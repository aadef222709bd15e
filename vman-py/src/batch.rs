//! `vman.Batch`: a batch of VMs made in one call, as read from the store.

use pyo3::prelude::*;

/// A batch of VMs made in one call from one spec and a naming pattern;
/// ``vms`` are its live VMs' names, in the order they were made.
#[pyclass(frozen, eq, hash, module = "vman", name = "Batch")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyBatch {
    /// The batch's number, never reused.
    #[pyo3(get)]
    id: i64,
    /// The batch's name (by default the pattern without its placeholder: ``"worker"``).
    #[pyo3(get)]
    name: String,
    /// The naming pattern its VMs were named by, e.g. ``"worker{:02}"``.
    #[pyo3(get)]
    pattern: String,
    /// How many VMs it was made with.
    #[pyo3(get)]
    count: u32,
    /// ``"creating"``, ``"created"``, ``"rolling_back"``, ``"deleting"`` or ``"deleted"``.
    #[pyo3(get)]
    state: &'static str,
    /// Its live VMs' names, in the order they were made.
    #[pyo3(get)]
    vms: Vec<String>,
    /// When it was made, in Unix milliseconds.
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Batch> for PyBatch {
    fn from(b: vman_core::Batch) -> Self {
        PyBatch {
            id: b.id,
            name: b.name,
            pattern: b.pattern,
            count: b.count,
            state: b.state.as_str(),
            vms: b.vms,
            created_at_ms: b.created_at_ms,
        }
    }
}

#[pymethods]
impl PyBatch {
    fn __repr__(&self) -> String {
        format!("Batch(name={:?}, pattern={:?}, state={:?}, vms={:?})", self.name, self.pattern, self.state, self.vms)
    }
}
