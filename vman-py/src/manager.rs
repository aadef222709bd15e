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
use vman_core::defaults::{CONSOLE_TAIL_BYTES, CONSOLE_WAIT_TIMEOUT, DETACH_TIMEOUT, HISTORY_LIMIT, STOP_TIMEOUT};
use vman_core::{
    Accel, BootSpec, Cancel, DiskFilter, DiskFormat, DiskSpec, DiskState, Display, EventStream, Firmware, ImageSpec, ImportSpec, Manager,
    NetworkMode, NetworkSpec, NicSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState,
};

use crate::args::{IntArg, PathArg};
use crate::cancel::{PyCancel, SIGNAL_CHECK};
use crate::console::PyConsole;
use crate::errors::{PyVmanError, PyVmanResult};
use crate::records::{PyAllocation, PyDisk, PyEvent, PyImage, PyNetwork, PyReconcileReport, PySnapshot, PySshKey, PyTemplate, PyVm};

/// A NIC to give a new VM: on ``network``, with a fixed ``ip`` or ``mac`` if
/// given (otherwise allocated).
#[pyclass(frozen, from_py_object, eq, hash, module = "vman", name = "NicSpec")]
#[derive(Clone, PartialEq, Eq, Hash)]
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
    /// Opens ``state_dir``, creating it (mode 0700) and its database if
    /// missing, and adopts the VMs that are still running. An option left
    /// as None takes vman's default; a bad one raises
    /// :class:`vman.InvalidArgumentError` before anything is created.
    #[new]
    #[pyo3(signature = (
        state_dir, *, busy_timeout_ms=None, accel=None, qemu_binary=None, serial_log_cap_bytes=None,
        network=None, dnsmasq_binary=None, qemu_user=None,
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
    ) -> PyVmanResult<Self> {
        // Core's defaults, overridden field by field through core's checks.
        let mut options = OpenOptions::default();
        if let Some(ms) = busy_timeout_ms {
            options.set_busy_timeout_ms(ms.get("busy timeout")?)?;
        }
        if let Some(accel) = accel {
            options.accel = accel.parse::<Accel>()?;
        }
        if let Some(path) = qemu_binary {
            options.set_qemu_binary(path)?;
        }
        if let Some(bytes) = serial_log_cap_bytes {
            options.set_serial_log_cap_bytes(bytes.get("serial log cap")?)?;
        }
        if let Some(network) = network {
            options.network = network.parse::<NetworkMode>()?;
        }
        if let Some(path) = dnsmasq_binary {
            options.set_dnsmasq_binary(path)?;
        }
        if let Some(user) = qemu_user {
            options.set_qemu_user(user)?;
        }
        let inner = py.detach(|| Manager::open(&state_dir, &options))?;
        Ok(PyManager { state_dir: inner.state_dir().to_path_buf(), inner: RwLock::new(Some(inner)), closing: AtomicBool::new(false) })
    }

    /// The state directory (still readable after :meth:`close`).
    #[getter]
    fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// Closes the manager: every method raises :class:`vman.ClosedError`
    /// from now on, and its event streams are closed. Waits for calls in
    /// progress on other threads (Ctrl-C interrupts the wait; the manager
    /// then stays closed to new calls, and calling close again finishes).
    /// Running VMs are not affected. Idempotent.
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

    fn template(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyTemplate> {
        Ok(self.call(py, |m| m.template(name))?.into())
    }

    fn templates(&self, py: Python<'_>) -> PyVmanResult<Vec<PyTemplate>> {
        Ok(self.call(py, |m| m.templates())?.into_iter().map(Into::into).collect())
    }

    fn delete_template(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_template(name))
    }

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

    fn network(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyNetwork> {
        Ok(self.call(py, |m| m.network(name))?.into())
    }

    fn networks(&self, py: Python<'_>) -> PyVmanResult<Vec<PyNetwork>> {
        Ok(self.call(py, |m| m.networks())?.into_iter().map(Into::into).collect())
    }

    fn delete_network(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_network(name))
    }

    fn allocations(&self, py: Python<'_>, network: &str) -> PyVmanResult<Vec<PyAllocation>> {
        Ok(self.call(py, |m| m.allocations(network))?.into_iter().map(Into::into).collect())
    }

    /// Imports an OpenSSH public key line (``"type base64 [comment]"``, as in
    /// a ``.pub`` file) under ``name``: ssh-ed25519, ecdsa-sha2-nistp256,
    /// -384 or -521, or ssh-rsa of 2048 bits or more. A malformed, truncated,
    /// weak, DSA or private key raises :class:`vman.InvalidArgumentError`
    /// saying which; a taken name :class:`vman.AlreadyExistsError`.
    fn import_ssh_key(&self, py: Python<'_>, name: &str, public_key: &str) -> PyVmanResult<PySshKey> {
        Ok(self.call(py, |m| m.import_ssh_key(name, public_key))?.into())
    }

    /// The SSH key named ``name`` (``vman.NotFoundError`` if there is none).
    fn ssh_key(&self, py: Python<'_>, name: &str) -> PyVmanResult<PySshKey> {
        Ok(self.call(py, |m| m.ssh_key(name))?.into())
    }

    /// The catalogue, by name.
    fn ssh_keys(&self, py: Python<'_>) -> PyVmanResult<Vec<PySshKey>> {
        Ok(self.call(py, |m| m.ssh_keys())?.into_iter().map(Into::into).collect())
    }

    /// Deletes a key from the catalogue; VMs given it keep their copies.
    fn delete_ssh_key(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_ssh_key(name))
    }

    /// Records a VM. Each NIC is a network name or a :class:`NicSpec`; all
    /// addresses are allocated in one transaction, or none. ``kernel`` (with
    /// ``initrd`` and ``cmdline``) makes QEMU boot that kernel directly;
    /// ``image`` gives it a boot disk that is a linked clone of that
    /// registered image, ``blank_disk`` an empty one (both sized by the
    /// template). ``firmware`` is by default the image's, else ``"bios"``.
    /// ``cdrom`` puts an ISO in its CD-ROM drive (``boot_from_cdrom``: boot
    /// from it first); ``display`` gives it a VNC console; ``cloud_init``
    /// a NoCloud seed at each start, with ``user_data`` merged in.
    /// ``ssh_keys`` names keys of the catalogue; the VM keeps its own copies.
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
        let spec = VmSpec {
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
        };
        Ok(self.call(py, |m| m.create_vm(&spec))?.into())
    }

    fn vm(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.vm(name))?.into())
    }

    #[pyo3(signature = (*, state=None, name_prefix=None))]
    fn vms(&self, py: Python<'_>, state: Option<&str>, name_prefix: Option<String>) -> PyVmanResult<Vec<PyVm>> {
        let filter = VmFilter { state: state.map(str::parse::<VmState>).transpose()?, name_prefix };
        Ok(self.call(py, |m| m.vms(&filter))?.into_iter().map(Into::into).collect())
    }

    /// Soft-deletes a VM; a running one only with ``force=True``, which
    /// stops it first.
    #[pyo3(signature = (name, *, force=false))]
    fn delete_vm(&self, py: Python<'_>, name: &str, force: bool) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_vm(name, force))
    }

    /// Creates an empty disk of ``size_bytes`` bytes (at least one MiB, a
    /// multiple of 512) under the state directory.
    #[pyo3(signature = (name, size_bytes, *, format=DiskFormat::default().as_str()),
           text_signature = "($self, name, size_bytes, *, format='qcow2')")]
    fn create_disk(&self, py: Python<'_>, name: String, size_bytes: IntArg, format: &str) -> PyVmanResult<PyDisk> {
        let spec = DiskSpec { name, size_bytes: size_bytes.get("disk size")?, format: format.parse::<DiskFormat>()? };
        Ok(self.call(py, |m| m.create_disk(&spec))?.into())
    }

    /// Makes a disk of an existing image file (an absolute path; not a
    /// device node, not through a symlink): copied into the state
    /// directory, or with ``copy=False`` used in place, which must be inside
    /// it. ``format`` None probes it (an image naming a backing file is then
    /// refused).
    #[pyo3(signature = (name, source, *, format=None, copy=true))]
    fn import_disk(&self, py: Python<'_>, name: String, source: PathArg, format: Option<&str>, copy: bool) -> PyVmanResult<PyDisk> {
        let spec = ImportSpec { name, source: source.get("disk source")?, format: format.map(str::parse::<DiskFormat>).transpose()?, copy };
        Ok(self.call(py, |m| m.import_disk(&spec))?.into())
    }

    /// The disk named ``name`` (``vman.NotFoundError`` if there is none).
    fn disk(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyDisk> {
        Ok(self.call(py, |m| m.disk(name))?.into())
    }

    /// Disks by name; only those attached to ``vm``, or in ``state``, if given.
    #[pyo3(signature = (*, vm=None, state=None))]
    fn disks(&self, py: Python<'_>, vm: Option<String>, state: Option<&str>) -> PyVmanResult<Vec<PyDisk>> {
        let filter = DiskFilter { vm, state: state.map(str::parse::<DiskState>).transpose()? };
        Ok(self.call(py, |m| m.disks(&filter))?.into_iter().map(Into::into).collect())
    }

    /// Deletes a disk attached to no VM, and its file if vman owns it.
    fn delete_disk(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_disk(name))
    }

    /// Grows a disk (live while its VM runs); shrinking loses data past the
    /// new end, so it needs ``force=True`` and a VM that does not run.
    #[pyo3(signature = (name, size_bytes, *, force=false))]
    fn resize_disk(&self, py: Python<'_>, name: &str, size_bytes: IntArg, force: bool) -> PyVmanResult<PyDisk> {
        let size_bytes = size_bytes.get("disk size")?;
        Ok(self.call(py, |m| m.resize_disk(name, size_bytes, force))?.into())
    }

    /// Attaches an available disk to a VM: part of its next start, or
    /// hot-plugged into its running QEMU (the guest sees a new virtio disk).
    fn attach_disk(&self, py: Python<'_>, vm: &str, disk: &str) -> PyVmanResult<PyDisk> {
        Ok(self.call(py, |m| m.attach_disk(vm, disk))?.into())
    }

    /// Detaches a disk. From a running VM the guest is asked to release it
    /// and given ``timeout`` seconds; if it does not,
    /// :class:`vman.TimeoutError` is raised and the disk stays attached.
    #[pyo3(signature = (vm, disk, timeout=DETACH_TIMEOUT.as_secs_f64(), *, cancel=None),
           text_signature = "($self, vm, disk, timeout=30.0, *, cancel=None)")]
    fn detach_disk(&self, py: Python<'_>, vm: &str, disk: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyDisk> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.detach_disk_cancellable(vm, disk, timeout, c))?.into())
    }

    /// Registers a base image (an absolute path to a regular file): its
    /// format and size are read, its SHA-256 computed, and (unless
    /// ``copy=False``: used in place, inside the state directory) its file
    /// copied in.
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

    /// The image named ``name`` (``vman.NotFoundError`` if there is none).
    fn image(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyImage> {
        Ok(self.call(py, |m| m.image(name))?.into())
    }

    /// Every registered image, by name.
    fn images(&self, py: Python<'_>) -> PyVmanResult<Vec<PyImage>> {
        Ok(self.call(py, |m| m.images())?.into_iter().map(Into::into).collect())
    }

    /// Removes an image from the catalogue (and its file, if copied in);
    /// :class:`vman.InUseError` while a disk is cloned from it.
    fn delete_image(&self, py: Python<'_>, name: &str) -> PyVmanResult<()> {
        self.call(py, |m| m.delete_image(name))
    }

    /// Takes snapshot ``name`` of every disk of a VM (all qcow2): of a
    /// stopped VM with qemu-img, of a running or paused one with a QMP job
    /// that saves its memory too.
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn create_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PySnapshot> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.create_snapshot_cancellable(vm, name, c))?.into())
    }

    /// A VM's snapshots, oldest first.
    fn snapshots(&self, py: Python<'_>, vm: &str) -> PyVmanResult<Vec<PySnapshot>> {
        Ok(self.call(py, |m| m.snapshots(vm))?.into_iter().map(Into::into).collect())
    }

    /// Brings a VM's disks back to a snapshot: a stopped VM to any, a
    /// running one (memory too) only to a live one; reverting a running
    /// guest's disks to a disk-only snapshot raises
    /// :class:`vman.UnsupportedError` (stop it first).
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn revert_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PySnapshot> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.revert_snapshot_cancellable(vm, name, c))?.into())
    }

    /// Deletes snapshot ``name`` of VM ``vm`` from every disk of the VM
    /// (with qemu-img when it is stopped, a QMP job when it runs).
    #[pyo3(signature = (vm, name, *, cancel=None))]
    fn delete_snapshot(&self, py: Python<'_>, vm: &str, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<()> {
        self.wait(py, cancel.as_ref(), |m, c| m.delete_snapshot_cancellable(vm, name, c))
    }

    /// Puts the ISO at ``iso`` in the VM's CD-ROM drive, or ejects it when
    /// ``iso`` is None: at once in a running VM, else from its next start.
    fn change_cdrom(&self, py: Python<'_>, vm: &str, iso: Option<PathArg>) -> PyVmanResult<PyVm> {
        let iso = iso.map(|p| p.get("CD-ROM image")).transpose()?;
        Ok(self.call(py, |m| m.change_cdrom(vm, iso.as_deref()))?.into())
    }

    /// Starts QEMU; returns once it answers on QMP (the guest then boots).
    #[pyo3(signature = (name, *, cancel=None))]
    fn start(&self, py: Python<'_>, name: &str, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.start_cancellable(name, c))?.into())
    }

    /// ACPI power button, up to ``timeout`` seconds, then forced.
    #[pyo3(signature = (name, timeout=STOP_TIMEOUT.as_secs_f64(), *, cancel=None), text_signature = "($self, name, timeout=30.0, *, cancel=None)")]
    fn stop(&self, py: Python<'_>, name: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.stop_cancellable(name, timeout, c))?.into())
    }

    /// QMP quit, then SIGKILL if QEMU lingers.
    fn force_stop(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.force_stop(name))?.into())
    }

    /// Stops the VM as :meth:`stop` does, then starts it.
    #[pyo3(signature = (name, timeout=STOP_TIMEOUT.as_secs_f64(), *, cancel=None), text_signature = "($self, name, timeout=30.0, *, cancel=None)")]
    fn restart(&self, py: Python<'_>, name: &str, timeout: f64, cancel: Option<Bound<'_, PyCancel>>) -> PyResult<PyVm> {
        let timeout = seconds_arg("timeout", timeout).map_err(PyVmanError)?;
        Ok(self.wait(py, cancel.as_ref(), |m, c| m.restart_cancellable(name, timeout, c))?.into())
    }

    fn pause(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.pause(name))?.into())
    }

    fn resume(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyVm> {
        Ok(self.call(py, |m| m.resume(name))?.into())
    }

    /// The last ``max_bytes`` of the VM's serial console output.
    #[pyo3(signature = (name, max_bytes=IntArg::of_usize(CONSOLE_TAIL_BYTES)), text_signature = "($self, name, max_bytes=65536)")]
    fn console_tail<'py>(&self, py: Python<'py>, name: &str, max_bytes: IntArg) -> PyVmanResult<Bound<'py, PyBytes>> {
        let max_bytes = max_bytes.get("max_bytes")?;
        let bytes = self.call(py, |m| m.console_tail(name, max_bytes))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Waits for a console line matching the regex ``pattern`` printed
    /// during the current run of the VM's QEMU and returns it. Raises
    /// :class:`vman.InvalidStateError` for a VM without a running QEMU (also
    /// when it exits during the wait), :class:`vman.TimeoutError` if no line
    /// came. Ctrl-C interrupts it.
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

    /// Attaches to the serial console: a :class:`vman.Console`. One at a
    /// time per VM; :class:`vman.InUseError` while another is attached.
    fn console(&self, py: Python<'_>, name: &str) -> PyVmanResult<PyConsole> {
        Ok(PyConsole::new(self.call(py, |m| m.console(name))?))
    }

    /// Compares the store with reality, repairs drift, reports it.
    fn reconcile(&self, py: Python<'_>) -> PyVmanResult<PyReconcileReport> {
        Ok(self.call(py, |m| m.reconcile())?.into())
    }

    /// A live stream of the events committed to the state directory by any
    /// manager in any process: from now on, or, with ``after``, every event
    /// after that id first (resume without gaps; 0 replays all history).
    #[pyo3(signature = (after=None))]
    fn subscribe(&self, py: Python<'_>, after: Option<i64>) -> PyVmanResult<PyEventStream> {
        let inner = self.call(py, |m| match after {
            Some(id) => m.subscribe_after(id),
            None => m.subscribe(),
        })?;
        Ok(PyEventStream { inner })
    }

    /// The newest ``limit`` events of a VM (live name, or id of a deleted
    /// one), oldest first.
    #[pyo3(signature = (vm, limit=IntArg::of(HISTORY_LIMIT.into())), text_signature = "($self, vm, limit=100)")]
    fn vm_history(&self, py: Python<'_>, vm: &str, limit: IntArg) -> PyVmanResult<Vec<PyEvent>> {
        let limit = limit.get("limit")?;
        Ok(self.call(py, |m| m.vm_history(vm, limit))?.into_iter().map(Into::into).collect())
    }

    /// The newest ``limit`` events across the store, oldest first.
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
    /// The next event, waiting up to ``timeout`` seconds (forever if None,
    /// not at all if 0); None if none came. Raises :class:`vman.ClosedError`
    /// once the stream or its manager is closed.
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
