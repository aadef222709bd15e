//! Frozen records of the host: `Settings` (what the state directory keeps
//! for every opener), `HostStats` with a `VmStats` per VM, and `HostHealth`
//! with its `HealthCheck`s.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The settings of a state directory, as read: kept in the directory and
/// used by every process that opens it. Change one with
/// :meth:`Manager.set_setting`.
#[pyclass(frozen, eq, hash, module = "vman", name = "Settings")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PySettings {
    /// How NICs reach their networks: ``"bridged"``, ``"user"`` or ``"isolated"``.
    #[pyo3(get)]
    network: &'static str,
    /// ``"auto"`` (KVM if a probe proves it runs guests, else TCG), ``"kvm"`` or ``"tcg"``.
    #[pyo3(get)]
    accel: &'static str,
    /// The QEMU binary: a path, or a name looked up in ``PATH``.
    #[pyo3(get)]
    qemu_binary: String,
    /// The DHCP server of bridged networks: a path, or a name looked up in ``PATH``.
    #[pyo3(get)]
    dnsmasq_binary: String,
    /// The user QEMU runs as when vman is root; None for the default
    /// (``vman-qemu`` if that user exists, else ``nobody``).
    #[pyo3(get)]
    qemu_user: Option<String>,
    /// The size in bytes at which each VM's serial log is rotated.
    #[pyo3(get)]
    serial_log_cap_bytes: u64,
}

impl From<vman_core::Settings> for PySettings {
    fn from(s: vman_core::Settings) -> Self {
        PySettings {
            network: s.network.as_str(),
            accel: s.accel.as_str(),
            qemu_binary: s.qemu_binary.to_string_lossy().into_owned(),
            dnsmasq_binary: s.dnsmasq_binary.to_string_lossy().into_owned(),
            qemu_user: s.qemu_user,
            serial_log_cap_bytes: s.serial_log_cap_bytes,
        }
    }
}

#[pymethods]
impl PySettings {
    /// Every setting by key (the keys :meth:`Manager.set_setting` takes), in
    /// a fixed order.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("network", self.network)?;
        d.set_item("accel", self.accel)?;
        d.set_item("qemu_binary", &self.qemu_binary)?;
        d.set_item("dnsmasq_binary", &self.dnsmasq_binary)?;
        d.set_item("qemu_user", &self.qemu_user)?;
        d.set_item("serial_log_cap_bytes", self.serial_log_cap_bytes)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Settings(network={:?}, accel={:?}, qemu_binary={:?}, dnsmasq_binary={:?}, qemu_user={}, serial_log_cap_bytes={})",
            self.network,
            self.accel,
            self.qemu_binary,
            self.dnsmasq_binary,
            self.qemu_user.as_ref().map_or("None".to_string(), |u| format!("{u:?}")),
            self.serial_log_cap_bytes
        )
    }
}

/// One VM in :class:`HostStats`: what its QEMU uses (None without one) and
/// what its files take on the host's disk.
#[pyclass(frozen, eq, module = "vman", name = "VmStats")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyVmStats {
    /// The VM's name.
    #[pyo3(get)]
    name: String,
    /// The VM's UUID.
    #[pyo3(get)]
    id: String,
    /// Its state when read (one of :data:`vman.VM_STATES`).
    #[pyo3(get)]
    state: &'static str,
    /// Its QEMU's pid (proven to be that VM's); None without a QEMU.
    #[pyo3(get)]
    pid: Option<u32>,
    /// User plus system CPU time its QEMU used since it started, in
    /// milliseconds; None without a QEMU.
    #[pyo3(get)]
    cpu_time_ms: Option<u64>,
    /// Its QEMU's CPU use over the sample, in percent of one CPU; None
    /// without a QEMU.
    #[pyo3(get)]
    cpu_percent: Option<f64>,
    /// Its QEMU's resident memory in bytes; None without a QEMU.
    #[pyo3(get)]
    rss_bytes: Option<u64>,
    /// Host disk space its own files take (its disks, seed and UEFI
    /// variables), in allocated bytes.
    #[pyo3(get)]
    disk_bytes: u64,
}

#[pymethods]
impl PyVmStats {
    fn __repr__(&self) -> String {
        let qemu = match (self.pid, self.cpu_time_ms, self.rss_bytes) {
            (Some(pid), Some(cpu), Some(rss)) => format!(", pid={pid}, cpu_time_ms={cpu}, rss_bytes={rss}"),
            _ => String::new(),
        };
        format!("VmStats(name={:?}, state={:?}{qemu}, disk_bytes={})", self.name, self.state, self.disk_bytes)
    }
}

