//! Frozen record classes: snapshots of what the store held when read.
//!
//! Each compares and hashes by value (`eq, hash`): two reads of an
//! unchanged object are equal and can key a dict or sit in a set.

use pyo3::prelude::*;

/// A size template.
#[pyclass(frozen, eq, hash, module = "vman", name = "Template")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyTemplate {
    /// The store's id, never reused after a delete.
    #[pyo3(get)]
    id: i64,
    /// The template's name, unique in the state directory.
    #[pyo3(get)]
    name: String,
    /// Virtual CPUs of each VM made from it, 1 to 255.
    #[pyo3(get)]
    vcpus: u32,
    /// Guest memory in MiB, 16 to 4 Mi (4 TiB).
    #[pyo3(get)]
    memory_mib: u64,
    /// Root disk size in GiB (a VM's boot disk from an image, or its blank disk), 1 to 64 Ki.
    #[pyo3(get)]
    disk_gib: u64,
    /// Free text for people; may be empty.
    #[pyo3(get)]
    description: String,
    /// When it was created, in Unix milliseconds.
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
    /// The store's id, never reused after a delete.
    #[pyo3(get)]
    id: i64,
    /// The network's name, unique in the state directory.
    #[pyo3(get)]
    name: String,
    /// Its 802.1Q VLAN id, 1 to 4094, unique in the state directory.
    #[pyo3(get)]
    vlan: u16,
    /// Its subnet, e.g. ``"10.100.0.0/24"`` (/8 to /30), overlapping no other network's.
    #[pyo3(get)]
    cidr: String,
    /// Its gateway address: a host of ``cidr`` never handed to a VM.
    #[pyo3(get)]
    gateway: String,
    /// Address ranges never handed out (``"10.0.0.10-10.0.0.19"`` or single addresses), sorted and
    /// merged.
    #[pyo3(get)]
    reserved: Vec<String>,
    /// DNS servers the DHCP server of a bridged network offers guests, in the order given.
    #[pyo3(get)]
    dns: Vec<String>,
    /// The host interface whose ``<uplink>.<vlan>`` joins the bridge, or None.
    #[pyo3(get)]
    uplink: Option<String>,
    /// When it was created, in Unix milliseconds.
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
    /// Position on the VM, from 0; the guest sees NICs in this order.
    #[pyo3(get)]
    index: u32,
    /// The name of its network.
    #[pyo3(get)]
    network: String,
    /// The network's VLAN id.
    #[pyo3(get)]
    vlan: u16,
    /// Its address, held on the network until the VM is deleted.
    #[pyo3(get)]
    ip: String,
    /// The network's prefix length (8 to 30): the guest's netmask.
    #[pyo3(get)]
    prefix_len: u8,
    /// The network's gateway: the guest's default route.
    #[pyo3(get)]
    gateway: String,
    /// Its MAC address (``52:54:00:..``), unique in the state directory.
    #[pyo3(get)]
    mac: String,
    /// The host tap of this NIC while the VM runs bridged, else None.
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
    /// The index of the NIC whose user-mode network carries the forward.
    #[pyo3(get)]
    nic_index: u32,
    /// The TCP port in the guest (22: SSH).
    #[pyo3(get)]
    guest_port: u16,
    /// Always ``"127.0.0.1"``: forwards are reachable from this host only.
    #[pyo3(get)]
    host_address: String,
    /// The TCP port on ``host_address``, chosen from the free ones at each start.
    #[pyo3(get)]
    host_port: u16,
}

#[pymethods]
impl PyPortForward {
    fn __repr__(&self) -> String {
        format!("PortForward({}:{} -> nic{}:{})", self.host_address, self.host_port, self.nic_index, self.guest_port)
    }
}

// It keeps the core record and converts a field when it is read: a list of
// 10,000 VMs whose caller reads two fields of each does not pay for every
// field's Python copy (nor for the strings of addresses it never reads).
/// A VM record.
#[pyclass(frozen, eq, hash, module = "vman", name = "Vm")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyVm(vman_core::Vm);

impl From<vman_core::Vm> for PyVm {
    fn from(v: vman_core::Vm) -> Self {
        PyVm(v)
    }
}

