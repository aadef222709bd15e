//! `vman.Manager`: the Python face of `vman_core::Manager`.
//!
//! Each method extracts its arguments, releases the GIL around the core call
//! (which may wait on disk, locks or QEMU), and maps the result.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use vman_core::convert::seconds_arg;
use vman_core::defaults::{BATCH_FIRST, CONSOLE_TAIL_BYTES, CONSOLE_WAIT_TIMEOUT, DETACH_TIMEOUT, HISTORY_LIMIT, STOP_TIMEOUT};
use vman_core::{
    Accel, BatchSpec, BootSpec, Cancel, DiskFilter, DiskFormat, DiskSpec, DiskState, Display, EventStream, Firmware, ImageSpec, ImportSpec,
    Manager, NetworkMode, NetworkSpec, NicSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState,
};

use crate::args::{IntArg, PathArg, SettingValue};
use crate::batch::PyBatch;
use crate::cancel::{PyCancel, SIGNAL_CHECK};
use crate::console::PyConsole;
use crate::errors::{PyVmanError, PyVmanResult};
use crate::host::{PyHostHealth, PyHostStats, PySettings};
use crate::records::{PyAllocation, PyDisk, PyEvent, PyImage, PyNetwork, PyReconcileReport, PySnapshot, PySshKey, PyTemplate, PyVm};

/// A NIC to give a new VM: on ``network``, with a fixed ``ip`` or ``mac`` if
/// given (otherwise allocated).
#[pyclass(frozen, from_py_object, eq, hash, module = "vman", name = "NicSpec")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyNicSpec {
    /// The network the NIC joins, by name.
    #[pyo3(get)]
    network: String,
    /// A fixed address on that network, or None to allocate the lowest free one.
    #[pyo3(get)]
    ip: Option<String>,
    /// A fixed MAC, or None for a fresh random ``52:54:00:..`` one.
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

/// A VM spec from `create_vm`'s keyword arguments (also each VM of a
/// batch's, with an empty name).
#[allow(clippy::too_many_arguments)]
fn vm_spec(
    name: String,
    template: String,
    nics: Option<Vec<NicArg>>,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
    image: Option<String>,
    blank_disk: bool,
    firmware: Option<&str>,
    cdrom: Option<PathArg>,
    boot_from_cdrom: bool,
    display: &str,
    cloud_init: bool,
    user_data: Option<String>,
    ssh_keys: Option<Vec<String>>,
) -> PyVmanResult<VmSpec> {
    Ok(VmSpec {
        name,
        template,
        nics: nics.unwrap_or_default().into_iter().map(NicSpec::from).collect(),
        boot: BootSpec::from_parts(kernel, initrd, cmdline)?,
        image,
        blank_disk,
        firmware: firmware.map(str::parse::<Firmware>).transpose()?,
        cdrom: cdrom.map(|p| p.get("CD-ROM image")).transpose()?,
        boot_from_cdrom,
        display: display.parse::<Display>()?,
        cloud_init,
        user_data,
        ssh_keys: ssh_keys.unwrap_or_default(),
    })
}

/// A handle on one state directory: ``Manager(state_dir, **options)``.
///
/// Opens ``state_dir`` and its database, and adopts the VMs that are still
/// running (see :meth:`reconcile`). A missing directory is created (mode
/// 0700) unless ``create`` is False, when it raises
/// :class:`vman.NotFoundError` and creates nothing.
///
/// ``accel`` (``"auto"``, ``"kvm"`` or ``"tcg"``), ``network`` (``"auto"``,
/// ``"bridged"``, ``"user"`` or ``"isolated"``), ``qemu_binary``,
/// ``dnsmasq_binary``, ``qemu_user`` (the unprivileged user QEMU runs as
/// when vman is root) and ``serial_log_cap_bytes`` ask for the directory's
/// settings (see :meth:`settings`): None takes the directory's value; a
/// value becomes the setting of a directory being made, and one that
/// differs from an existing directory's raises
/// :class:`vman.SettingConflictError` (change it with :meth:`set_setting`).
/// ``network="auto"`` asks for nothing in particular. ``busy_timeout_ms``
/// is this process's own. Raises :class:`vman.InvalidArgumentError` for a
/// bad value (before anything is created), :class:`vman.PermissionDeniedError`
/// (``"bridged"`` without CAP_NET_ADMIN), :class:`vman.DatabaseError`,
/// :class:`vman.IoError`.
///
/// Thread-safe: share one manager across threads (every call releases the
/// GIL), or open several on the same directory from several threads or
/// processes; the database serializes their writes. Closing it (or leaving
/// its ``with`` block) leaves running VMs running. Methods that wait take
/// ``cancel=`` (a :class:`vman.Cancel`) and answer Ctrl-C; see
/// docs/python.md.
///
/// >>> with vman.Manager("/var/lib/vman") as m:     # the directory's own settings
/// ...     print([vm.name for vm in m.vms()])
/// >>> vman.Manager("/srv/lab", accel="tcg").close()   # a new directory: TCG becomes its setting
#[pyclass(frozen, module = "vman", name = "Manager")]
pub(crate) struct PyManager {
    /// `None` once closed. Every call holds the read lock while it runs;
    /// `close` takes the write lock, so it waits for calls in progress. Both
    /// are taken with the GIL released: a thread waiting for the lock must
    /// not hold the GIL that a call in progress needs to return.
    inner: RwLock<Option<Manager>>,
    /// Set when `close` begins: calls fail from then on, even while it
    /// waits for the ones in progress.
    closing: AtomicBool,
    state_dir: PathBuf,
}

