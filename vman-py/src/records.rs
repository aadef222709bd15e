//! Frozen record classes: snapshots of what the store held when read.
//!
//! Each compares and hashes by value (`eq, hash`): two reads of an
//! unchanged object are equal and can key a dict or sit in a set.

use pyo3::prelude::*;

/// A size template.
#[pyclass(frozen, eq, hash, module = "vman", name = "Template")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyTemplate {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    vcpus: u32,
    #[pyo3(get)]
    memory_mib: u64,
    #[pyo3(get)]
    disk_gib: u64,
    #[pyo3(get)]
    description: String,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Template> for PyTemplate {
    fn from(t: vman_core::Template) -> Self {
        PyTemplate {
            id: t.id,
            name: t.name,
            vcpus: t.vcpus,
            memory_mib: t.memory_mib,
            disk_gib: t.disk_gib,
            description: t.description,
            created_at_ms: t.created_at_ms,
        }
    }
}

#[pymethods]
impl PyTemplate {
    fn __repr__(&self) -> String {
        format!("Template(name={:?}, vcpus={}, memory_mib={}, disk_gib={})", self.name, self.vcpus, self.memory_mib, self.disk_gib)
    }
}

/// A VLAN network.
#[pyclass(frozen, eq, hash, module = "vman", name = "Network")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyNetwork {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    vlan: u16,
    #[pyo3(get)]
    cidr: String,
    #[pyo3(get)]
    gateway: String,
    #[pyo3(get)]
    reserved: Vec<String>,
    #[pyo3(get)]
    dns: Vec<String>,
    #[pyo3(get)]
    uplink: Option<String>,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Network> for PyNetwork {
    fn from(n: vman_core::Network) -> Self {
        PyNetwork {
            id: n.id,
            name: n.name,
            vlan: n.vlan,
            cidr: n.cidr.to_string(),
            gateway: n.gateway.to_string(),
            reserved: n.reserved.iter().map(ToString::to_string).collect(),
            dns: n.dns.iter().map(ToString::to_string).collect(),
            uplink: n.uplink,
            created_at_ms: n.created_at_ms,
        }
    }
}

#[pymethods]
impl PyNetwork {
    fn __repr__(&self) -> String {
        format!("Network(name={:?}, vlan={}, cidr={:?}, gateway={:?})", self.name, self.vlan, self.cidr, self.gateway)
    }
}

/// A NIC of a VM, with its allocated address.
#[pyclass(frozen, eq, hash, module = "vman", name = "Nic")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyNic {
    #[pyo3(get)]
    index: u32,
    #[pyo3(get)]
    network: String,
    #[pyo3(get)]
    vlan: u16,
    #[pyo3(get)]
    ip: String,
    #[pyo3(get)]
    prefix_len: u8,
    #[pyo3(get)]
    gateway: String,
    #[pyo3(get)]
    mac: String,
    #[pyo3(get)]
    host_interface: Option<String>,
}

#[pymethods]
impl PyNic {
    fn __repr__(&self) -> String {
        format!("Nic(index={}, network={:?}, ip={:?}, mac={:?})", self.index, self.network, self.ip, self.mac)
    }
}

/// A host port that reaches a guest port (user-mode networking).
#[pyclass(frozen, eq, hash, module = "vman", name = "PortForward")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyPortForward {
    #[pyo3(get)]
    nic_index: u32,
    #[pyo3(get)]
    guest_port: u16,
    #[pyo3(get)]
    host_address: String,
    #[pyo3(get)]
    host_port: u16,
}

#[pymethods]
impl PyPortForward {
    fn __repr__(&self) -> String {
        format!("PortForward({}:{} -> nic{}:{})", self.host_address, self.host_port, self.nic_index, self.guest_port)
    }
}

