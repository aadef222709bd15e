//! VLAN networks and their allocations.

use std::ffi::c_char;

use vman_core::{Allocation, Network, NetworkSpec, convert::int_arg};

use crate::error::VmanStatus;
use crate::guard::{self, call, new_handle, optional_handle};
use crate::manager::VmanManager;

/// A network definition being built; create with `vman_network_spec_new`.
/// Not thread-safe: one thread builds it.
#[derive(Debug)]
pub struct VmanNetworkSpec {
    inner: NetworkSpec,
}

record! {
    /// A network record; immutable, thread-safe.
    pub struct VmanNetwork(network) from Network;
    fn vman_network_id -> number<i64> = |n| n.id;
    fn vman_network_name -> text = |n| &n.name;
    fn vman_network_vlan -> number<u16> = |n| n.vlan;
    /// The subnet, e.g. "10.0.0.0/24".
    fn vman_network_cidr -> text = |n| n.cidr;
    /// The gateway address, e.g. "10.0.0.1".
    fn vman_network_gateway -> text = |n| n.gateway;
    /// How many reserved ranges the network has.
    fn vman_network_reserved_count -> number<usize> = |n| n.reserved.len();
    /// Reserved range `index`: "a.b.c.d" or "a.b.c.d-a.b.c.e".
    fn vman_network_reserved -> text_at = |n| &n.reserved;
    /// The uplink interface; NULL if the VLAN stays on this host.
    fn vman_network_uplink -> optional_text = |n| n.uplink.as_ref();
    /// How many DNS servers are handed to guests.
    fn vman_network_dns_count -> number<usize> = |n| n.dns.len();
    /// DNS server `index`.
    fn vman_network_dns -> text_at = |n| &n.dns;
    free vman_network_free;
    list VmanNetworkList(vman_network_list_len, vman_network_list_get, vman_network_list_free);
}

record! {
    /// Who holds one address of a network; immutable, thread-safe.
    pub struct VmanAllocation(allocation) from Allocation;
    /// The network's name.
    fn vman_allocation_network -> text = |a| &a.network;
    fn vman_allocation_ip -> text = |a| a.ip;
    fn vman_allocation_mac -> text = |a| a.mac;
    /// The holding VM's UUID.
    fn vman_allocation_vm_id -> text = |a| &a.vm_id;
    fn vman_allocation_vm_name -> text = |a| &a.vm_name;
    /// The position of the holding NIC on its VM, from 0.
    fn vman_allocation_nic_index -> number<u32> = |a| a.nic_index;
    list VmanAllocationList(vman_allocation_list_len, vman_allocation_list_get, vman_allocation_list_free);
}

/// Starts a network definition: `name`, VLAN id 1–4094, IPv4 `cidr` with no
/// host bits (prefix /8–/30). Checked when the network is created.
///
/// `out` must not be NULL. On success `*out` is the spec, owned by the
/// caller (free it with `vman_network_spec_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a VLAN id beyond 65535),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Thread-safe (it touches no shared state).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_new(
    name: *const c_char,
    vlan: u32,
    cidr: *const c_char,
    out: *mut *mut VmanNetworkSpec,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (name, cidr) = (guard::string(name, "name")?, guard::string(cidr, "cidr")?);
            let vlan = int_arg("VLAN id", i64::from(vlan))?;
            Ok(VmanNetworkSpec { inner: NetworkSpec::new(name, vlan, cidr) })
        })
    }
}

/// Sets the gateway (default: the first host of the subnet). Checked when
/// the network is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_set_gateway(spec: *mut VmanNetworkSpec, gateway: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", gateway, "gateway", |s, v| {
            s.inner.gateway = Some(v.into());
            Ok(())
        })
    }
}

/// Adds a reserved address or range ("a.b.c.d" or "a.b.c.d-a.b.c.e") that is
/// never handed out. Checked when the network is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_add_reserved(spec: *mut VmanNetworkSpec, range: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", range, "range", |s, v| {
            s.inner.reserved.push(v.into());
            Ok(())
        })
    }
}

/// Adds a DNS server handed to guests. Checked when the network is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_add_dns(spec: *mut VmanNetworkSpec, server: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", server, "server", |s, v| {
            s.inner.dns.push(v.into());
            Ok(())
        })
    }
}

/// Names a host interface whose 802.1Q sub-interface `<uplink>.<vid>` joins
/// the VLAN's bridge. Checked when the network is created (then
/// VMAN_STATUS_UNSUPPORTED on kernels without 802.1Q).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_set_uplink(spec: *mut VmanNetworkSpec, uplink: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", uplink, "uplink", |s, v| {
            s.inner.uplink = Some(v.into());
            Ok(())
        })
    }
}

/// Frees a spec; NULL is a no-op. No other thread may use `spec` during or
/// after the call. Never fails (clears the last error).
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_spec_free(spec: *mut VmanNetworkSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Creates a network from `spec`, which stays the caller's. Nothing is
/// recorded unless every part of it is valid.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_network_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name, VLAN id, subnet,
/// gateway, reservation or DNS server), VMAN_STATUS_ALREADY_EXISTS (the
/// name or VLAN id is taken, or the subnet overlaps a network's),
/// VMAN_STATUS_UNSUPPORTED (an uplink on a kernel without 802.1Q),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once; `spec` is
/// only read.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_create(
    manager: *const VmanManager,
    spec: *const VmanNetworkSpec,
    out: *mut *mut VmanNetwork,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, spec) = (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?);
            Ok(manager.inner.create_network(&spec.inner)?.into())
        })
    }
}

/// Looks a network up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_network_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanNetwork) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.network(name)?.into())
        })
    }
}

/// All networks, by VLAN id.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_network_list_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_list(manager: *const VmanManager, out: *mut *mut VmanNetworkList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.networks()?.into_iter().collect())) }
}

/// Deletes a network.
///
/// Fails with VMAN_STATUS_IN_USE (an address is allocated),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_network(name)?)
    })
}

/// Who holds which address of network `name`, in address order.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_allocation_list_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_network_allocations(
    manager: *const VmanManager,
    name: *const c_char,
    out: *mut *mut VmanAllocationList,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.allocations(name)?.into_iter().collect())
        })
    }
}
