//! VM records.

use std::ffi::{CString, c_char};

use vman_core::{BootSpec, Nic, NicSpec, Vm, VmFilter, VmSpec, VmState};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::{self, cstring};

/// The lifecycle state of a VM. Numbers are stable.
// `repr(C)` for the reason given at `VmanStatus`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmanVmState {
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
    inner: VmSpec,
}

/// A VM record: a snapshot taken when it was read; read-only, safe to share.
#[derive(Debug)]
pub struct VmanVm {
    pub(crate) inner: Vm,
    id: CString,
    name: CString,
    template: CString,
    nics: Vec<VmanNic>,
    kernel: Option<CString>,
    initrd: Option<CString>,
    cmdline: Option<CString>,
    accel: Option<CString>,
    last_error: Option<CString>,
}

/// A NIC of a VM record, borrowed from it.
#[derive(Debug)]
pub struct VmanNic {
    inner: Nic,
    network: CString,
    ip: CString,
    gateway: CString,
    mac: CString,
    host_interface: Option<CString>,
}

impl From<Vm> for VmanVm {
    fn from(vm: Vm) -> Self {
        let boot = vm.boot.as_ref();
        VmanVm {
            kernel: boot.map(|b| cstring(&b.kernel)),
            initrd: boot.and_then(|b| b.initrd.as_ref()).map(cstring),
            cmdline: boot.map(|b| cstring(&b.cmdline)),
            accel: vm.accel.as_ref().map(cstring),
            last_error: vm.last_error.as_ref().map(cstring),
            id: cstring(&vm.id),
            name: cstring(&vm.name),
            template: cstring(&vm.template),
            nics: vm
                .nics
                .iter()
                .map(|n| VmanNic {
                    network: cstring(&n.network),
                    ip: cstring(n.ip.to_string()),
                    gateway: cstring(n.gateway.to_string()),
                    mac: cstring(n.mac.to_string()),
                    host_interface: n.host_interface.as_ref().map(cstring),
                    inner: n.clone(),
                })
                .collect(),
            inner: vm,
        }
    }
}

#[derive(Debug)]
pub struct VmanVmList(Vec<VmanVm>);

/// Starts a VM definition from a template name.
///
/// # Safety
/// Strings NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_new(name: *const c_char, template: *const c_char, out: *mut *mut VmanVmSpec) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (name, template) = unsafe { (guard::string(name, "name")?, guard::string(template, "template")?) };
        out_param(out, "out")?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanVmSpec { inner: VmSpec::new(name, template) })) };
        Ok(())
    })
}

/// Adds a NIC on `network`. `ip` and `mac` may be NULL: the address is then
/// allocated automatically and the MAC generated under 52:54:00.
///
/// # Safety
/// `spec` NULL or a live spec; strings NULL or NUL-terminated.
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

/// Boots `kernel` directly (an absolute path), with an optional `initrd`
/// and kernel command line `cmdline` (both may be NULL).
///
/// # Safety
/// `spec` NULL or a live spec; strings NULL or NUL-terminated.
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

/// Frees a spec; NULL is a no-op.
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_spec_free(spec: *mut VmanVmSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Records a VM, allocating all its addresses in one transaction: if one NIC
/// cannot get an address, nothing is recorded. `out` may be NULL.
///
/// # Safety
/// `manager`, `spec` NULL or live handles; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_create(manager: *const VmanManager, spec: *const VmanVmSpec, out: *mut *mut VmanVm) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, spec) = unsafe { (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?) };
        let vm = manager.inner.create_vm(&spec.inner)?;
        if !out.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out, guard::into_handle(VmanVm::from(vm))) };
        }
        Ok(())
    })
}

/// Looks a live VM up by name; `*out` is owned by the caller.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanVm) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let vm = manager.inner.vm(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanVm::from(vm))) };
        Ok(())
    })
}

/// Live VMs, by name. `state` ("running", …) and `name_prefix` filter when
/// not NULL.
///
/// # Safety
/// `manager` NULL or live; strings NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_list(
    manager: *const VmanManager,
    state: *const c_char,
    name_prefix: *const c_char,
    out: *mut *mut VmanVmList,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, state, name_prefix) = unsafe {
            (
                guard::handle(manager, "manager")?,
                guard::optional_string(state, "state")?,
                guard::optional_string(name_prefix, "name_prefix")?,
            )
        };
        out_param(out, "out")?;
        let filter = VmFilter {
            state: state.map(str::parse::<VmState>).transpose().map_err(Failure::from)?,
            name_prefix: name_prefix.map(str::to_string),
        };
        let list = manager.inner.vms(&filter)?.into_iter().map(VmanVm::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanVmList(list))) };
        Ok(())
    })
}

/// Soft-deletes a VM: frees its name, releases its addresses, keeps its
/// history. While QEMU runs it: `VMAN_STATUS_INVALID_STATE`, unless `force`,
/// which stops it first.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_delete(manager: *const VmanManager, name: *const c_char, force: bool) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        manager.inner.delete_vm(name, force)?;
        Ok(())
    })
}

/// Frees a VM record (not a list item); NULL is a no-op.
///
/// # Safety
/// `vm` NULL or an owned record, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_free(vm: *mut VmanVm) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(vm) })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_list_len(list: *const VmanVmList) -> usize {
    record::number(list, |l| l.0.len())
}

/// VM `index`, borrowed from the list; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_list_get(list: *const VmanVmList, index: usize) -> *const VmanVm {
    record::item(list, |l| l.0.get(index))
}

