//! VM records.

use std::ffi::{CString, c_char};

use vman_core::{BootSpec, Display, Firmware, Nic, NicSpec, Vm, VmFilter, VmSpec, VmState};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, new_handle, optional_handle, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::cstring;
use crate::ssh_key::VmanVmSshKey;

/// The lifecycle state of a VM. Numbers are stable.
// `repr(C)` for the reason given at `VmanStatus`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmanVmState {
    #[default]
    Created = 0,
    Starting = 1,
    Running = 2,
    Paused = 3,
    Stopping = 4,
    Stopped = 5,
    Error = 6,
    Deleted = 7,
}

impl From<VmState> for VmanVmState {
    fn from(state: VmState) -> Self {
        match state {
            VmState::Created => VmanVmState::Created,
            VmState::Starting => VmanVmState::Starting,
            VmState::Running => VmanVmState::Running,
            VmState::Paused => VmanVmState::Paused,
            VmState::Stopping => VmanVmState::Stopping,
            VmState::Stopped => VmanVmState::Stopped,
            VmState::Error => VmanVmState::Error,
            VmState::Deleted => VmanVmState::Deleted,
        }
    }
}

/// A VM definition being built; create with `vman_vm_spec_new`. Not
/// thread-safe: one thread builds it.
#[derive(Debug)]
pub struct VmanVmSpec {
    pub(crate) inner: VmSpec,
}

record! {
    /// A VM record: a snapshot taken when it was read; immutable,
    /// thread-safe.
    pub struct VmanVm(vm) from Vm;
    /// The VM's UUID.
    fn vman_vm_id -> text = |v| &v.id;
    fn vman_vm_name -> text = |v| &v.name;
    /// The template the VM was made from.
    fn vman_vm_template -> text = |v| &v.template;
    fn vman_vm_vcpus -> number<u32> = |v| v.vcpus;
    fn vman_vm_memory_mib -> number<u64> = |v| v.memory_mib;
    fn vman_vm_disk_gib -> number<u64> = |v| v.disk_gib;
    /// The state when the record was read (0 is VMAN_VM_STATE_CREATED).
    fn vman_vm_state -> number<VmanVmState> = |v| v.state.into();
    /// Unix time of the VM's creation in milliseconds.
    fn vman_vm_created_at_ms -> number<i64> = |v| v.created_at_ms;
    fn vman_vm_nic_count -> number<usize> = |v| v.nics.len();
    /// NIC `index` of the VM, in the order the guest sees them.
    fn vman_vm_nic -> record_at<VmanNic> = |v| v.nics.iter().cloned();
    /// The QEMU pid while the VM has one, else 0.
    fn vman_vm_pid -> number<u32> = |v| v.pid.unwrap_or(0);
    /// "kvm" or "tcg" once the VM has run; NULL before.
    fn vman_vm_accel -> optional_text = |v| v.accel.as_ref();
    /// Why the last start failed or QEMU died; NULL if it did not.
    fn vman_vm_last_error -> optional_text = |v| v.last_error.as_ref();
    /// The kernel booted directly; NULL if none.
    fn vman_vm_kernel -> optional_text = |v| v.boot.as_ref().map(|b| &b.kernel);
    /// The initrd; NULL if none.
    fn vman_vm_initrd -> optional_text = |v| v.boot.as_ref().and_then(|b| b.initrd.as_ref());
    /// The kernel command line; NULL if the VM has no kernel.
    fn vman_vm_cmdline -> optional_text = |v| v.boot.as_ref().map(|b| &b.cmdline);
    /// How many host ports are forwarded to the guest (user-mode networking);
    /// see `vman_vm_port_forward`.
    fn vman_vm_port_forward_count -> number<usize> = |v| v.port_forwards.len();
    /// "bios" (SeaBIOS) or "uefi" (OVMF).
    fn vman_vm_firmware -> text = |v| v.firmware.as_str();
    /// The ISO in its CD-ROM drive; NULL if none.
    fn vman_vm_cdrom -> optional_text = |v| v.cdrom.as_ref();
    /// Whether it boots from the CD-ROM before its disk.
    fn vman_vm_boot_from_cdrom -> number<bool> = |v| v.boot_from_cdrom;
    /// Its graphical console: "none", "vnc-unix" or "vnc-tcp".
    fn vman_vm_display -> text = |v| v.display.as_str();
    /// Where its VNC server listens while it runs (`unix:<path>` or
    /// `127.0.0.1:<port>`); NULL otherwise.
    fn vman_vm_display_address -> optional_text = |v| v.display_address.as_ref();
    /// Whether it gets a cloud-init seed at each start.
    fn vman_vm_cloud_init -> number<bool> = |v| v.cloud_init;
    /// The caller's own user-data merged into the seed; NULL if none.
    fn vman_vm_user_data -> optional_text = |v| v.user_data.as_ref();
    /// How many SSH keys the VM was given; see `vman_vm_ssh_key`.
    fn vman_vm_ssh_key_count -> number<usize> = |v| v.ssh_keys.len();
    /// SSH key `index` of the VM (its own copy), in the order it was given.
    fn vman_vm_ssh_key -> record_at<VmanVmSshKey> = |v| v.ssh_keys.iter().cloned();
    free vman_vm_free;
    list VmanVmList(vman_vm_list_len, vman_vm_list_get, vman_vm_list_free);
}