impl PyManager {
    /// Runs `f` on the open manager with the GIL released.
    fn call<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Manager) -> vman_core::Result<T> + Send) -> PyVmanResult<T> {
        Ok(py.detach(|| {
            if self.closing.load(Ordering::SeqCst) {
                return Err(vman_core::Error::Closed { what: "Manager" });
            }
            let guard = self.inner.read();
            let manager = guard.as_ref().ok_or(vman_core::Error::Closed { what: "Manager" })?;
            f(manager)
        })?)
    }

    /// As `call`, for a call that waits: it gets a cancellation token, a
    /// child of `cancel` if given, and is interrupted by Ctrl-C on the main
    /// thread (see `cancel::interruptible`).
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        cancel: Option<&Bound<'_, PyCancel>>,
        f: impl FnOnce(&Manager, &Cancel) -> vman_core::Result<T> + Send,
    ) -> PyResult<T> {
        crate::cancel::interruptible(py, cancel.map(Bound::get), |token| {
            if self.closing.load(Ordering::SeqCst) {
                return Err(vman_core::Error::Closed { what: "Manager" });
            }
            let guard = self.inner.read();
            let manager = guard.as_ref().ok_or(vman_core::Error::Closed { what: "Manager" })?;
            f(manager, token)
        })
    }
}