/// A VM record.
#[pyclass(frozen, eq, hash, module = "vman", name = "Vm")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyVm {
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    template: String,
    #[pyo3(get)]
    vcpus: u32,
    #[pyo3(get)]
    memory_mib: u64,
    #[pyo3(get)]
    disk_gib: u64,
    #[pyo3(get)]
    state: &'static str,
    #[pyo3(get)]
    nics: Vec<PyNic>,
    #[pyo3(get)]
    kernel: Option<String>,
    #[pyo3(get)]
    initrd: Option<String>,
    #[pyo3(get)]
    cmdline: Option<String>,
    #[pyo3(get)]
    pid: Option<u32>,
    #[pyo3(get)]
    accel: Option<String>,
    #[pyo3(get)]
    last_error: Option<String>,
    #[pyo3(get)]
    port_forwards: Vec<PyPortForward>,
    #[pyo3(get)]
    firmware: &'static str,
    #[pyo3(get)]
    cdrom: Option<String>,
    #[pyo3(get)]
    boot_from_cdrom: bool,
    #[pyo3(get)]
    display: &'static str,
    #[pyo3(get)]
    display_address: Option<String>,
    #[pyo3(get)]
    cloud_init: bool,
    #[pyo3(get)]
    user_data: Option<String>,
    #[pyo3(get)]
    ssh_keys: Vec<PyVmSshKey>,
    #[pyo3(get)]
    created_at_ms: i64,
    #[pyo3(get)]
    updated_at_ms: i64,
}

impl From<vman_core::Vm> for PyVm {
    fn from(v: vman_core::Vm) -> Self {
        PyVm {
            nics: v
                .nics
                .iter()
                .map(|n| PyNic {
                    index: n.index,
                    network: n.network.clone(),
                    vlan: n.vlan,
                    ip: n.ip.to_string(),
                    prefix_len: n.prefix_len,
                    gateway: n.gateway.to_string(),
                    mac: n.mac.to_string(),
                    host_interface: n.host_interface.clone(),
                })
                .collect(),
            port_forwards: v
                .port_forwards
                .iter()
                .map(|f| PyPortForward {
                    nic_index: f.nic_index,
                    guest_port: f.guest_port,
                    host_address: f.host_address.to_string(),
                    host_port: f.host_port,
                })
                .collect(),
            ssh_keys: v.ssh_keys.into_iter().map(PyVmSshKey::from).collect(),
            state: v.state.as_str(),
            kernel: v.boot.as_ref().map(|b| b.kernel.clone()),
            initrd: v.boot.as_ref().and_then(|b| b.initrd.clone()),
            cmdline: v.boot.as_ref().map(|b| b.cmdline.clone()),
            pid: v.pid,
            accel: v.accel,
            last_error: v.last_error,
            firmware: v.firmware.as_str(),
            cdrom: v.cdrom,
            boot_from_cdrom: v.boot_from_cdrom,
            display: v.display.as_str(),
            display_address: v.display_address,
            cloud_init: v.cloud_init,
            user_data: v.user_data,
            id: v.id,
            name: v.name,
            template: v.template,
            vcpus: v.vcpus,
            memory_mib: v.memory_mib,
            disk_gib: v.disk_gib,
            created_at_ms: v.created_at_ms,
            updated_at_ms: v.updated_at_ms,
        }
    }
}

#[pymethods]
impl PyVm {
    fn __repr__(&self) -> String {
        let ips: Vec<&str> = self.nics.iter().map(|n| n.ip.as_str()).collect();
        let pid = self.pid.map_or(String::new(), |p| format!(", pid={p}"));
        format!("Vm(name={:?}, state={:?}, template={:?}, ips={:?}{pid})", self.name, self.state, self.template, ips)
    }
}

/// A disk: a file under the state directory (or a caller's, used in
/// place) that VMs attach.
#[pyclass(frozen, eq, hash, module = "vman", name = "Disk")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyDisk {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    format: &'static str,
    #[pyo3(get)]
    size_bytes: u64,
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    owned: bool,
    #[pyo3(get)]
    image: Option<String>,
    #[pyo3(get)]
    state: &'static str,
    #[pyo3(get)]
    vm: Option<String>,
    #[pyo3(get)]
    slot: Option<u32>,
    #[pyo3(get)]
    delete_with_vm: bool,
    #[pyo3(get)]
    last_error: Option<String>,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Disk> for PyDisk {
    fn from(d: vman_core::Disk) -> Self {
        PyDisk {
            id: d.id,
            name: d.name,
            format: d.format.as_str(),
            size_bytes: d.size_bytes,
            path: d.path,
            owned: d.owned,
            image: d.image,
            state: d.state.as_str(),
            vm: d.vm,
            slot: d.slot,
            delete_with_vm: d.delete_with_vm,
            last_error: d.last_error,
            created_at_ms: d.created_at_ms,
        }
    }
}