record! {
    /// A NIC of a VM record, borrowed from it; immutable, thread-safe.
    pub struct VmanNic(nic) from Nic;
    /// The network's name.
    fn vman_nic_network -> text = |n| &n.network;
    fn vman_nic_vlan -> number<u16> = |n| n.vlan;
    /// The NIC's IPv4 address, e.g. "10.0.0.2".
    fn vman_nic_ip -> text = |n| n.ip;
    /// The subnet's prefix length, e.g. 24.
    fn vman_nic_prefix_len -> number<u8> = |n| n.prefix_len;
    fn vman_nic_gateway -> text = |n| n.gateway;
    /// The NIC's MAC, "aa:bb:cc:dd:ee:ff".
    fn vman_nic_mac -> text = |n| n.mac;
    /// The host interface (tap) of this NIC while its VM runs bridged; NULL
    /// otherwise.
    fn vman_nic_host_interface -> optional_text = |n| n.host_interface.as_ref();
}

/// Starts a VM definition from a template name. Both are checked when the
/// VM is created.
///
/// `out` must not be NULL. On success `*out` is the spec, owned by the
/// caller (free it with `vman_vm_spec_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Thread-safe (it touches no shared state).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_new(name: *const c_char, template: *const c_char, out: *mut *mut VmanVmSpec) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (name, template) = (guard::string(name, "name")?, guard::string(template, "template")?);
            Ok(VmanVmSpec { inner: VmSpec::new(name, template) })
        })
    }
}

/// Adds a NIC on `network`. `ip` and `mac` may be NULL: the address is then
/// allocated automatically and the MAC generated under 52:54:00. Checked
/// when the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_add_nic(
    spec: *mut VmanVmSpec,
    network: *const c_char,
    ip: *const c_char,
    mac: *const c_char,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, network, ip, mac) = unsafe {
            (
                guard::handle_mut(spec, "spec")?,
                guard::string(network, "network")?,
                guard::optional_string(ip, "ip")?,
                guard::optional_string(mac, "mac")?,
            )
        };
        let mut nic = NicSpec::on(network);
        nic.ip = ip.map(str::to_string);
        nic.mac = mac.map(str::to_string);
        spec.inner.nics.push(nic);
        Ok(())
    })
}

/// Gives the VM the SSH key named `key` of the catalogue (a copy it keeps).
/// Checked when the VM is created: the name must exist, and each key may
/// be given once.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_add_ssh_key(spec: *mut VmanVmSpec, key: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, key) = unsafe { (guard::handle_mut(spec, "spec")?, guard::string(key, "key")?) };
        spec.inner.ssh_keys.push(key.to_string());
        Ok(())
    })
}