impl From<&vman_core::Nic> for PyNic {
    fn from(n: &vman_core::Nic) -> Self {
        PyNic {
            index: n.index,
            network: n.network.clone(),
            vlan: n.vlan,
            ip: n.ip.to_string(),
            prefix_len: n.prefix_len,
            gateway: n.gateway.to_string(),
            mac: n.mac.to_string(),
            host_interface: n.host_interface.clone(),
        }
    }
}

impl From<&vman_core::PortForward> for PyPortForward {
    fn from(f: &vman_core::PortForward) -> Self {
        PyPortForward { nic_index: f.nic_index, guest_port: f.guest_port, host_address: f.host_address.to_string(), host_port: f.host_port }
    }
}

#[pymethods]
impl PyVm {
    /// A UUIDv7: unique forever, sorts by creation time. Names a deleted VM's history.
    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }

    /// The VM's name, unique among live VMs; freed when it is deleted.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// The template it was made from (its sizes were copied into the VM).
    #[getter]
    fn template(&self) -> &str {
        &self.0.template
    }

    /// Virtual CPUs, copied from the template.
    #[getter]
    fn vcpus(&self) -> u32 {
        self.0.vcpus
    }

    /// Guest memory in MiB, copied from the template.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.memory_mib
    }

    /// Root disk size in GiB, copied from the template.
    #[getter]
    fn disk_gib(&self) -> u64 {
        self.0.disk_gib
    }

    /// Where the VM is in its lifecycle: one of :data:`vman.VM_STATES` (``"created"``, ``"running"``…).
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.as_str()
    }

    /// Its NICs (:class:`vman.Nic`), in slot order.
    #[getter]
    fn nics(&self) -> Vec<PyNic> {
        self.0.nics.iter().map(PyNic::from).collect()
    }

    /// The kernel QEMU boots directly, or None (the firmware boots a disk or CD).
    #[getter]
    fn kernel(&self) -> Option<&str> {
        self.0.boot.as_ref().map(|b| b.kernel.as_str())
    }

    /// The initrd given with ``kernel``, or None.
    #[getter]
    fn initrd(&self) -> Option<&str> {
        self.0.boot.as_ref().and_then(|b| b.initrd.as_deref())
    }

    /// The kernel command line given with ``kernel``, or None.
    #[getter]
    fn cmdline(&self) -> Option<&str> {
        self.0.boot.as_ref().map(|b| b.cmdline.as_str())
    }

    /// The QEMU process id while the VM has one, else None.
    #[getter]
    fn pid(&self) -> Option<u32> {
        self.0.pid
    }

    /// The accelerator QEMU runs (or last ran) with: ``"kvm"`` or ``"tcg"``; None before the first
    /// start.
    #[getter]
    fn accel(&self) -> Option<&str> {
        self.0.accel.as_deref()
    }

    /// Why the last start failed or QEMU died, or None.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// Host ports forwarded to the guest (user-mode networking) while it runs:
    /// :class:`vman.PortForward`.
    #[getter]
    fn port_forwards(&self) -> Vec<PyPortForward> {
        self.0.port_forwards.iter().map(PyPortForward::from).collect()
    }

    /// ``"bios"`` (SeaBIOS) or ``"uefi"`` (OVMF).
    #[getter]
    fn firmware(&self) -> &'static str {
        self.0.firmware.as_str()
    }

    /// The ISO in its CD-ROM drive, or None.
    #[getter]
    fn cdrom(&self) -> Option<&str> {
        self.0.cdrom.as_deref()
    }

    /// Whether it boots from the CD-ROM before its disk.
    #[getter]
    fn boot_from_cdrom(&self) -> bool {
        self.0.boot_from_cdrom
    }

    /// Its graphical console: ``"none"``, ``"vnc-unix"`` or ``"vnc-tcp"``.
    #[getter]
    fn display(&self) -> &'static str {
        self.0.display.as_str()
    }

    /// Where its VNC server listens while it runs (``"unix:<path>"`` or ``"127.0.0.1:<port>"``), else
    /// None.
    #[getter]
    fn display_address(&self) -> Option<&str> {
        self.0.display_address.as_deref()
    }

    /// Whether it gets a cloud-init NoCloud seed at each start.
    #[getter]
    fn cloud_init(&self) -> bool {
        self.0.cloud_init
    }

    /// The caller's own cloud-init user-data merged into the seed, or None.
    #[getter]
    fn user_data(&self) -> Option<&str> {
        self.0.user_data.as_deref()
    }

    /// Its own copies of the SSH keys it was given (:class:`vman.VmSshKey`), in the order given.
    #[getter]
    fn ssh_keys(&self) -> Vec<PyVmSshKey> {
        self.0.ssh_keys.iter().cloned().map(PyVmSshKey::from).collect()
    }

    /// When it was created, in Unix milliseconds.
    #[getter]
    fn created_at_ms(&self) -> i64 {
        self.0.created_at_ms
    }

    /// When its state last changed (at first, when it was created), in Unix milliseconds.
    #[getter]
    fn updated_at_ms(&self) -> i64 {
        self.0.updated_at_ms
    }

    fn __repr__(&self) -> String {
        let ips: Vec<String> = self.0.nics.iter().map(|n| n.ip.to_string()).collect();
        let pid = self.0.pid.map_or(String::new(), |p| format!(", pid={p}"));
        format!("Vm(name={:?}, state={:?}, template={:?}, ips={:?}{pid})", self.0.name, self.0.state.as_str(), self.0.template, ips)
    }
}

