//! `vman.Manager`: the Python face of `vman_core::Manager`.
//!
//! Each method extracts its arguments, releases the GIL around the core call
//! (which may wait on disk, locks or QEMU), and maps the result.

use pyo3::prelude::*;
use vman_core::convert::int_arg;
use vman_core::{Manager, NetworkSpec, NicSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState};

use crate::errors::{PyVmanError, PyVmanResult};
use crate::records::{PyAllocation, PyEvent, PyNetwork, PyTemplate, PyVm};

/// A NIC to give a new VM: on ``network``, with a fixed ``ip`` or ``mac`` if
/// given (otherwise allocated).
#[pyclass(frozen, from_py_object, module = "vman", name = "NicSpec")]
#[derive(Clone)]
pub(crate) struct PyNicSpec {
    #[pyo3(get)]
    network: String,
    #[pyo3(get)]
    ip: Option<String>,
    #[pyo3(get)]
    mac: Option<String>,
}

#[pymethods]
impl PyNicSpec {
    #[new]
    #[pyo3(signature = (network, *, ip=None, mac=None))]
    fn new(network: String, ip: Option<String>, mac: Option<String>) -> Self {
        PyNicSpec { network, ip, mac }
    }

    fn __repr__(&self) -> String {
        format!("NicSpec({:?}, ip={:?}, mac={:?})", self.network, self.ip, self.mac)
    }
}

/// A NIC argument: a network name, or a NicSpec.
#[derive(FromPyObject)]
pub(crate) enum NicArg {
    Network(String),
    Spec(PyNicSpec),
}

impl From<NicArg> for NicSpec {
    fn from(arg: NicArg) -> NicSpec {
        match arg {
            NicArg::Network(network) => NicSpec::on(network),
            NicArg::Spec(s) => NicSpec { network: s.network, ip: s.ip, mac: s.mac },
        }
    }
}

/// A handle on one state directory. Thread-safe; several managers (in this
/// or other processes) may open the same directory.
#[pyclass(frozen, module = "vman", name = "Manager")]
pub(crate) struct PyManager {
    inner: Manager,
}

#[pymethods]
impl PyManager {
    /// Opens ``state_dir``, creating it (mode 0700) and its database if missing.
    #[new]
    #[pyo3(signature = (state_dir, *, busy_timeout_ms=10_000))]
    fn open(py: Python<'_>, state_dir: std::path::PathBuf, busy_timeout_ms: i64) -> PyResult<Self> {
        let options = OpenOptions { busy_timeout_ms: int_arg("busy timeout", busy_timeout_ms).map_err(PyVmanError)? };
        let inner = py.detach(|| Manager::open(&state_dir, &options)).map_err(PyVmanError)?;
        Ok(PyManager { inner })
    }

    #[getter]
    fn state_dir(&self) -> std::path::PathBuf {
        self.inner.state_dir().to_path_buf()
    }

    #[pyo3(signature = (name, *, vcpus, memory_mib, disk_gib, description=None))]
    fn create_template(
        &self,
        py: Python<'_>,
        name: String,
        vcpus: i64,
        memory_mib: i64,
        disk_gib: i64,
        description: Option<String>,
    ) -> PyVmanResult<PyTemplate> {
        let spec = TemplateSpec {
            name,
            vcpus: int_arg("vcpus", vcpus)?,
            memory_mib: int_arg("memory", memory_mib)?,
            disk_gib: int_arg("disk size", disk_gib)?,
            description: description.unwrap_or_default(),
        };
        Ok(py.detach(|| self.inner.create_template(&spec))?.into())
    }

    fn template(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyTemplate> {
        Ok(py.detach(|| self.inner.template(name))?.into())
    }

    fn templates(&self, py: Python<'_>) -> PyVmanResult<Vec<PyTemplate>> {
        Ok(py.detach(|| self.inner.templates())?.into_iter().map(Into::into).collect())
    }

    fn delete_template(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        Ok(py.detach(|| self.inner.delete_template(name))?)
    }

    #[pyo3(signature = (name, *, vlan, cidr, gateway=None, reserved=None, dns=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_network(
        &self,
        py: Python<'_>,
        name: String,
        vlan: i64,
        cidr: String,
        gateway: Option<String>,
        reserved: Option<Vec<String>>,
        dns: Option<Vec<String>>,
    ) -> PyVmanResult<PyNetwork> {
        let spec = NetworkSpec {
            name,
            vlan: int_arg("VLAN id", vlan)?,
            cidr,
            gateway,
            reserved: reserved.unwrap_or_default(),
            dns: dns.unwrap_or_default(),
        };
        Ok(py.detach(|| self.inner.create_network(&spec))?.into())
    }

    fn network(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyNetwork> {
        Ok(py.detach(|| self.inner.network(name))?.into())
    }

    fn networks(&self, py: Python<'_>) -> PyVmanResult<Vec<PyNetwork>> {
        Ok(py.detach(|| self.inner.networks())?.into_iter().map(Into::into).collect())
    }

    fn delete_network(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        Ok(py.detach(|| self.inner.delete_network(name))?)
    }

    fn allocations(&self, py: Python<'_>, network: &str) -> PyVmanResult<Vec<PyAllocation>> {
        Ok(py.detach(|| self.inner.allocations(network))?.into_iter().map(Into::into).collect())
    }

    /// Records a VM. Each NIC is a network name or a :class:`NicSpec`; all
    /// addresses are allocated in one transaction, or none.
    #[pyo3(signature = (name, *, template, nics=None))]
    fn create_vm(&self, py: Python<'_>, name: String, template: String, nics: Option<Vec<NicArg>>) -> PyVmanResult<PyVm> {
        let spec = VmSpec { name, template, nics: nics.unwrap_or_default().into_iter().map(NicSpec::from).collect() };
        Ok(py.detach(|| self.inner.create_vm(&spec))?.into())
    }

    fn vm(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(py.detach(|| self.inner.vm(name))?.into())
    }

    #[pyo3(signature = (*, state=None, name_prefix=None))]
    fn vms(&self, py: Python<'_>, state: Option<&str>, name_prefix: Option<String>) -> PyVmanResult<Vec<PyVm>> {
        let filter = VmFilter { state: state.map(str::parse::<VmState>).transpose()?, name_prefix };
        Ok(py.detach(|| self.inner.vms(&filter))?.into_iter().map(Into::into).collect())
    }

    fn delete_vm(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        Ok(py.detach(|| self.inner.delete_vm(name))?)
    }

    /// The newest ``limit`` events of a VM (live name, or id of a deleted
    /// one), oldest first.
    #[pyo3(signature = (vm, limit=100))]
    fn vm_history(&self, py: Python<'_>, vm: &str, limit: i64) -> PyVmanResult<Vec<PyEvent>> {
        let limit = int_arg("limit", limit)?;
        Ok(py.detach(|| self.inner.vm_history(vm, limit))?.into_iter().map(Into::into).collect())
    }

    /// The newest ``limit`` events across the store, oldest first.
    #[pyo3(signature = (limit=100))]
    fn recent_events(&self, py: Python<'_>, limit: i64) -> PyVmanResult<Vec<PyEvent>> {
        let limit = int_arg("limit", limit)?;
        Ok(py.detach(|| self.inner.recent_events(limit))?.into_iter().map(Into::into).collect())
    }

    fn __repr__(&self) -> String {
        format!("Manager({:?})", self.inner.state_dir())
    }
}