/// Boots `kernel` directly (an absolute path), with an optional `initrd`
/// and kernel command line `cmdline` (both may be NULL).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a relative path, or a command
/// line too long), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8;
/// `spec` is then unchanged.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_boot(
    spec: *mut VmanVmSpec,
    kernel: *const c_char,
    initrd: *const c_char,
    cmdline: *const c_char,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, kernel, initrd, cmdline) = unsafe {
            (
                guard::handle_mut(spec, "spec")?,
                guard::string(kernel, "kernel")?,
                guard::optional_string(initrd, "initrd")?,
                guard::optional_string(cmdline, "cmdline")?,
            )
        };
        spec.inner.boot = BootSpec::from_parts(Some(kernel.to_string()), initrd.map(str::to_string), cmdline.map(str::to_string))?;
        Ok(())
    })
}

/// Boots the VM from a linked clone of the registered image `image`, sized
/// by the template (its firmware, unless set, is the image's). Checked when
/// the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_image(spec: *mut VmanVmSpec, image: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", image, "image", |s, v| {
            s.inner.image = Some(v.into());
            Ok(())
        })
    }
}

/// Without an image: gives the VM an empty boot disk of the template's size
/// (to install an OS onto from a CD-ROM). Checked when the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_blank_disk(spec: *mut VmanVmSpec, blank_disk: bool) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe { set_flag(spec, |s| s.blank_disk = blank_disk) }
}

/// Sets the firmware: "bios" (SeaBIOS) or "uefi" (OVMF). Unset, it is the
/// image's, else BIOS.
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another name; `spec` is then
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_firmware(spec: *mut VmanVmSpec, firmware: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", firmware, "firmware", |s, v| {
            s.inner.firmware = Some(v.parse::<Firmware>()?);
            Ok(())
        })
    }
}

/// Puts the ISO at `iso` (an absolute path to a regular file) in the VM's
/// read-only CD-ROM drive. Checked when the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_cdrom(spec: *mut VmanVmSpec, iso: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", iso, "iso", |s, v| {
            s.inner.cdrom = Some(v.into());
            Ok(())
        })
    }
}

/// Boots from the CD-ROM before the disk (installs); needs an ISO, checked
/// when the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_boot_from_cdrom(spec: *mut VmanVmSpec, boot_from_cdrom: bool) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe { set_flag(spec, |s| s.boot_from_cdrom = boot_from_cdrom) }
}

/// Sets the graphical console: "none" (the default), "vnc-unix" (VNC on a
/// unix socket in the VM's run directory) or "vnc-tcp" (VNC on 127.0.0.1,
/// a free port chosen at each start); see `vman_vm_display_address`.
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another name; `spec` is then
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_display(spec: *mut VmanVmSpec, display: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", display, "display", |s, v| {
            s.inner.display = v.parse::<Display>()?;
            Ok(())
        })
    }
}

/// Whether the guest gets a cloud-init NoCloud seed (hostname, SSH keys,
/// its addresses) at each start, with the caller's own `#cloud-config`
/// `user_data` merged in (`user_data` may be NULL: none). User-data
/// without cloud-init is refused when the VM is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_set_cloud_init(spec: *mut VmanVmSpec, cloud_init: bool, user_data: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, user_data) = unsafe { (guard::handle_mut(spec, "spec")?, guard::optional_string(user_data, "user_data")?) };
        spec.inner.cloud_init = cloud_init;
        spec.inner.user_data = user_data.map(str::to_string);
        Ok(())
    })
}

/// The shape of a spec setter that takes a flag.
///
/// # Safety
/// `spec` NULL or a live spec not used by another thread during the call.
unsafe fn set_flag(spec: *mut VmanVmSpec, apply: impl FnOnce(&mut VmSpec)) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        apply(&mut unsafe { guard::handle_mut(spec, "spec") }?.inner);
        Ok(())
    })
}