#[pymethods]
impl PyManager {
    /// See the class documentation.
    #[new]
    #[pyo3(signature = (
        state_dir, *, busy_timeout_ms=None, accel=None, qemu_binary=None, serial_log_cap_bytes=None,
        network=None, dnsmasq_binary=None, qemu_user=None, create=true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        state_dir: std::path::PathBuf,
        busy_timeout_ms: Option<IntArg>,
        accel: Option<&str>,
        qemu_binary: Option<std::path::PathBuf>,
        serial_log_cap_bytes: Option<IntArg>,
        network: Option<&str>,
        dnsmasq_binary: Option<std::path::PathBuf>,
        qemu_user: Option<&str>,
        create: bool,
    ) -> PyVmanResult<Self> {
        // Core's defaults, overridden field by field through core's checks.
        let mut options = OpenOptions::default();
        if let Some(ms) = busy_timeout_ms {
            options.set_busy_timeout_ms(ms.get("busy timeout")?)?;
        }
        if let Some(accel) = accel {
            options.set_accel(accel.parse::<Accel>()?);
        }
        if let Some(path) = qemu_binary {
            options.set_qemu_binary(path)?;
        }
        if let Some(bytes) = serial_log_cap_bytes {
            options.set_serial_log_cap_bytes(bytes.get("serial log cap")?)?;
        }
        if let Some(network) = network {
            options.set_network(network.parse::<NetworkMode>()?);
        }
        if let Some(path) = dnsmasq_binary {
            options.set_dnsmasq_binary(path)?;
        }
        if let Some(user) = qemu_user {
            options.set_qemu_user(user)?;
        }
        options.set_create(create);
        let inner = py.detach(|| Manager::open(&state_dir, &options))?;
        Ok(PyManager { state_dir: inner.state_dir().to_path_buf(), inner: RwLock::new(Some(inner)), closing: AtomicBool::new(false) })
    }

    /// The state directory (still readable after :meth:`close`).
    #[getter]
    fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// Closes the manager: every method raises :class:`vman.ClosedError` from
    /// now on, and its event streams are closed. Waits for calls in progress on
    /// other threads (Ctrl-C interrupts the wait; the manager then stays closed
    /// to new calls, and calling close again finishes). Running VMs are not
    /// affected: they keep running and the next manager adopts them. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closing.store(true, Ordering::SeqCst);
        loop {
            // Dropped with the GIL released: the drop joins the watcher
            // thread, which may be logging through Python.
            let closed = py.detach(|| self.inner.try_write_for(SIGNAL_CHECK).map(|mut guard| drop(guard.take())));
            if closed.is_some() {
                return Ok(());
            }
            py.check_signals()?;
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyVmanResult<Bound<'_, Self>> {
        slf.get().call(slf.py(), |_| Ok(()))?;
        Ok(slf)
    }

    #[pyo3(signature = (*args))]
    fn __exit__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let _ = args;
        self.close(py)
    }

    /// Creates a size template: ``vcpus`` (1-255), ``memory_mib`` (16 MiB to
    /// 4 TiB) and ``disk_gib`` (1 to 64 Ki; the size of a VM's boot disk made
    /// from an image) are copied into each VM made from it.
    ///
    /// Raises :class:`vman.InvalidArgumentError` (a bad name or size; nothing
    /// is recorded), :class:`vman.AlreadyExistsError` (the name is taken).
    ///
    /// >>> m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
    /// Template(name="small", vcpus=1, memory_mib=512, disk_gib=10)
    #[pyo3(signature = (name, *, vcpus, memory_mib, disk_gib, description=None))]
    fn create_template(
        &self,
        py: Python<'_>,
        name: String,
        vcpus: IntArg,
        memory_mib: IntArg,
        disk_gib: IntArg,
        description: Option<String>,
    ) -> PyVmanResult<PyTemplate> {
        let spec = TemplateSpec {
            name,
            vcpus: vcpus.get("vcpus")?,
            memory_mib: memory_mib.get("memory")?,
            disk_gib: disk_gib.get("disk size")?,
            description: description.unwrap_or_default(),
        };
        Ok(self.call(py, |m| m.create_template(&spec))?.into())
    }

    /// The template named ``name``; :class:`vman.NotFoundError` if there is none.
    fn template(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyTemplate> {
        Ok(self.call(py, |m| m.template(name))?.into())
    }

    /// All templates, by name.
    fn templates(&self, py: Python<'_>) -> PyVmanResult<Vec<PyTemplate>> {
        Ok(self.call(py, |m| m.templates())?.into_iter().map(Into::into).collect())
    }

    /// Deletes a template. Raises :class:`vman.InUseError` while a live VM was
    /// made from it, :class:`vman.NotFoundError` if there is none.
    fn delete_template(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_template(name))
    }

    /// Creates a VLAN network and its address pool.
    ///
    /// ``vlan`` is the 802.1Q id (1-4094), ``cidr`` the subnet (/8 to /30,
    /// overlapping no other network's). ``gateway`` defaults to the subnet's
    /// first host; ``reserved`` lists addresses or ``"first-last"`` ranges never
    /// handed out; ``dns`` the servers a bridged network's DHCP offers; ``uplink``
    /// a host interface whose ``<uplink>.<vlan>`` joins the VLAN's bridge.
    ///
    /// Raises :class:`vman.InvalidArgumentError` (a bad value),
    /// :class:`vman.AlreadyExistsError` (the name or VLAN id is taken, or the
    /// subnet overlaps another network's), :class:`vman.UnsupportedError` (an
    /// uplink on a host without 802.1Q).
    ///
    /// >>> m.create_network("lan", vlan=100, cidr="10.100.0.0/24", reserved=["10.100.0.2-10.100.0.9"])
    /// Network(name="lan", vlan=100, cidr="10.100.0.0/24", gateway="10.100.0.1")
    #[pyo3(signature = (name, *, vlan, cidr, gateway=None, reserved=None, dns=None, uplink=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_network(
        &self,
        py: Python<'_>,
        name: String,
        vlan: IntArg,
        cidr: String,
        gateway: Option<String>,
        reserved: Option<Vec<String>>,
        dns: Option<Vec<String>>,
        uplink: Option<String>,
    ) -> PyVmanResult<PyNetwork> {
        let spec = NetworkSpec {
            name,
            vlan: vlan.get("VLAN id")?,
            cidr,
            gateway,
            reserved: reserved.unwrap_or_default(),
            dns: dns.unwrap_or_default(),
            uplink,
        };
        Ok(self.call(py, |m| m.create_network(&spec))?.into())
    }

    /// The network named ``name``; :class:`vman.NotFoundError` if there is none.
    fn network(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyNetwork> {
        Ok(self.call(py, |m| m.network(name))?.into())
    }

    /// All networks, by VLAN id.
    fn networks(&self, py: Python<'_>) -> PyVmanResult<Vec<PyNetwork>> {
        Ok(self.call(py, |m| m.networks())?.into_iter().map(Into::into).collect())
    }

    /// Deletes a network. Raises :class:`vman.InUseError` while any address on
    /// it is allocated (delete its VMs first), :class:`vman.NotFoundError` if
    /// there is none.
    fn delete_network(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_network(name))
    }

    /// Who holds which address of ``network``, in address order: a list of
    /// :class:`vman.Allocation`. :class:`vman.NotFoundError` if there is no such
    /// network.
    fn allocations(&self, py: Python<'_>, network: &str) -> PyVmanResult<Vec<PyAllocation>> {
        Ok(self.call(py, |m| m.allocations(network))?.into_iter().map(Into::into).collect())
    }

    /// Imports an OpenSSH public key line (``"type base64 [comment]"``, as in a
    /// ``.pub`` file) under ``name``: ssh-ed25519, ecdsa-sha2-nistp256, -384 or
    /// -521, or ssh-rsa of 2048 bits or more. VMs are given keys by name in
    /// :meth:`create_vm`.
    ///
    /// Raises :class:`vman.InvalidArgumentError` for a malformed, truncated,
    /// weak, DSA or private key (saying which), :class:`vman.AlreadyExistsError`
    /// for a taken name.
    ///
    /// >>> m.import_ssh_key("alice", open("/home/alice/.ssh/id_ed25519.pub").read())
    fn import_ssh_key(&self, py: Python<'_>, name: &str, public_key: &str) -> PyVmanResult<PySshKey> {
        Ok(self.call(py, |m| m.import_ssh_key(name, public_key))?.into())
    }

    /// The SSH key named ``name``; :class:`vman.NotFoundError` if there is none.
    fn ssh_key(&self, py: Python<'_>, name: &str) -> PyVmanResult<PySshKey> {
        Ok(self.call(py, |m| m.ssh_key(name))?.into())
    }

    /// The SSH key catalogue, by name.
    fn ssh_keys(&self, py: Python<'_>) -> PyVmanResult<Vec<PySshKey>> {
        Ok(self.call(py, |m| m.ssh_keys())?.into_iter().map(Into::into).collect())
    }

    /// Deletes a key from the catalogue; VMs given it keep their own copies.
    /// :class:`vman.NotFoundError` if there is none.
    fn delete_ssh_key(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_ssh_key(name))
    }

    /// Records a VM (it is not started: see :meth:`start`).
    ///
    /// - ``template`` names its size template.
    /// - ``nics``: each a network name or a :class:`vman.NicSpec` (a fixed
    ///   address or MAC); every address is allocated in one transaction, or none.
    /// - What it boots: ``kernel`` (with ``initrd`` and ``cmdline``) boots that
    ///   Linux kernel directly; ``image`` gives it a boot disk that is a linked
    ///   clone of that registered image, ``blank_disk`` an empty one (both sized
    ///   by the template); ``cdrom`` puts an ISO in its CD-ROM drive
    ///   (``boot_from_cdrom``: boot from it first). ``firmware`` (``"bios"`` or
    ///   ``"uefi"``) is by default the image's, else ``"bios"``.
    /// - ``display``: ``"none"`` (serial console only), ``"vnc-unix"`` or
    ///   ``"vnc-tcp"``.
    /// - ``cloud_init``: a NoCloud seed at each start (hostname, network config,
    ///   its SSH keys), with ``user_data`` (a ``#cloud-config`` document) merged
    ///   in. ``ssh_keys`` names keys of the catalogue; the VM keeps its own copies.
    ///
    /// Raises :class:`vman.InvalidArgumentError` (a bad name, address, MAC or
    /// option; nothing recorded), :class:`vman.NotFoundError` (the template,
    /// a network, the image or a key), :class:`vman.AlreadyExistsError` (the
    /// name, a fixed address or MAC is taken), :class:`vman.ExhaustedError` (a
    /// network has no free address), :class:`vman.IoError` (the boot disk could
    /// not be made; the VM is removed again).
    ///
    /// >>> vm = m.create_vm("web1", template="small", nics=["lan", vman.NicSpec("lan", ip="10.100.0.50")],
    /// ...                  kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=ttyS0")
    /// >>> [nic.ip for nic in vm.nics]
    /// ['10.100.0.10', '10.100.0.50']
    #[pyo3(signature = (
        name, *, template, nics=None, kernel=None, initrd=None, cmdline=None, image=None, blank_disk=false,
        firmware=None, cdrom=None, boot_from_cdrom=false, display=Display::default().as_str(), cloud_init=false, user_data=None,
        ssh_keys=None,
    ), text_signature = "($self, name, *, template, nics=None, kernel=None, initrd=None, cmdline=None, image=None, \
        blank_disk=False, firmware=None, cdrom=None, boot_from_cdrom=False, display='none', cloud_init=False, user_data=None, \
        ssh_keys=None)")]
    #[allow(clippy::too_many_arguments)]
    fn create_vm(
        &self,
        py: Python<'_>,
        name: String,
        template: String,
        nics: Option<Vec<NicArg>>,
        kernel: Option<String>,
        initrd: Option<String>,
        cmdline: Option<String>,
        image: Option<String>,
        blank_disk: bool,
        firmware: Option<&str>,
        cdrom: Option<PathArg>,
        boot_from_cdrom: bool,
        display: &str,
        cloud_init: bool,
        user_data: Option<String>,
        ssh_keys: Option<Vec<String>>,
    ) -> PyVmanResult<PyVm> {
        let spec = vm_spec(
            name,
            template,
            nics,
            kernel,
            initrd,
            cmdline,
            image,
            blank_disk,
            firmware,
            cdrom,
            boot_from_cdrom,
            display,
            cloud_init,
            user_data,
            ssh_keys,
        )?;
        Ok(self.call(py, |m| m.create_vm(&spec))?.into())
    }

    /// The live VM named ``name`` as it is now; :class:`vman.NotFoundError` if there is none.
    fn vm(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.vm(name))?.into())
    }

    /// Live VMs by name; only those in ``state`` (one of :data:`vman.VM_STATES`)
    /// or whose name starts with ``name_prefix``, if given.
    #[pyo3(signature = (*, state=None, name_prefix=None))]
    fn vms(&self, py: Python<'_>, state: Option<&str>, name_prefix: Option<String>) -> PyVmanResult<Vec<PyVm>> {
        let filter = VmFilter { state: state.map(str::parse::<VmState>).transpose()?, name_prefix };
        Ok(self.call(py, |m| m.vms(&filter))?.into_iter().map(Into::into).collect())
    }

    /// Soft-deletes a VM: frees its name, releases its addresses, deletes the
    /// boot disk made with it (detaching the others) and keeps its history (see
    /// :meth:`vm_history` with its id). A VM with a running QEMU raises
    /// :class:`vman.InvalidStateError` unless ``force=True``, which stops it at
    /// once first.
    #[pyo3(signature = (name, *, force=false))]
    fn delete_vm(&self, py: Python<'_>, name: &str, force: bool) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_vm(name, force))
    }

    /// Creates an empty disk of ``size_bytes`` bytes (at least one MiB, a
    /// multiple of 512) under the state directory, ``format`` ``"qcow2"`` or
    /// ``"raw"``. Raises :class:`vman.InvalidArgumentError`,
    /// :class:`vman.AlreadyExistsError`, :class:`vman.IoError`.
    #[pyo3(signature = (name, size_bytes, *, format=DiskFormat::default().as_str()),
           text_signature = "($self, name, size_bytes, *, format='qcow2')")]
    fn create_disk(&self, py: Python<'_>, name: String, size_bytes: IntArg, format: &str) -> PyVmanResult<PyDisk> {
        let spec = DiskSpec { name, size_bytes: size_bytes.get("disk size")?, format: format.parse::<DiskFormat>()? };
        Ok(self.call(py, |m| m.create_disk(&spec))?.into())
    }

    /// Makes a disk of an existing image file (an absolute path; not a device
    /// node, not through a symlink): copied into the state directory, or with
    /// ``copy=False`` used in place, which must be inside it. ``format`` None
    /// probes it (an image naming a backing file is then refused). Raises
    /// :class:`vman.InvalidArgumentError`, :class:`vman.AlreadyExistsError`,
    /// :class:`vman.IoError`.
    #[pyo3(signature = (name, source, *, format=None, copy=true))]
    fn import_disk(&self, py: Python<'_>, name: String, source: PathArg, format: Option<&str>, copy: bool) -> PyVmanResult<PyDisk> {
        let spec = ImportSpec { name, source: source.get("disk source")?, format: format.map(str::parse::<DiskFormat>).transpose()?, copy };
        Ok(self.call(py, |m| m.import_disk(&spec))?.into())
    }

    /// The disk named ``name``; :class:`vman.NotFoundError` if there is none.
    fn disk(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyDisk> {
        Ok(self.call(py, |m| m.disk(name))?.into())
    }

    /// Disks by name; only those attached to VM ``vm``, or in ``state`` (one of :data:`vman.DISK_STATES`), if given.
    #[pyo3(signature = (*, vm=None, state=None))]
    fn disks(&self, py: Python<'_>, vm: Option<String>, state: Option<&str>) -> PyVmanResult<Vec<PyDisk>> {
        let filter = DiskFilter { vm, state: state.map(str::parse::<DiskState>).transpose()? };
        Ok(self.call(py, |m| m.disks(&filter))?.into_iter().map(Into::into).collect())
    }

    /// Deletes a disk attached to no VM, and its file if vman owns it. Raises
    /// :class:`vman.InvalidStateError` while it is attached.
    fn delete_disk(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_disk(name))
    }

    /// Grows a disk to ``size_bytes`` (live while its VM runs: the guest sees it
    /// at once). Shrinking loses data past the new end, so it needs
    /// ``force=True`` and a VM that does not run (:class:`vman.UnsupportedError`
    /// otherwise).
    #[pyo3(signature = (name, size_bytes, *, force=false))]
    fn resize_disk(&self, py: Python<'_>, name: &str, size_bytes: IntArg, force: bool) -> PyVmanResult<PyDisk> {
        let size_bytes = size_bytes.get("disk size")?;
        Ok(self.call(py, |m| m.resize_disk(name, size_bytes, force))?.into())
    }

    /// Attaches an available disk to a VM at its lowest free slot: part of its
    /// next start, or hot-plugged into its running QEMU (the guest sees a new
    /// virtio disk). Raises :class:`vman.InvalidStateError` (the disk is not
    /// available), :class:`vman.InvalidArgumentError` (the VM has all its disks).
    fn attach_disk(&self, py: Python<'_>, vm: &str, disk: &str) -> PyVmanResult<PyDisk> {
        Ok(self.call(py, |m| m.attach_disk(vm, disk))?.into())
    }

    /// Detaches a disk from VM ``vm``. From a running VM the guest is asked to
    /// release it and given ``timeout`` seconds; if it does not,
    /// :class:`vman.TimeoutError` is raised and the disk stays attached (the
    /// request stands: the next detach or :meth:`reconcile` completes it once
    /// the guest lets go).
    ///
    /// ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C end the wait the same way
    /// as a timeout: the disk stays attached; :class:`vman.CancelledError` or
    /// :class:`KeyboardInterrupt` is raised.
    #[pyo3(signature = (vm, disk, timeout=DETACH_TIMEOUT.as_secs_f64(), *, cancel=None),
           text_signature = "($self, vm, disk, timeout=30.0, *, cancel=None)")]
    fn detach_disk(&self, py: Python<'_>, vm: &str, disk: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyDisk> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.detach_disk_cancellable(vm, disk, timeout, c))?.into())
    }

    /// Registers a base image: an absolute path to a regular file, whose format
    /// and size are read and SHA-256 computed, and which is copied in (unless
    /// ``copy=False``: used in place, inside the state directory). VMs boot from
    /// linked clones of it (:meth:`create_vm` with ``image=``); its file is never
    /// written. ``firmware`` says what its VMs need. Raises
    /// :class:`vman.InvalidArgumentError`, :class:`vman.AlreadyExistsError`,
    /// :class:`vman.IoError`.
    ///
    /// >>> m.register_image("debian-12", "/srv/images/debian-12.qcow2", os="debian-12", firmware="uefi")
    #[pyo3(signature = (
        name, source, *, os=String::new(), arch=ImageSpec::new("", "").arch, description=String::new(),
        firmware=Firmware::default().as_str(), format=None, copy=true,
    ), text_signature = "($self, name, source, *, os='', arch='x86_64', description='', firmware='bios', format=None, copy=True)")]
    #[allow(clippy::too_many_arguments)]
    fn register_image(
        &self,
        py: Python<'_>,
        name: String,
        source: PathArg,
        os: String,
        arch: String,
        description: String,
        firmware: &str,
        format: Option<&str>,
        copy: bool,
    ) -> PyVmanResult<PyImage> {
        let file =
            ImportSpec { name, source: source.get("image source")?, format: format.map(str::parse::<DiskFormat>).transpose()?, copy };
        let spec = ImageSpec { file, os, arch, description, firmware: firmware.parse::<Firmware>()? };
        Ok(self.call(py, |m| m.register_image(&spec))?.into())
    }

    /// The image named ``name``; :class:`vman.NotFoundError` if there is none.
    fn image(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyImage> {
        Ok(self.call(py, |m| m.image(name))?.into())
    }

    /// Every registered image, by name.
    fn images(&self, py: Python<'_>) -> PyVmanResult<Vec<PyImage>> {
        Ok(self.call(py, |m| m.images())?.into_iter().map(Into::into).collect())
    }

    /// Removes an image from the catalogue (and its file, if copied in); raises
    /// :class:`vman.InUseError` while a disk is cloned from it.
    fn delete_image(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_image(name))
    }

    /// Takes snapshot ``name`` of every disk of VM ``vm`` (all qcow2): of a
    /// stopped VM with qemu-img, of a running or paused one with a QMP job that
    /// saves its memory too (the guest pauses meanwhile).
    ///
    /// Raises :class:`vman.AlreadyExistsError`, :class:`vman.UnsupportedError`
    /// (a raw disk), :class:`vman.InvalidStateError` (no disk, or starting or
    /// stopping); nothing is left behind. Cancelled (``cancel`` or Ctrl-C) while
    /// it is taken, the snapshot is finished and removed again:
    /// :class:`vman.CancelledError` (or :class:`KeyboardInterrupt`) means no
    /// snapshot.
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn create_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PySnapshot> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.create_snapshot_cancellable(vm, name, c))?.into())
    }

    /// VM ``vm``'s snapshots, oldest first.
    fn snapshots(&self, py: Python<'_>, vm: &str) -> PyVmanResult<Vec<PySnapshot>> {
        Ok(self.call(py, |m| m.snapshots(vm))?.into_iter().map(Into::into).collect())
    }

    /// Brings VM ``vm``'s disks back to snapshot ``name``: a stopped VM to any,
    /// a running one (memory too: the guest resumes where it was) only to a live
    /// one; reverting a running guest's disks to a disk-only snapshot raises
    /// :class:`vman.UnsupportedError` (stop it first). Once begun, a revert is
    /// seen through: ``cancel`` and Ctrl-C only stop a wait for the VM's lock.
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn revert_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PySnapshot> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.revert_snapshot_cancellable(vm, name, c))?.into())
    }

    /// Deletes snapshot ``name`` from every disk of VM ``vm`` (with qemu-img when
    /// it is stopped, a QMP job when it runs). Once begun it is seen through:
    /// ``cancel`` and Ctrl-C only stop a wait for the VM's lock.
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn delete_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<()> {
        self.wait(py, cancel.as_ref(), |m, c| m.delete_snapshot_cancellable(vm, name, c))
    }

    /// Puts the ISO at ``iso`` (an absolute path) in the VM's CD-ROM drive, or
    /// ejects it when ``iso`` is None: at once in a running VM, else from its
    /// next start. Returns the VM.
    fn change_cdrom(&self, py: Python<'_>, vm: &str, iso: Option<PathArg>) -> PyVmanResult<PyVm> {
        let iso = iso.map(|p| p.get("CD-ROM image")).transpose()?;
        Ok(self.call(py, |m| m.change_cdrom(vm, iso.as_deref()))?.into())
    }

    /// Starts a created, stopped or failed VM and returns it running. Returns
    /// once QEMU answers on QMP; the guest then boots (see
    /// :meth:`wait_for_console`). A failed start leaves the VM ``"error"`` with
    /// QEMU's own words in :attr:`vman.Vm.last_error`.
    ///
    /// Raises :class:`vman.InvalidStateError` (not startable, or no boot
    /// source), :class:`vman.QemuError` (QEMU refused), :class:`vman.PermissionDeniedError`,
    /// :class:`vman.UnsupportedError` (no QEMU binary).
    ///
    /// Interrupted by ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C before QEMU
    /// answered, the new QEMU is killed and the VM is ``"stopped"``, with a
    /// ``cancelled`` event; :class:`vman.CancelledError` or
    /// :class:`KeyboardInterrupt` is raised.
    #[pyo3(signature = (name, *, cancel=None))]
    fn start(&self, py: Python<'_>, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.start_cancellable(name, c))?.into())
    }

    /// Stops a running or paused VM: the ACPI power button, up to ``timeout``
    /// seconds for the guest to power off, then SIGTERM (QEMU's own orderly quit), then SIGKILL
    /// (recorded as a ``forced`` event). Returns the stopped VM.
    ///
    /// Interrupted by ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C while the
    /// guest is given its time, nothing has been forced: the VM stays
    /// ``"running"`` (a paused one was resumed for the power button), with a
    /// ``cancelled`` event, and :class:`vman.CancelledError` or
    /// :class:`KeyboardInterrupt` is raised once that is recorded. Once the stop
    /// is being forced it is seen through.
    ///
    /// Raises :class:`vman.InvalidStateError` (not running or paused),
    /// :class:`vman.InvalidArgumentError` (a negative timeout).
    ///
    /// >>> m.stop("web1", timeout=60).state
    /// 'stopped'
    #[pyo3(signature = (name, timeout=STOP_TIMEOUT.as_secs_f64(), *, cancel=None), text_signature = "($self, name, timeout=30.0, *, cancel=None)")]
    fn stop(&self, py: Python<'_>, name: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.stop_cancellable(name, timeout, c))?.into())
    }

    /// Stops a VM at once: SIGTERM (QEMU's own orderly quit, as QMP ``quit``), then SIGKILL if QEMU lingers. Returns the stopped VM.
    fn force_stop(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.force_stop(name))?.into())
    }

    /// Stops the VM as :meth:`stop` does (within ``timeout``), then starts it.
    /// Interrupted during the stop it stays running, during the start it is
    /// stopped (see :meth:`stop` and :meth:`start`).
    #[pyo3(signature = (name, timeout=STOP_TIMEOUT.as_secs_f64(), *, cancel=None), text_signature = "($self, name, timeout=30.0, *, cancel=None)")]
    fn restart(&self, py: Python<'_>, name: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.restart_cancellable(name, timeout, c))?.into())
    }

    /// Halts the guest's vCPUs (QMP ``stop``); QEMU keeps running. Returns the ``"paused"`` VM.
    fn pause(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.pause(name))?.into())
    }

    /// Resumes a paused guest (QMP ``cont``). Returns the ``"running"`` VM.
    fn resume(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.resume(name))?.into())
    }

    /// The last ``max_bytes`` bytes the guest wrote to its serial console, also
    /// of a stopped VM (the log keeps the previous part too).
    #[pyo3(signature = (name, max_bytes=IntArg::of_usize(CONSOLE_TAIL_BYTES)), text_signature = "($self, name, max_bytes=65536)")]
    fn console_tail<'py>(&self, py: Python<'py>, name: &str, max_bytes: IntArg) -> PyVmanResult<Bound<'py, PyBytes>> {
        let max_bytes = max_bytes.get("max_bytes")?;
        let bytes = self.call(py, |m| m.console_tail(name, max_bytes))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Waits up to ``timeout`` seconds for a console line matching the regular
    /// expression ``pattern`` printed during the current run of the VM's QEMU,
    /// and returns that line. Output of earlier runs never matches.
    ///
    /// Raises :class:`vman.InvalidStateError` for a VM without a running QEMU
    /// (also as soon as it exits during the wait), :class:`vman.TimeoutError` if
    /// no line came, :class:`vman.CancelledError` if ``cancel`` was cancelled;
    /// Ctrl-C raises :class:`KeyboardInterrupt`.
    ///
    /// >>> m.start("web1")
    /// >>> m.wait_for_console("web1", r"login:", timeout=120)
    #[pyo3(signature = (name, pattern, timeout=CONSOLE_WAIT_TIMEOUT.as_secs_f64(), *, cancel=None),
           text_signature = "($self, name, pattern, timeout=60.0, *, cancel=None)")]
    fn wait_for_console(
        &self,
        py: Python<'_>,
        name: &str,
        pattern: &str,
        timeout: f64,
        cancel: Option<Bound<'_, PyCancel>>,
    ) -> PyResult<String> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        self.wait(py, cancel.as_ref(), |m, c| m.wait_for_console_cancellable(name, pattern, timeout, c))
    }

    /// Attaches to the VM's serial console: a :class:`vman.Console`. One at a
    /// time per VM, across threads and processes: :class:`vman.InUseError` while
    /// another is attached; :class:`vman.InvalidStateError` without a running
    /// QEMU.
    fn console(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyConsole> {
        Ok(PyConsole::new(self.call(py, |m| m.console(name))?))
    }

    /// The settings of the state directory, as it keeps them now.
    fn settings(&self, py: Python<'_>) -> PyVmanResult<PySettings> {
        Ok(self.call(py, |m| m.settings())?.into())
    }

    /// Changes setting ``key`` of the state directory, for every process
    /// that uses it, and returns the settings as they are now. Keys:
    /// ``network``, ``accel``, ``qemu_binary``, ``dnsmasq_binary``,
    /// ``qemu_user`` (None or ``""`` for the default) and
    /// ``serial_log_cap_bytes`` (an int, or its decimal text).
    /// ``network="auto"`` is resolved by this process.
    ///
    /// ``network``, ``dnsmasq_binary`` and ``qemu_user`` change only while
    /// no VM has a QEMU (:class:`vman.InvalidStateError` names the VMs to
    /// stop); the others apply from each VM's next start. A change records
    /// a ``setting`` event; setting the value kept already changes nothing.
    /// An unknown key or a bad value raises
    /// :class:`vman.InvalidArgumentError`; bridged without CAP_NET_ADMIN,
    /// :class:`vman.PermissionDeniedError`.
    fn set_setting(&self, py: Python<'_>, key: &str, value: SettingValue) -> PyVmanResult<PySettings> {
        let value = value.get()?;
        Ok(self.call(py, |m| m.set_setting(key, &value))?.into())
    }

    /// The host's CPU (count, load, busy share over a ~0.2 s sample that
    /// this call waits out), memory and the state directory's disk, and for
    /// every VM what its QEMU uses (CPU time and share, resident memory)
    /// and what its files take on disk.
    fn host_stats(&self, py: Python<'_>) -> PyVmanResult<PyHostStats> {
        Ok(self.call(py, |m| m.host_stats())?.into())
    }

    /// Whether this host can run the state directory's VMs as its settings
    /// say: the QEMU binary (and its version), qemu-img, the accelerator,
    /// bridging privileges, dnsmasq, OVMF and a writable state directory.
    /// A failed check says why and how to fix it; ``ok`` is False only when
    /// a check the settings need failed.
    fn host_health(&self, py: Python<'_>) -> PyVmanResult<PyHostHealth> {
        Ok(self.call(py, |m| m.host_health())?.into())
    }

    /// Creates ``count`` VMs named by ``pattern`` (one placeholder, ``{}``
    /// or ``{:0N}``: ``"worker{:02}"`` gives worker01, worker02…, numbered
    /// from ``first``), each made as :meth:`create_vm` would make it from
    /// the same keyword arguments, and starts them if ``start``: all of
    /// them, or none. Every name is checked first (a bad pattern or count
    /// raises :class:`vman.InvalidArgumentError`, a taken name
    /// :class:`vman.AlreadyExistsError` naming the VMs). If one VM cannot
    /// be made or started, every VM of the batch is deleted again (QEMU
    /// killed; disks, seeds, taps and addresses released) and the error
    /// that stopped it is raised. ``name`` names the batch; by default the
    /// pattern without its placeholder (``"worker"``).
    #[pyo3(signature = (
        pattern, *, count, template, nics=None, kernel=None, initrd=None, cmdline=None, image=None, blank_disk=false,
        firmware=None, cdrom=None, boot_from_cdrom=false, display=Display::default().as_str(), cloud_init=false, user_data=None,
        ssh_keys=None, start=false, name=None, first=IntArg::of(BATCH_FIRST.into()),
    ), text_signature = "($self, pattern, *, count, template, nics=None, kernel=None, initrd=None, cmdline=None, image=None, \
        blank_disk=False, firmware=None, cdrom=None, boot_from_cdrom=False, display='none', cloud_init=False, user_data=None, \
        ssh_keys=None, start=False, name=None, first=1)")]
    #[allow(clippy::too_many_arguments)]
    fn create_batch(
        &self,
        py: Python<'_>,
        pattern: String,
        count: IntArg,
        template: String,
        nics: Option<Vec<NicArg>>,
        kernel: Option<String>,
        initrd: Option<String>,
        cmdline: Option<String>,
        image: Option<String>,
        blank_disk: bool,
        firmware: Option<&str>,
        cdrom: Option<PathArg>,
        boot_from_cdrom: bool,
        display: &str,
        cloud_init: bool,
        user_data: Option<String>,
        ssh_keys: Option<Vec<String>>,
        start: bool,
        name: Option<String>,
        first: IntArg,
    ) -> PyVmanResult<PyBatch> {
        let vm = vm_spec(
            String::new(),
            template,
            nics,
            kernel,
            initrd,
            cmdline,
            image,
            blank_disk,
            firmware,
            cdrom,
            boot_from_cdrom,
            display,
            cloud_init,
            user_data,
            ssh_keys,
        )?;
        let spec = BatchSpec { name, pattern, count: count.get("batch size")?, first: first.get("first number")?, start, vm };
        Ok(self.call(py, |m| m.create_batch(&spec))?.into())
    }

    /// Every live batch (also those being created or deleted), by name.
    fn batches(&self, py: Python<'_>) -> PyVmanResult<Vec<PyBatch>> {
        Ok(self.call(py, |m| m.batches())?.into_iter().map(Into::into).collect())
    }

    /// The batch named ``name`` (:class:`vman.NotFoundError` if there is none).
    fn batch(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyBatch> {
        Ok(self.call(py, |m| m.batch(name))?.into())
    }

    /// Deletes a batch and every VM of it; returns the names of the VMs
    /// deleted. A batch with a running (or paused) VM is refused with
    /// :class:`vman.InvalidStateError` naming them, nothing deleted, unless
    /// ``force=True``, which stops them at once first. A batch another
    /// process is still creating is waited for, then deleted.
    #[pyo3(signature = (name, *, force=false))]
    fn delete_batch(&self, py: Python<'_>, name: &str, force: bool) -> PyVmanResult<Vec<String>> {
        self.call(py, |m| m.delete_batch(name, force))
    }

    /// Deletes every VM whose name starts with ``prefix`` (byte for byte: any
    /// VM, in a batch or not); returns their names. If any of them is running
    /// (or paused) it is refused with :class:`vman.InvalidStateError` naming
    /// them, nothing deleted, unless ``force=True``, which stops them at once
    /// first. A batch left with no VM is deleted too. It stops at the first
    /// VM that cannot be deleted (those before it are gone).
    #[pyo3(signature = (*, prefix, force=false))]
    fn delete_vms(&self, py: Python<'_>, prefix: &str, force: bool) -> PyVmanResult<Vec<String>> {
        self.call(py, |m| m.delete_vms_by_prefix(prefix, force))
    }

    /// Compares the store with reality and repairs the drift: VMs whose QEMU
    /// died or runs unrecorded, operations a crash interrupted, stale run files,
    /// host networking, disks and snapshots left mid-operation. Returns what it
    /// found and did (:class:`vman.ReconcileReport`). Also run by every open.
    fn reconcile(&self, py: Python<'_>) -> PyVmanResult<PyReconcileReport> {
        Ok(self.call(py, |m| m.reconcile())?.into())
    }

    /// A live stream of the events committed to the state directory by any
    /// manager in any process (:class:`vman.EventStream`): from now on, or with
    /// ``after``, every event after that id first (resume without gaps; 0
    /// replays all history).
    ///
    /// >>> for event in m.subscribe():   # Ctrl-C ends it
    /// ...     print(event.object_name, event.action)
    #[pyo3(signature = (after=None))]
    fn subscribe(&self, py: Python<'_>, after: Option<i64>) -> PyVmanResult<PyEventStream> {
        let inner = self.call(py, |m| match after {
            Some(id) => m.subscribe_after(id),
            None => m.subscribe(),
        })?;
        Ok(PyEventStream { inner })
    }

    /// The newest ``limit`` (1-10000) events of VM ``vm`` (its live name, or the
    /// id of a deleted one), oldest first.
    #[pyo3(signature = (vm, limit=IntArg::of(HISTORY_LIMIT.into())), text_signature = "($self, vm, limit=100)")]
    fn vm_history(&self, py: Python<'_>, vm: &str, limit: IntArg) -> PyVmanResult<Vec<PyEvent>> {
        let limit = limit.get("limit")?;
        Ok(self.call(py, |m| m.vm_history(vm, limit))?.into_iter().map(Into::into).collect())
    }

    /// The newest ``limit`` (1-10000) events across the state directory, oldest first.
    #[pyo3(signature = (limit=IntArg::of(HISTORY_LIMIT.into())), text_signature = "($self, limit=100)")]
    fn recent_events(&self, py: Python<'_>, limit: IntArg) -> PyVmanResult<Vec<PyEvent>> {
        let limit = limit.get("limit")?;
        Ok(self.call(py, |m| m.recent_events(limit))?.into_iter().map(Into::into).collect())
    }

    fn __repr__(&self) -> String {
        let open = !self.closing.load(Ordering::SeqCst);
        format!("Manager({:?}{})", self.state_dir, if open { "" } else { ", closed" })
    }
}