#[pymethods]
impl PyDisk {
    fn __repr__(&self) -> String {
        let on = self.vm.as_ref().map_or(String::new(), |vm| format!(", vm={vm:?}, slot={}", self.slot.unwrap_or_default()));
        format!("Disk(name={:?}, format={:?}, size_bytes={}, state={:?}{on})", self.name, self.format, self.size_bytes, self.state)
    }
}

/// A base image of the catalogue. Its file is never written: VMs boot from
/// linked clones of it.
#[pyclass(frozen, eq, hash, module = "vman", name = "Image")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyImage {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    os: String,
    #[pyo3(get)]
    arch: String,
    #[pyo3(get)]
    description: String,
    #[pyo3(get)]
    format: &'static str,
    #[pyo3(get)]
    virtual_size: u64,
    #[pyo3(get)]
    sha256: String,
    #[pyo3(get)]
    firmware: &'static str,
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    owned: bool,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Image> for PyImage {
    fn from(i: vman_core::Image) -> Self {
        PyImage {
            id: i.id,
            name: i.name,
            os: i.os,
            arch: i.arch,
            description: i.description,
            format: i.format.as_str(),
            virtual_size: i.virtual_size,
            sha256: i.sha256,
            firmware: i.firmware.as_str(),
            path: i.path,
            owned: i.owned,
            created_at_ms: i.created_at_ms,
        }
    }
}

#[pymethods]
impl PyImage {
    fn __repr__(&self) -> String {
        format!(
            "Image(name={:?}, os={:?}, format={:?}, virtual_size={}, firmware={:?})",
            self.name, self.os, self.format, self.virtual_size, self.firmware
        )
    }
}

/// A snapshot of a VM's disks (and, taken live, of its memory).
#[pyclass(frozen, eq, hash, module = "vman", name = "Snapshot")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PySnapshot {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    vm: String,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    live: bool,
    #[pyo3(get)]
    state: String,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::Snapshot> for PySnapshot {
    fn from(s: vman_core::Snapshot) -> Self {
        PySnapshot { id: s.id, vm: s.vm, name: s.name, live: s.live, state: s.state, created_at_ms: s.created_at_ms }
    }
}

#[pymethods]
impl PySnapshot {
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(vm={:?}, name={:?}, live={}, state={:?})",
            self.vm,
            self.name,
            if self.live { "True" } else { "False" },
            self.state
        )
    }
}

/// An SSH public key of the catalogue.
#[pyclass(frozen, eq, hash, module = "vman", name = "SshKey")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PySshKey {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    key_type: &'static str,
    #[pyo3(get)]
    bits: u32,
    #[pyo3(get)]
    public_key: String,
    #[pyo3(get)]
    comment: String,
    #[pyo3(get)]
    fingerprint_sha256: String,
    #[pyo3(get)]
    fingerprint_md5: String,
    #[pyo3(get)]
    created_at_ms: i64,
}

impl From<vman_core::SshKey> for PySshKey {
    fn from(k: vman_core::SshKey) -> Self {
        PySshKey {
            id: k.id,
            name: k.name,
            key_type: k.key_type.as_str(),
            bits: k.bits,
            public_key: k.public_key,
            comment: k.comment,
            fingerprint_sha256: k.fingerprint_sha256,
            fingerprint_md5: k.fingerprint_md5,
            created_at_ms: k.created_at_ms,
        }
    }
}

#[pymethods]
impl PySshKey {
    fn __repr__(&self) -> String {
        format!(
            "SshKey(name={:?}, key_type={:?}, bits={}, fingerprint_sha256={:?})",
            self.name, self.key_type, self.bits, self.fingerprint_sha256
        )
    }
}

/// A VM's own copy of an SSH key it was given (it outlives the key's
/// deletion from the catalogue).
#[pyclass(frozen, eq, hash, module = "vman", name = "VmSshKey")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyVmSshKey {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    public_key: String,
    #[pyo3(get)]
    fingerprint_sha256: String,
}