/// A disk: a file under the state directory (or a caller's, used in
/// place) that VMs attach.
#[pyclass(frozen, eq, hash, module = "vman", name = "Disk")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyDisk {
    /// The store's id, never reused.
    #[pyo3(get)]
    id: i64,
    /// Its name, unique among disks.
    #[pyo3(get)]
    name: String,
    /// ``"qcow2"`` or ``"raw"``.
    #[pyo3(get)]
    format: &'static str,
    /// The size the guest sees, in bytes.
    #[pyo3(get)]
    size_bytes: u64,
    /// The file's absolute path.
    #[pyo3(get)]
    path: String,
    /// Whether vman owns the file (made or copied in; removed with the disk) or uses a caller's file in
    /// place (never removed).
    #[pyo3(get)]
    owned: bool,
    /// For a linked clone, the name of the base image under it, else None.
    #[pyo3(get)]
    image: Option<String>,
    /// Where it is in its life: one of :data:`vman.DISK_STATES` (``"available"``, ``"attached"``…).
    #[pyo3(get)]
    state: &'static str,
    /// The name of the VM it is attached to, or None.
    #[pyo3(get)]
    vm: Option<String>,
    /// Its position on that VM, from 0 (the guest's device order follows it), or None.
    #[pyo3(get)]
    slot: Option<u32>,
    /// Made with its VM (a boot disk): deleted when the VM is.
    #[pyo3(get)]
    delete_with_vm: bool,
    /// Why the last operation on it failed, or None.
    #[pyo3(get)]
    last_error: Option<String>,
    /// When it was created, in Unix milliseconds.
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
    /// The store's id, never reused.
    #[pyo3(get)]
    id: i64,
    /// Its name, unique among images.
    #[pyo3(get)]
    name: String,
    /// The guest OS, free text (``"debian-12"``).
    #[pyo3(get)]
    os: String,
    /// The guest architecture (``"x86_64"``).
    #[pyo3(get)]
    arch: String,
    /// Free text for people.
    #[pyo3(get)]
    description: String,
    /// ``"qcow2"`` or ``"raw"``.
    #[pyo3(get)]
    format: &'static str,
    /// The size the guest sees, in bytes.
    #[pyo3(get)]
    virtual_size: u64,
    /// SHA-256 of the file as registered, lower-case hex.
    #[pyo3(get)]
    sha256: String,
    /// The firmware its VMs need: ``"bios"`` or ``"uefi"``.
    #[pyo3(get)]
    firmware: &'static str,
    /// The file's absolute path.
    #[pyo3(get)]
    path: String,
    /// Copied in (removed with the image) or used in place (never removed).
    #[pyo3(get)]
    owned: bool,
    /// When it was registered, in Unix milliseconds.
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
    /// The store's id, never reused.
    #[pyo3(get)]
    id: i64,
    /// The VM's name.
    #[pyo3(get)]
    vm: String,
    /// The snapshot's name, unique per VM.
    #[pyo3(get)]
    name: String,
    /// Taken while the VM ran: it holds the guest's memory too, and a revert of a running VM resumes it
    /// there.
    #[pyo3(get)]
    live: bool,
    /// ``"ready"``, or an intent a crash left: ``"creating"``, ``"reverting"``, ``"deleting"``,
    /// ``"error"``.
    #[pyo3(get)]
    state: String,
    /// When it was taken, in Unix milliseconds.
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
    /// The store's id, never reused after a delete.
    #[pyo3(get)]
    id: i64,
    /// The key's name, unique in the catalogue.
    #[pyo3(get)]
    name: String,
    /// Its type: ``"ssh-ed25519"``, ``"ecdsa-sha2-nistp256"`` (-384, -521) or ``"ssh-rsa"``.
    #[pyo3(get)]
    key_type: &'static str,
    /// Its size as ``ssh-keygen -l`` prints it (256 for ed25519, the curve's size for ECDSA, the
    /// modulus's bits for RSA).
    #[pyo3(get)]
    bits: u32,
    /// The normalized key line (``type base64 [comment]``): the line to put in ``authorized_keys``.
    #[pyo3(get)]
    public_key: String,
    /// The comment of the imported line (``""`` when it had none).
    #[pyo3(get)]
    comment: String,
    /// ``SHA256:`` and the unpadded base64 SHA-256 of the key, as ``ssh-keygen -l -E sha256`` prints
    /// it.
    #[pyo3(get)]
    fingerprint_sha256: String,
    /// ``MD5:`` and the MD5 of the key as colon-separated hex, as ``ssh-keygen -l -E md5`` prints it.
    #[pyo3(get)]
    fingerprint_md5: String,
    /// When it was imported, in Unix milliseconds.
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
    /// The key's name in the catalogue when the VM was given it.
    #[pyo3(get)]
    name: String,
    /// The key line, as the guest gets it.
    #[pyo3(get)]
    public_key: String,
    /// ``SHA256:`` and the unpadded base64 SHA-256 of the key.
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
    /// The network's name.
    #[pyo3(get)]
    network: String,
    /// The address held.
    #[pyo3(get)]
    ip: String,
    /// The MAC of the NIC that holds it.
    #[pyo3(get)]
    mac: String,
    /// The holding VM's id (:attr:`vman.Vm.id`).
    #[pyo3(get)]
    vm_id: String,
    /// The holding VM's name.
    #[pyo3(get)]
    vm_name: String,
    /// The holding NIC's index on its VM.
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
    /// Increases with every event in a state directory: commit order. Resume a subscription after it.
    #[pyo3(get)]
    id: i64,
    /// When it happened, in Unix milliseconds.
    #[pyo3(get)]
    at_ms: i64,
    /// What it is about: ``"template"``, ``"network"``, ``"vm"``, ``"disk"``, ``"image"``,
    /// ``"ssh_key"``, ``"setting"`` or ``"batch"``.
    #[pyo3(get)]
    object_kind: &'static str,
    /// The object's id: a VM's UUID, the others' numeric id as text.
    #[pyo3(get)]
    object_id: String,
    /// The object's name when the event was written (a deleted VM's name may since belong to another
    /// VM).
    #[pyo3(get)]
    object_name: String,
    /// What happened: ``"created"``, ``"deleted"``, ``"state_changed"``, ``"forced"``, ``"cancelled"``…
    #[pyo3(get)]
    action: String,
    /// Action-specific details as a JSON object string: canonical (keys
    /// sorted, no spaces), so equal details compare and hash equal.
    #[pyo3(get)]
    details_json: String,
    /// The OS user that made the change.
    #[pyo3(get)]
    os_user: String,
    /// The id of the process that made the change.
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
    /// The VM (or other object) concerned, by name.
    #[pyo3(get)]
    vm: String,
    /// What the reconciler found, in words.
    #[pyo3(get)]
    found: String,
    /// What it did about it, in words.
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
    /// Every difference found between the store and reality, with what was done (:class:`vman.Drift`);
    /// empty when all agreed.
    #[pyo3(get)]
    drifts: Vec<PyDrift>,
    /// The VMs whose running QEMU this manager took over (proved and now watches).
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