/// Live events, pulled: ``next(timeout)``, iteration (blocks; Ctrl-C
/// works), or ``fileno()`` in a ``select``/``poll`` loop.
#[pyclass(frozen, module = "vman", name = "EventStream")]
pub(crate) struct PyEventStream {
    inner: EventStream,
}

#[pymethods]
impl PyEventStream {
    /// The next event, waiting up to ``timeout`` seconds (forever if None, not
    /// at all if 0); None if none came. Raises :class:`vman.ClosedError` once
    /// the stream or its manager is closed, :class:`vman.CancelledError` if
    /// ``cancel`` was cancelled (the stream goes on: nothing is lost). Ctrl-C
    /// interrupts the wait.
    #[pyo3(signature = (timeout=None, *, cancel=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<Option<PyEvent>> {
        let deadline = match timeout {
            Some(t) => Some(std::time::Instant::now() + seconds_arg("timeout", t).map_err(PyVmanError)?),
            None => None,
        };
        let token = cancel.as_ref().map(|c| c.get().inner.clone());
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()).min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            let next = py.detach(|| match &token {
                Some(token) => self.inner.next_cancellable(slice, token),
                None => self.inner.next(slice),
            });
            if let Some(event) = next.map_err(PyVmanError)? {
                return Ok(Some(event.into()));
            }
            crate::signals::check(py)?;
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// A descriptor for ``select``/``poll``: readable while :meth:`next`
    /// has something to answer without waiting (an event, or ClosedError);
    /// possibly also with nothing, so after a wake-up call ``next(0)`` until
    /// it returns None. Owned by the stream: do not close it.
    fn fileno(&self) -> i32 {
        self.inner.as_fd().as_raw_fd()
    }

    /// Ends the stream (also for a thread waiting in :meth:`next`, which
    /// raises :class:`vman.ClosedError`). Idempotent.
    fn close(&self) {
        self.inner.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*args))]
    fn __exit__(&self, args: &Bound<'_, PyTuple>) {
        let _ = args;
        self.inner.close();
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Blocks until the next event; raises ClosedError once closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<PyEvent> {
        loop {
            if let Some(event) = self.next(py, None, None)? {
                return Ok(event);
            }
        }
    }
}