impl From<vman_core::VmSshKey> for PyVmSshKey {
    fn from(k: vman_core::VmSshKey) -> Self {
        PyVmSshKey { name: k.name, public_key: k.public_key, fingerprint_sha256: k.fingerprint_sha256 }
    }
}

#[pymethods]
impl PyVmSshKey {
    fn __repr__(&self) -> String {
        format!("VmSshKey(name={:?}, fingerprint_sha256={:?})", self.name, self.fingerprint_sha256)
    }
}

/// Who holds one address of a network.
#[pyclass(frozen, eq, hash, module = "vman", name = "Allocation")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyAllocation {
    #[pyo3(get)]
    network: String,
    #[pyo3(get)]
    ip: String,
    #[pyo3(get)]
    mac: String,
    #[pyo3(get)]
    vm_id: String,
    #[pyo3(get)]
    vm_name: String,
    #[pyo3(get)]
    nic_index: u32,
}

impl From<vman_core::Allocation> for PyAllocation {
    fn from(a: vman_core::Allocation) -> Self {
        PyAllocation {
            network: a.network,
            ip: a.ip.to_string(),
            mac: a.mac.to_string(),
            vm_id: a.vm_id,
            vm_name: a.vm_name,
            nic_index: a.nic_index,
        }
    }
}

#[pymethods]
impl PyAllocation {
    fn __repr__(&self) -> String {
        format!("Allocation(network={:?}, ip={:?}, vm_name={:?}, nic_index={})", self.network, self.ip, self.vm_name, self.nic_index)
    }
}

/// One entry of the event history.
#[pyclass(frozen, eq, hash, module = "vman", name = "Event")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyEvent {
    #[pyo3(get)]
    id: i64,
    #[pyo3(get)]
    at_ms: i64,
    #[pyo3(get)]
    object_kind: &'static str,
    #[pyo3(get)]
    object_id: String,
    #[pyo3(get)]
    object_name: String,
    #[pyo3(get)]
    action: String,
    /// Action-specific details as a JSON object string: canonical (keys
    /// sorted, no spaces), so equal details compare and hash equal.
    #[pyo3(get)]
    details_json: String,
    #[pyo3(get)]
    os_user: String,
    #[pyo3(get)]
    pid: u32,
}

impl From<vman_core::Event> for PyEvent {
    fn from(e: vman_core::Event) -> Self {
        PyEvent {
            id: e.id,
            at_ms: e.at_ms,
            object_kind: e.object_kind.as_str(),
            object_id: e.object_id,
            object_name: e.object_name,
            action: e.action,
            details_json: e.details.to_string(),
            os_user: e.os_user,
            pid: e.pid,
        }
    }
}

#[pymethods]
impl PyEvent {
    /// The details parsed into a dict.
    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.details_json.as_str(),))
    }

    fn __repr__(&self) -> String {
        format!("Event(id={}, {} {:?} {})", self.id, self.object_kind, self.object_name, self.action)
    }
}

/// One difference between the store and reality, and what was done.
#[pyclass(frozen, eq, hash, module = "vman", name = "Drift")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyDrift {
    #[pyo3(get)]
    vm: String,
    #[pyo3(get)]
    found: String,
    #[pyo3(get)]
    action: String,
}

#[pymethods]
impl PyDrift {
    fn __repr__(&self) -> String {
        format!("Drift(vm={:?}, found={:?}, action={:?})", self.vm, self.found, self.action)
    }
}

/// What `Manager.reconcile()` found and did.
#[pyclass(frozen, eq, hash, module = "vman", name = "ReconcileReport")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyReconcileReport {
    #[pyo3(get)]
    drifts: Vec<PyDrift>,
    #[pyo3(get)]
    adopted: Vec<String>,
}

impl From<vman_core::ReconcileReport> for PyReconcileReport {
    fn from(r: vman_core::ReconcileReport) -> Self {
        let drifts = r.drifts.into_iter().map(|d| PyDrift { vm: d.vm, found: d.found, action: d.action }).collect();
        PyReconcileReport { drifts, adopted: r.adopted }
    }
}

#[pymethods]
impl PyReconcileReport {
    fn __repr__(&self) -> String {
        format!("ReconcileReport(drifts={}, adopted={:?})", self.drifts.len(), self.adopted)
    }
}