/// The host and its VMs over one CPU sample: see :meth:`Manager.host_stats`.
#[pyclass(frozen, eq, module = "vman", name = "HostStats")]
#[derive(PartialEq)]
pub(crate) struct PyHostStats {
    /// When the sample ended, Unix time in milliseconds.
    #[pyo3(get)]
    at_ms: i64,
    /// How long CPU use was sampled, in milliseconds.
    #[pyo3(get)]
    sample_ms: u64,
    /// Online CPUs.
    #[pyo3(get)]
    cpu_count: u32,
    /// How busy all CPUs were over the sample, 0 to 100.
    #[pyo3(get)]
    cpu_busy_percent: f64,
    /// The 1-minute load average.
    #[pyo3(get)]
    load_1: f64,
    /// The 5-minute load average.
    #[pyo3(get)]
    load_5: f64,
    /// The 15-minute load average.
    #[pyo3(get)]
    load_15: f64,
    /// Physical memory in bytes.
    #[pyo3(get)]
    memory_total_bytes: u64,
    /// Memory available for new work without swapping, in bytes.
    #[pyo3(get)]
    memory_available_bytes: u64,
    /// Size of the state directory's filesystem in bytes.
    #[pyo3(get)]
    disk_total_bytes: u64,
    /// Space available to vman on it, in bytes.
    #[pyo3(get)]
    disk_available_bytes: u64,
    /// Every live VM, by name.
    #[pyo3(get)]
    vms: Vec<PyVmStats>,
}

impl From<vman_core::HostStats> for PyHostStats {
    fn from(s: vman_core::HostStats) -> Self {
        let vms = s
            .vms
            .into_iter()
            .map(|v| PyVmStats {
                name: v.name,
                id: v.id,
                state: v.state.as_str(),
                pid: v.pid,
                cpu_time_ms: v.cpu_time_ms,
                cpu_percent: v.cpu_percent,
                rss_bytes: v.rss_bytes,
                disk_bytes: v.disk_bytes,
            })
            .collect();
        PyHostStats {
            at_ms: s.at_ms,
            sample_ms: s.sample_ms,
            cpu_count: s.cpu_count,
            cpu_busy_percent: s.cpu_busy_percent,
            load_1: s.load_1,
            load_5: s.load_5,
            load_15: s.load_15,
            memory_total_bytes: s.memory_total_bytes,
            memory_available_bytes: s.memory_available_bytes,
            disk_total_bytes: s.disk_total_bytes,
            disk_available_bytes: s.disk_available_bytes,
            vms,
        }
    }
}

#[pymethods]
impl PyHostStats {
    fn __repr__(&self) -> String {
        format!(
            "HostStats(cpu_count={}, cpu_busy_percent={:.1}, memory_available_bytes={}, disk_available_bytes={}, vms={})",
            self.cpu_count,
            self.cpu_busy_percent,
            self.memory_available_bytes,
            self.disk_available_bytes,
            self.vms.len()
        )
    }
}

/// One check of :class:`HostHealth`.
#[pyclass(frozen, eq, hash, module = "vman", name = "HealthCheck")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyHealthCheck {
    /// What was checked: ``"qemu"``, ``"qemu_img"``, ``"accel"``,
    /// ``"bridge"``, ``"dnsmasq"``, ``"ovmf"`` or ``"state_dir"``.
    #[pyo3(get)]
    name: &'static str,
    /// Whether it is usable.
    #[pyo3(get)]
    ok: bool,
    /// Whether the state directory's settings and VMs need it.
    #[pyo3(get)]
    required: bool,
    /// What was found (a version, a path), or why it is not usable.
    #[pyo3(get)]
    detail: String,
    /// How to fix it; None when it is usable.
    #[pyo3(get)]
    fix: Option<String>,
}

#[pymethods]
impl PyHealthCheck {
    fn __repr__(&self) -> String {
        format!("HealthCheck(name={:?}, ok={}, required={}, detail={:?})", self.name, py_bool(self.ok), py_bool(self.required), self.detail)
    }
}

/// Whether the host can run the state directory's VMs as its settings say:
/// see :meth:`Manager.host_health`.
#[pyclass(frozen, eq, hash, module = "vman", name = "HostHealth")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyHostHealth {
    /// True when every required check passed.
    #[pyo3(get)]
    ok: bool,
    /// Every check, in a fixed order: qemu, qemu_img, accel, bridge,
    /// dnsmasq, ovmf, state_dir.
    #[pyo3(get)]
    checks: Vec<PyHealthCheck>,
}

impl From<vman_core::HostHealth> for PyHostHealth {
    fn from(h: vman_core::HostHealth) -> Self {
        let checks = h
            .checks
            .into_iter()
            .map(|c| PyHealthCheck { name: c.name, ok: c.ok, required: c.required, detail: c.detail, fix: c.fix })
            .collect();
        PyHostHealth { ok: h.ok, checks }
    }
}

#[pymethods]
impl PyHostHealth {
    /// The check named ``name``; raises KeyError if there is none.
    fn check(&self, name: &str) -> PyResult<PyHealthCheck> {
        self.checks.iter().find(|c| c.name == name).cloned().ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_string()))
    }

    fn __repr__(&self) -> String {
        // Check names are plain words: quoted as Python quotes them.
        let failed: Vec<String> = self.checks.iter().filter(|c| !c.ok).map(|c| format!("'{}'", c.name)).collect();
        format!("HostHealth(ok={}, failed=[{}])", py_bool(self.ok), failed.join(", "))
    }
}

/// A bool as Python writes it.
fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}