/// Frees a spec; NULL is a no-op. No other thread may use `spec` during or
/// after the call. Never fails (clears the last error).
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_free(spec: *mut VmanVmSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Records a VM, allocating all its addresses in one transaction: if one NIC
/// cannot get an address, nothing is recorded. `spec` stays the caller's.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name, address, MAC,
/// boot file or ISO; an SSH key given twice; an image and a blank disk
/// together; a boot from an empty CD-ROM; user-data without cloud-init or
/// that is no #cloud-config document; an image larger than the template's
/// disk), VMAN_STATUS_NOT_FOUND (no such template, network, SSH key or
/// image), VMAN_STATUS_ALREADY_EXISTS (the name, an address or a MAC is
/// taken), VMAN_STATUS_EXHAUSTED (a network has no free address),
/// VMAN_STATUS_QEMU, VMAN_STATUS_UNSUPPORTED, VMAN_STATUS_TIMEOUT (its
/// boot disk could not be made; the VM is then taken back),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once; `spec` is
/// only read.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_create(manager: *const VmanManager, spec: *const VmanVmSpec, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, spec) = (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?);
            Ok(manager.inner.create_vm(&spec.inner)?.into())
        })
    }
}

/// Looks a live VM up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_vm_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.vm(name)?.into())
        })
    }
}

/// Live VMs, by name. `state` ("running", …) and `name_prefix` filter when
/// not NULL.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_vm_list_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an unknown state),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_list(
    manager: *const VmanManager,
    state: *const c_char,
    name_prefix: *const c_char,
    out: *mut *mut VmanVmList,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, state, name_prefix) = (
                guard::handle(manager, "manager")?,
                guard::optional_string(state, "state")?,
                guard::optional_string(name_prefix, "name_prefix")?,
            );
            let filter = VmFilter {
                state: state.map(str::parse::<VmState>).transpose().map_err(Failure::from)?,
                name_prefix: name_prefix.map(str::to_string),
            };
            Ok(manager.inner.vms(&filter)?.into_iter().collect())
        })
    }
}

/// Soft-deletes a VM: frees its name, releases its addresses, keeps its
/// history.
///
/// Fails with VMAN_STATUS_INVALID_STATE (QEMU runs it and `force` is
/// false; with `force` it is stopped first), VMAN_STATUS_NOT_FOUND,
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_QEMU (stopping it failed),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_delete(manager: *const VmanManager, name: *const c_char, force: bool) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_vm(name, force)?)
    })
}

/// A static name for a state ("running"); "unknown" for a number that is no
/// state. Never NULL; static, never free it. Thread-safe; never fails, and
/// does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_state_name(state: u32) -> *const c_char {
    // The names are core's (VmState::as_str), made C strings once; the
    // numbers follow VmState::ALL, as VmanVmState's do.
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| VmState::ALL.iter().map(|s| cstring(s.as_str())).collect());
    names.get(state as usize).map_or(c"unknown".as_ptr(), |n| n.as_ptr())
}

/// Forward `index` of the VM: the host port on 127.0.0.1 that reaches
/// `*out_guest_port` of NIC `*out_nic_index`.
///
/// `out_nic_index`, `out_guest_port` and `out_host_port` must not be NULL;
/// they are written only on success.
///
/// Fails with VMAN_STATUS_NOT_FOUND (`index` is out of range),
/// VMAN_STATUS_NULL_PARAMETER.
///
/// Thread-safe (the record is immutable).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_port_forward(
    vm: *const VmanVm,
    index: usize,
    out_nic_index: *mut u32,
    out_guest_port: *mut u16,
    out_host_port: *mut u16,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let vm = unsafe { guard::handle(vm, "vm") }?;
        out_param(out_nic_index, "out_nic_index")?;
        out_param(out_guest_port, "out_guest_port")?;
        out_param(out_host_port, "out_host_port")?;
        let f = vm
            .inner
            .port_forwards
            .get(index)
            .ok_or_else(|| Failure::new(VmanStatus::NotFound, format!("VM {} has no port forward {index}", vm.inner.name)))?;
        // SAFETY: all three checked non-NULL above.
        unsafe {
            write_out(out_nic_index, f.nic_index);
            write_out(out_guest_port, f.guest_port);
            write_out(out_host_port, f.host_port);
        }
        Ok(())
    })
}