/// Frees a list and its items; NULL is a no-op.
///
/// # Safety
/// `list` NULL or a live list, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_list_free(list: *mut VmanVmList) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(list) })
}

/// The VM's UUID, borrowed from the record.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_id(vm: *const VmanVm) -> *const c_char {
    record::text(vm, |v| &v.id)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_name(vm: *const VmanVm) -> *const c_char {
    record::text(vm, |v| &v.name)
}

/// The template the VM was made from.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_template(vm: *const VmanVm) -> *const c_char {
    record::text(vm, |v| &v.template)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_vcpus(vm: *const VmanVm) -> u32 {
    record::number(vm, |v| v.inner.vcpus)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_memory_mib(vm: *const VmanVm) -> u64 {
    record::number(vm, |v| v.inner.memory_mib)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_disk_gib(vm: *const VmanVm) -> u64 {
    record::number(vm, |v| v.inner.disk_gib)
}

/// The state when the record was read (`VMAN_VM_STATE_CREATED` for NULL).
///
/// # Safety
/// `vm` NULL or a live record.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_state(vm: *const VmanVm) -> VmanVmState {
    guard::get(VmanVmState::Created, || {
        // SAFETY: NULL or a live record, as every getter documents.
        unsafe { vm.as_ref() }.map_or(VmanVmState::Created, |v| v.inner.state.into())
    })
}

/// A static name for a state ("running"); "unknown" for other numbers.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_state_name(state: u32) -> *const c_char {
    // The names are core's (VmState::as_str), made C strings once; the
    // numbers follow VmState::ALL, as VmanVmState's do.
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| VmState::ALL.iter().map(|s| cstring(s.as_str())).collect());
    names.get(state as usize).map_or(c"unknown".as_ptr(), |n| n.as_ptr())
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_created_at_ms(vm: *const VmanVm) -> i64 {
    record::number(vm, |v| v.inner.created_at_ms)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_nic_count(vm: *const VmanVm) -> usize {
    record::number(vm, |v| v.nics.len())
}

/// NIC `index` of the VM, borrowed from the record; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_nic(vm: *const VmanVm, index: usize) -> *const VmanNic {
    record::item(vm, |v| v.nics.get(index))
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_network(nic: *const VmanNic) -> *const c_char {
    record::text(nic, |n| &n.network)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_vlan(nic: *const VmanNic) -> u16 {
    record::number(nic, |n| n.inner.vlan)
}

/// The NIC's allocated IPv4 address, e.g. "10.0.0.2".
#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_ip(nic: *const VmanNic) -> *const c_char {
    record::text(nic, |n| &n.ip)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_prefix_len(nic: *const VmanNic) -> u8 {
    record::number(nic, |n| n.inner.prefix_len)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_gateway(nic: *const VmanNic) -> *const c_char {
    record::text(nic, |n| &n.gateway)
}

/// The NIC's MAC, "aa:bb:cc:dd:ee:ff".
#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_mac(nic: *const VmanNic) -> *const c_char {
    record::text(nic, |n| &n.mac)
}

/// The QEMU pid while the VM has one, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_pid(vm: *const VmanVm) -> u32 {
    record::number(vm, |v| v.inner.pid.unwrap_or(0))
}

/// "kvm" or "tcg" once the VM has run; NULL before.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_accel(vm: *const VmanVm) -> *const c_char {
    record::text_item(vm, |v| v.accel.as_ref())
}

/// Why the last start failed or QEMU died; NULL if it did not.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_last_error(vm: *const VmanVm) -> *const c_char {
    record::text_item(vm, |v| v.last_error.as_ref())
}

/// The kernel booted directly; NULL if none.
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_kernel(vm: *const VmanVm) -> *const c_char {
    record::text_item(vm, |v| v.kernel.as_ref())
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_initrd(vm: *const VmanVm) -> *const c_char {
    record::text_item(vm, |v| v.initrd.as_ref())
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_cmdline(vm: *const VmanVm) -> *const c_char {
    record::text_item(vm, |v| v.cmdline.as_ref())
}

/// The host interface (tap) of this NIC while its VM runs bridged; NULL
/// otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn vman_nic_host_interface(nic: *const VmanNic) -> *const c_char {
    record::text_item(nic, |n| n.host_interface.as_ref())
}

/// How many host ports are forwarded to the guest (user-mode networking).
#[unsafe(no_mangle)]
pub extern "C" fn vman_vm_port_forward_count(vm: *const VmanVm) -> usize {
    record::number(vm, |v| v.inner.port_forwards.len())
}

/// Forward `index`: the host port on 127.0.0.1 that reaches `guest_port` of
/// NIC `nic_index`. Out-params written only on success;
/// `VMAN_STATUS_NOT_FOUND` if `index` is out of range.
///
/// # Safety
/// `vm` NULL or a live record; the out-params NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_port_forward(
    vm: *const VmanVm,
    index: usize,
    nic_index: *mut u32,
    guest_port: *mut u16,
    host_port: *mut u16,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let vm = unsafe { guard::handle(vm, "vm") }?;
        out_param(nic_index, "nic_index")?;
        out_param(guest_port, "guest_port")?;
        out_param(host_port, "host_port")?;
        let f = vm.inner.port_forwards.get(index).ok_or_else(|| {
            Failure::new(VmanStatus::NotFound, format!("VM {} has no port forward {index}", vm.inner.name))
        })?;
        // SAFETY: all three checked non-NULL above.
        unsafe {
            write_out(nic_index, f.nic_index);
            write_out(guest_port, f.guest_port);
            write_out(host_port, f.host_port);
        }
        Ok(())
    })
}
