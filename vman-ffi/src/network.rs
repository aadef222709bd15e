//! VLAN networks and their allocations.

use std::ffi::{CString, c_char};

use vman_core::{Allocation, Network, NetworkSpec, convert::int_arg};

use crate::error::VmanStatus;
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::{self, cstring};

/// A network definition being built; create with `vman_network_spec_new`.
/// Not thread-safe: one thread builds it.
#[derive(Debug)]
pub struct VmanNetworkSpec {
    inner: NetworkSpec,
}

/// A network record; read-only, safe to share between threads.
#[derive(Debug)]
pub struct VmanNetwork {
    inner: Network,
    name: CString,
    cidr: CString,
    gateway: CString,
    reserved: Vec<CString>,
    dns: Vec<CString>,
    uplink: Option<CString>,
}

impl From<Network> for VmanNetwork {
    fn from(n: Network) -> Self {
        VmanNetwork {
            name: cstring(&n.name),
            cidr: cstring(n.cidr.to_string()),
            gateway: cstring(n.gateway.to_string()),
            reserved: n.reserved.iter().map(|r| cstring(r.to_string())).collect(),
            dns: n.dns.iter().map(|d| cstring(d.to_string())).collect(),
            uplink: n.uplink.as_ref().map(cstring),
            inner: n,
        }
    }
}

#[derive(Debug)]
pub struct VmanNetworkList(Vec<VmanNetwork>);

/// Who holds one address; read-only.
#[derive(Debug)]
pub struct VmanAllocation {
    inner: Allocation,
    network: CString,
    ip: CString,
    mac: CString,
    vm_id: CString,
    vm_name: CString,
}

impl From<Allocation> for VmanAllocation {
    fn from(a: Allocation) -> Self {
        VmanAllocation {
            network: cstring(&a.network),
            ip: cstring(a.ip.to_string()),
            mac: cstring(a.mac.to_string()),
            vm_id: cstring(&a.vm_id),
            vm_name: cstring(&a.vm_name),
            inner: a,
        }
    }
}

#[derive(Debug)]
pub struct VmanAllocationList(Vec<VmanAllocation>);

/// Starts a network definition: `name`, VLAN id 1–4094, IPv4 `cidr` with no
/// host bits (prefix /8–/30). Checked when the network is created.
///
/// # Safety
/// Strings NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_new(
    name: *const c_char,
    vlan: u32,
    cidr: *const c_char,
    out: *mut *mut VmanNetworkSpec,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (name, cidr) = unsafe { (guard::string(name, "name")?, guard::string(cidr, "cidr")?) };
        out_param(out, "out")?;
        let vlan = int_arg("VLAN id", i64::from(vlan))?;
        let spec = NetworkSpec::new(name, vlan, cidr);
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanNetworkSpec { inner: spec })) };
        Ok(())
    })
}

/// Sets the gateway (default: the first host of the subnet).
///
/// # Safety
/// `spec` NULL or a live spec; `gateway` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_set_gateway(spec: *mut VmanNetworkSpec, gateway: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, gateway) = unsafe { (guard::handle_mut(spec, "spec")?, guard::string(gateway, "gateway")?) };
        spec.inner.gateway = Some(gateway.to_string());
        Ok(())
    })
}

/// Adds a reserved address or range ("a.b.c.d" or "a.b.c.d-a.b.c.e") that is
/// never handed out.
///
/// # Safety
/// As `vman_network_spec_set_gateway`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_add_reserved(spec: *mut VmanNetworkSpec, range: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, range) = unsafe { (guard::handle_mut(spec, "spec")?, guard::string(range, "range")?) };
        spec.inner.reserved.push(range.to_string());
        Ok(())
    })
}

/// Adds a DNS server handed to guests.
///
/// # Safety
/// As `vman_network_spec_set_gateway`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_add_dns(spec: *mut VmanNetworkSpec, server: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, server) = unsafe { (guard::handle_mut(spec, "spec")?, guard::string(server, "server")?) };
        spec.inner.dns.push(server.to_string());
        Ok(())
    })
}

/// Names a host interface whose 802.1Q sub-interface `<uplink>.<vid>` joins
/// the VLAN's bridge. Checked when the network is created:
/// `VMAN_STATUS_UNSUPPORTED` on kernels without 802.1Q.
///
/// # Safety
/// As `vman_network_spec_set_gateway`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_set_uplink(spec: *mut VmanNetworkSpec, uplink: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (spec, uplink) = unsafe { (guard::handle_mut(spec, "spec")?, guard::string(uplink, "uplink")?) };
        spec.inner.uplink = Some(uplink.to_string());
        Ok(())
    })
}

/// Frees a spec; NULL is a no-op.
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_free(spec: *mut VmanNetworkSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Creates a network from `spec` (which stays owned by the caller). `out`
/// may be NULL; otherwise `*out` owns the new record.
///
/// # Safety
/// `manager` and `spec` NULL or live handles; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_create(
    manager: *const VmanManager,
    spec: *const VmanNetworkSpec,
    out: *mut *mut VmanNetwork,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, spec) = unsafe { (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?) };
        let network = manager.inner.create_network(&spec.inner)?;
        if !out.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out, guard::into_handle(VmanNetwork::from(network))) };
        }
        Ok(())
    })
}

/// Looks a network up by name; `*out` is owned by the caller.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanNetwork) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let network = manager.inner.network(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanNetwork::from(network))) };
        Ok(())
    })
}

/// All networks, by VLAN id; `*out` is owned by the caller.
///
/// # Safety
/// `manager` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_list(manager: *const VmanManager, out: *mut *mut VmanNetworkList) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let list = manager.inner.networks()?.into_iter().map(VmanNetwork::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanNetworkList(list))) };
        Ok(())
    })
}

/// Deletes a network; `VMAN_STATUS_IN_USE` while any address is allocated.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        manager.inner.delete_network(name)?;
        Ok(())
    })
}

/// Who holds which address of network `name`, in address order.
///
/// # Safety
/// `manager` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_allocations(
    manager: *const VmanManager,
    name: *const c_char,
    out: *mut *mut VmanAllocationList,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let list = manager.inner.allocations(name)?.into_iter().map(VmanAllocation::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanAllocationList(list))) };
        Ok(())
    })
}

/// Frees a network record (not a list item); NULL is a no-op.
///
/// # Safety
/// `network` NULL or an owned record, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_free(network: *mut VmanNetwork) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(network) })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_list_len(list: *const VmanNetworkList) -> usize {
    record::number(list, |l| l.0.len())
}

/// Network `index`, borrowed from the list; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_network_list_get(list: *const VmanNetworkList, index: usize) -> *const VmanNetwork {
    record::item(list, |l| l.0.get(index))
}

/// Frees a list and its items; NULL is a no-op.
///
/// # Safety
/// `list` NULL or a live list, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_list_free(list: *mut VmanNetworkList) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(list) })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_id(network: *const VmanNetwork) -> i64 {
    record::number(network, |n| n.inner.id)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_name(network: *const VmanNetwork) -> *const c_char {
    record::text(network, |n| &n.name)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_vlan(network: *const VmanNetwork) -> u16 {
    record::number(network, |n| n.inner.vlan)
}

/// The subnet, e.g. "10.0.0.0/24", borrowed from the record.
#[unsafe(no_mangle)]
pub extern "C" fn vman_network_cidr(network: *const VmanNetwork) -> *const c_char {
    record::text(network, |n| &n.cidr)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_gateway(network: *const VmanNetwork) -> *const c_char {
    record::text(network, |n| &n.gateway)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_reserved_count(network: *const VmanNetwork) -> usize {
    record::number(network, |n| n.reserved.len())
}

/// Reserved range `index` ("a.b.c.d" or "a.b.c.d-a.b.c.e"); NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_network_reserved(network: *const VmanNetwork, index: usize) -> *const c_char {
    record::text_item(network, |n| n.reserved.get(index))
}

/// The uplink interface, or NULL if the VLAN stays on this host.
#[unsafe(no_mangle)]
pub extern "C" fn vman_network_uplink(network: *const VmanNetwork) -> *const c_char {
    record::text_item(network, |n| n.uplink.as_ref())
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_network_dns_count(network: *const VmanNetwork) -> usize {
    record::number(network, |n| n.dns.len())
}

/// DNS server `index`; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_network_dns(network: *const VmanNetwork, index: usize) -> *const c_char {
    record::text_item(network, |n| n.dns.get(index))
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_list_len(list: *const VmanAllocationList) -> usize {
    record::number(list, |l| l.0.len())
}

/// Allocation `index`, borrowed from the list; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_list_get(list: *const VmanAllocationList, index: usize) -> *const VmanAllocation {
    record::item(list, |l| l.0.get(index))
}

/// Frees a list and its items; NULL is a no-op.
///
/// # Safety
/// `list` NULL or a live list, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_allocation_list_free(list: *mut VmanAllocationList) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(list) })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_network(allocation: *const VmanAllocation) -> *const c_char {
    record::text(allocation, |a| &a.network)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_ip(allocation: *const VmanAllocation) -> *const c_char {
    record::text(allocation, |a| &a.ip)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_mac(allocation: *const VmanAllocation) -> *const c_char {
    record::text(allocation, |a| &a.mac)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_vm_id(allocation: *const VmanAllocation) -> *const c_char {
    record::text(allocation, |a| &a.vm_id)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_vm_name(allocation: *const VmanAllocation) -> *const c_char {
    record::text(allocation, |a| &a.vm_name)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_allocation_nic_index(allocation: *const VmanAllocation) -> u32 {
    record::number(allocation, |a| a.inner.nic_index)
}
