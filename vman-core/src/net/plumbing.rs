//! The host side of VM networking: how each NIC of a starting VM reaches its
//! network, and how that is taken down again.
//!
//! - **Bridged** (root or CAP_NET_ADMIN): a VLAN is a Linux bridge of its own,
//!   `vmbr<vid>`, carrying the network's gateway address; each NIC of a
//!   running VM is a persistent tap on that bridge; one dnsmasq per bridge
//!   serves exactly the store's MAC→IP allocations (no dynamic pool). The
//!   bridge and its dnsmasq exist while some VM on the network has a QEMU.
//!   Nothing arriving on a vman bridge is routed by the host, so VLANs stay
//!   apart even on hosts with `ip_forward=1`: see [`ISOLATION_RULE_PRIORITY`].
//! - **User** (no privileges): QEMU's user-mode NAT per NIC, handing the
//!   guest its allocated address by DHCP, with a host port forwarded to the
//!   guest's SSH port (chosen at start, recorded in the store).
//! - **Isolated**: the NIC exists in the guest and reaches nothing.
//!
//! Every interface is recorded in `host_links` before it is created and
//! forgotten after it is deleted; an interface with a vman-like name but no
//! row is someone else's and is never touched.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::net::dhcp::{DhcpConfig, DhcpError, DhcpServer};
use crate::net::linux::{HostNetError, IpFamily, Netlink};
use crate::net::mode::{BRIDGED_NEEDS_NET_ADMIN, NetworkMode, SSH_PORT, require_net_admin};
use crate::net::model::Network;
use crate::runtime::Runtime;
use crate::runtime::argv::NicBackend;
use crate::store::{self, ForwardRow, HostLink, Store, now_ms};
use crate::vm::model::Vm;

/// The priority of the policy-routing rules that keep VLANs apart: one
/// `iif vmbr<vid> prohibit` rule per bridge and IP family, made before the
/// bridge and deleted after it. A packet from a guest is delivered if it is
/// for one of the host's own addresses (the `local` table's rule, at 0, comes
/// first: the gateway, DHCP, DNS), and otherwise refused, never routed, by
/// this rule, before any table that could route it (`main` is at 32766;
/// tools that route by policy sit between, e.g. Tailscale at 5210-5310 and
/// wg-quick at 32764-32765; Cilium moves the `local` rule to 100).
///
/// This is what isolates VLANs. The per-interface `forwarding` sysctl,
/// also written 0, cannot: the kernel rewrites every interface's flag
/// whenever `net.ipv4.ip_forward` changes (as Docker, libvirt or a
/// `sysctl -w` do). A rule is keyed by interface name, priority and action,
/// so every process of every state directory makes or finds the same one.
pub(crate) const ISOLATION_RULE_PRIORITY: u32 = 1000;
// After the `local` rule wherever it sits (0, or Cilium's 100), before `main`.
const _: () = assert!(100 < ISOLATION_RULE_PRIORITY && ISOLATION_RULE_PRIORITY < 32766);

const FAMILIES: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

/// `outcome` of a rule call for `family`, where a kernel without IPv6
/// counts as `without` (there is nothing to route then).
fn unless_no_ipv6<T>(family: IpFamily, outcome: Result<T, HostNetError>, without: T) -> Result<T> {
    match outcome {
        Err(HostNetError::Unsupported { .. }) if family == IpFamily::V6 => Ok(without),
        other => Ok(other?),
    }
}

/// Makes sure nothing arriving on `bridge` is routed by the host (it need
/// not exist yet). Idempotent; never duplicates a rule.
pub(crate) fn ensure_isolated(nl: &mut Netlink, bridge: &str) -> Result<()> {
    for family in FAMILIES {
        unless_no_ipv6(family, nl.ensure_prohibit_rule(family, bridge, ISOLATION_RULE_PRIORITY).map(drop), ())?;
    }
    Ok(())
}

/// Whether every rule of [`ensure_isolated`] is there.
pub(crate) fn is_isolated(nl: &mut Netlink, bridge: &str) -> Result<bool> {
    for family in FAMILIES {
        if !unless_no_ipv6(family, nl.has_prohibit_rule(family, bridge, ISOLATION_RULE_PRIORITY), true)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deletes the rules of [`ensure_isolated`] (every copy), once `bridge` is gone.
pub(crate) fn remove_isolation(nl: &mut Netlink, bridge: &str) -> Result<()> {
    for family in FAMILIES {
        unless_no_ipv6(family, nl.remove_prohibit_rule(family, bridge, ISOLATION_RULE_PRIORITY).map(drop), ())?;
    }
    Ok(())
}

pub(crate) fn bridge_name(vlan: u16) -> String {
    format!("vmbr{vlan}")
}

/// `vt` + 12 hex digits of the VM's UUID (its random tail) + the NIC slot.
pub(crate) fn tap_name(vm_id: &str, slot: u32) -> String {
    let hex: String = vm_id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("vt{}{:x}", &hex[hex.len().saturating_sub(12)..], slot)
}

/// What to do about a host interface that has a name vman wants: a VLAN's
/// bridge (`vmbr<vid>`) can take another name with another VLAN id.
fn foreign_advice(name: &str) -> &'static str {
    if name.starts_with("vmbr") { "remove or rename it, or use another VLAN id" } else { "remove or rename it" }
}

/// A stable, locally administered MAC for a bridge, so the gateway's MAC
/// does not change with the ports attached (a bridge takes its lowest port's).
fn bridge_mac(vlan: u16) -> [u8; 6] {
    [0x02, 0x76, 0x6d, 0x00, (vlan >> 8) as u8, vlan as u8]
}

impl From<HostNetError> for Error {
    fn from(e: HostNetError) -> Error {
        match e {
            HostNetError::PermissionDenied { .. } => {
                Error::PermissionDenied { what: BRIDGED_NEEDS_NET_ADMIN.into(), source: Some(Box::new(e)) }
            }
            HostNetError::NotOurs { name, .. } | HostNetError::AlreadyExists { link: name } => {
                Error::ForeignInterface { advice: foreign_advice(&name), name }
            }
            HostNetError::Unsupported { .. } => Error::Unsupported { what: "a host networking feature".into(), source: Some(Box::new(e)) },
            HostNetError::InvalidName { .. } | HostNetError::InvalidArgument { .. } => {
                Error::InvalidArgument { what: "host interface", reason: "refused by the host".into(), source: Some(Box::new(e)) }
            }
            _ => Error::HostNet(e),
        }
    }
}

impl From<DhcpError> for Error {
    fn from(e: DhcpError) -> Error {
        match e {
            DhcpError::Missing { .. } => {
                Error::Unsupported { what: "the DHCP server of bridged networks".into(), source: Some(Box::new(e)) }
            }
            DhcpError::Invalid { .. } => {
                Error::InvalidArgument { what: "DHCP configuration", reason: "refused".into(), source: Some(Box::new(e)) }
            }
            _ => Error::Dhcp(e),
        }
    }
}

/// The per-network files of its DHCP server.
pub(crate) fn dhcp_dir(run_root: &Path, network_id: i64) -> PathBuf {
    run_root.join(format!("net-{network_id}"))
}

/// Picks a free TCP port on 127.0.0.1 by binding port 0.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| Error::io("find a free port on", "127.0.0.1", e))?;
    Ok(listener.local_addr().map_err(|e| Error::io("read the port of", "127.0.0.1", e))?.port())
}

/// The user-mode backend of one NIC: slirp on the NIC's own subnet, handing
/// out the allocated address, with the guest's SSH port forwarded.
pub(crate) fn user_backend(nic_ip: Ipv4Addr, network: &ipnet::Ipv4Net, gateway: Ipv4Addr, host_port: u16) -> NicBackend {
    // slirp's DNS proxy needs an address of its own: the highest host, or
    // the one below if that is the guest's.
    let last = u32::from(network.broadcast()) - 1;
    let dns = [last, last - 1].into_iter().map(Ipv4Addr::from).find(|a| *a != nic_ip && *a != gateway).unwrap_or(gateway);
    NicBackend::User { net: *network, host: gateway, guest: nic_ip, dns, forwards: vec![(host_port, SSH_PORT)] }
}

/// The host side of VM networking, with what it works with named: the
/// store (links, forwards, leases), the runtime (locks, paths, binaries,
/// QEMU's user) and the mode this directory's NICs use. Borrowed from the
/// manager's context for one call.
pub(crate) struct HostNet<'a> {
    pub store: &'a Store,
    pub runtime: &'a Runtime,
    pub mode: NetworkMode,
}

impl HostNet<'_> {
    /// Refuses to start `vm` when plugging its NICs needs a privilege this
    /// process lacks (bridged mode without CAP_NET_ADMIN), before anything
    /// is recorded or made.
    pub(crate) fn check_can_plug(&self, vm: &Vm) -> Result<()> {
        match self.mode {
            NetworkMode::Bridged | NetworkMode::Auto if !vm.nics.is_empty() => require_net_admin(),
            _ => Ok(()),
        }
    }

    /// Makes the host side of every NIC of `vm` (in `starting`), returning
    /// QEMU's backends.
    pub(crate) fn plug_nics(&self, vm: &Vm) -> Result<Vec<NicBackend>> {
        match self.mode {
            NetworkMode::Isolated => Ok(vec![NicBackend::Isolated; vm.nics.len()]),
            NetworkMode::User => {
                let mut backends = Vec::new();
                let mut forwards = Vec::new();
                for nic in &vm.nics {
                    let port = free_port()?;
                    let net = ipnet::Ipv4Net::new(nic.ip, nic.prefix_len).map_err(|e| Error::Internal(e.to_string()))?.trunc();
                    backends.push(user_backend(nic.ip, &net, nic.gateway, port));
                    forwards.push(ForwardRow { slot: nic.index, guest_port: SSH_PORT, host_port: port });
                }
                self.store.write(|tx| store::set_forwards(tx, &vm.id, &forwards))?;
                Ok(backends)
            }
            // A failure part-way is undone by the caller recording the
            // failed start (`fail_start`), which unplugs in one transaction.
            NetworkMode::Bridged | NetworkMode::Auto => {
                self.check_can_plug(vm)?;
                self.plug_bridged(vm)
            }
        }
    }

    fn plug_bridged(&self, vm: &Vm) -> Result<Vec<NicBackend>> {
        let mut nl = Netlink::open()?;
        let mut networks: Vec<Network> = Vec::new();
        for nic in &vm.nics {
            if !networks.iter().any(|n| n.name == nic.network) {
                networks.push(
                    self.store
                        .read(|tx| store::network_by_name(tx, &nic.network))?
                        .ok_or_else(|| Error::not_found("network", &nic.network))?,
                );
            }
        }
        let owner = self.runtime.values().qemu_creds.as_ref().map(|c| c.uid);
        let mut taps = vec![String::new(); vm.nics.len()];
        // Per network, under its lock: the bridge, its DHCP server and this
        // VM's taps on it. A teardown of the network takes the same lock, so
        // it can never remove what a start is plugging in.
        for network in &networks {
            let _net_lock = self.runtime.lock_network(network.id)?;
            self.ensure_network_up(&mut nl, network)?;
            for (i, nic) in vm.nics.iter().enumerate().filter(|(_, nic)| nic.network == network.name) {
                let tap = tap_name(&vm.id, nic.index);
                // Intent first: a tap is recorded before it exists.
                self.store.write(|tx| {
                    store::record_link(
                        tx,
                        &HostLink {
                            name: tap.clone(),
                            is_bridge: false,
                            network_id: network.id,
                            vm_id: Some(vm.id.clone()),
                            slot: Some(nic.index),
                        },
                        now_ms(),
                    )
                })?;
                nl.ensure_tap_on_bridge(&tap, &bridge_name(nic.vlan), owner)?;
                taps[i] = tap;
            }
        }
        Ok(taps.into_iter().map(|ifname| NicBackend::Tap { ifname }).collect())
    }

    /// The network's bridge (and the taps of its running VMs on it) and its
    /// DHCP server.
    pub(crate) fn ensure_network_up(&self, nl: &mut Netlink, network: &Network) -> Result<()> {
        self.ensure_bridge(nl, network)?;
        self.ensure_dhcp(network)
    }

    /// The network's bridge, with the gateway address, up, isolated.
    fn ensure_bridge(&self, nl: &mut Netlink, network: &Network) -> Result<()> {
        let name = bridge_name(network.vlan);
        let ours = self.store.read(|tx| store::link(tx, &name))?.is_some_and(|l| l.is_bridge && l.network_id == network.id);
        if !ours && nl.link_by_name(&name)?.is_some() {
            // An interface of that name that vman did not record: not ours.
            return Err(Error::ForeignInterface { advice: foreign_advice(&name), name });
        }
        self.store.write(|tx| {
            store::record_link(
                tx,
                &HostLink { name: name.clone(), is_bridge: true, network_id: network.id, vm_id: None, slot: None },
                now_ms(),
            )
        })?;
        // Isolated before it exists, so it never routes a packet.
        ensure_isolated(nl, &name)?;
        let bridge = nl.ensure_bridge(&name, Some(bridge_mac(network.vlan)), Some((network.gateway, network.cidr.prefix_len())))?;
        if let Some(uplink) = &network.uplink {
            // The VLAN leaves the host through <uplink>.<vid>, a port of the bridge.
            let vlan_if = format!("{uplink}.{}", network.vlan);
            if nl.link_by_name(&vlan_if)?.is_none() {
                nl.create_vlan(uplink.as_str(), network.vlan, &vlan_if)?;
            }
            let port = nl.link_by_name(&vlan_if)?.ok_or_else(|| Error::not_found("uplink interface", &vlan_if))?;
            nl.set_controller(port.index, bridge)?;
            nl.set_up(port.index)?;
        }
        // Belt and braces: the rules isolate; this flag alone would not
        // survive a change of `ip_forward` (see ISOLATION_RULE_PRIORITY).
        let sysctl = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
        fs::write(&sysctl, "0").map_err(|e| Error::io("turn off forwarding on", &sysctl, e))?;
        Ok(())
    }

    /// Starts or reloads the network's DHCP server with every allocation.
    fn ensure_dhcp(&self, network: &Network) -> Result<()> {
        let leases = self.store.read(|tx| store::leases_of(tx, network.id))?;
        let hosts =
            leases.into_iter().map(|(mac, ip)| Ok((mac.parse::<crate::MacAddr>()?.0, Ipv4Addr::from(ip)))).collect::<Result<Vec<_>>>()?;
        let config = DhcpConfig {
            bridge: bridge_name(network.vlan),
            network: network.cidr.network(),
            prefix_len: network.cidr.prefix_len(),
            gateway: network.gateway,
            dns: network.dns.clone(),
            hosts,
            lease_secs: 3600,
        };
        self.dhcp(network.id).ensure(&config)?;
        Ok(())
    }

    pub(crate) fn dhcp(&self, network_id: i64) -> DhcpServer {
        DhcpServer::new(dhcp_dir(&self.runtime.run_root, network_id), self.runtime.values().dnsmasq.clone())
    }

    /// Removes the host side of a VM whose QEMU is gone (its exit already
    /// recorded): its taps, and each of its networks' bridge and DHCP server
    /// if no other VM there still runs. Never inside a store transaction:
    /// per network under the network's lock (which a start's plugging also
    /// takes), and only while the store still says the VM has no QEMU, so it
    /// cannot undo a new start of it. Best effort: what it cannot remove
    /// keeps its row, for the reconciler to retry.
    pub(crate) fn unplug_nics(&self, vm_id: &str) {
        let result = (|| -> Result<()> {
            let (taps, networks, bridges) = self.store.read(|tx| {
                let networks = store::networks_of_vm(tx, vm_id)?;
                let bridges = store::all_links(tx)?.into_iter().filter(|l| l.is_bridge && networks.contains(&l.network_id)).count();
                Ok((store::taps_of(tx, vm_id)?, networks, bridges))
            })?;
            // The VM's networks come from its NICs, not its taps: a start
            // that failed before making a tap may still have made a bridge.
            if taps.is_empty() && bridges == 0 {
                return Ok(());
            }
            let mut nl = Netlink::open()?;
            for network_id in networks {
                let _net_lock = self.runtime.lock_network(network_id)?;
                let (down, taps) = self.store.read(|tx| {
                    let down = store::vm_by_id(tx, vm_id)?.is_none_or(|vm| !vm.state.has_process());
                    Ok((down, store::taps_of(tx, vm_id)?.into_iter().filter(|t| t.network_id == network_id).collect::<Vec<_>>()))
                })?;
                if !down {
                    continue; // started again meanwhile: these taps are its new run's
                }
                for tap in taps {
                    match nl.ensure_tap_absent(&tap.name) {
                        Ok(_) => self.store.write(|tx| store::forget_link(tx, &tap.name))?,
                        Err(e) => log::warn!("cannot remove tap {}: {e}", tap.name),
                    }
                }
                self.release_network_if_idle(&mut nl, network_id)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            log::warn!("cannot take down the network of VM {vm_id}: {}", e.full_message());
        }
    }

    /// Takes a network's bridge and DHCP server down if no VM on it runs.
    /// The caller holds the network's lock; the host work happens outside
    /// any transaction, and each link is forgotten once it is gone.
    pub(crate) fn release_network_if_idle(&self, nl: &mut Netlink, network_id: i64) -> Result<bool> {
        let (running, bridges, uplink) = self.store.read(|tx| {
            let bridges: Vec<HostLink> = store::all_links(tx)?.into_iter().filter(|l| l.is_bridge && l.network_id == network_id).collect();
            let uplink = store::list_networks(tx)?
                .into_iter()
                .find(|n| n.id == network_id)
                .and_then(|n| n.uplink.map(|u| format!("{u}.{}", n.vlan)));
            Ok((store::running_vms_on(tx, network_id)?, bridges, uplink))
        })?;
        if running > 0 {
            return Ok(false);
        }
        if let Err(e) = self.dhcp(network_id).stop() {
            log::warn!("cannot stop the DHCP server of network {network_id}: {e}");
        }
        if let (Some(vlan_if), false) = (uplink, bridges.is_empty())
            && let Err(e) = nl.delete_link(vlan_if.as_str())
        {
            log::warn!("cannot remove uplink {vlan_if}: {e}");
        }
        // The bridge first, then its rules: it never routes meanwhile.
        for bridge in bridges {
            match nl.ensure_bridge_absent(&bridge.name).map_err(Error::from).and_then(|_| remove_isolation(nl, &bridge.name)) {
                Ok(()) => self.store.write(|tx| store::forget_link(tx, &bridge.name))?,
                Err(e) => log::warn!("cannot remove bridge {} or its isolation rules: {}", bridge.name, e.full_message()),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_are_stable() {
        let id = "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e";
        assert_eq!(tap_name(id, 0), "vt5f6a7b8c9d0e0");
        assert_eq!(tap_name(id, 15), "vt5f6a7b8c9d0ef");
        assert!(tap_name(id, 15).len() <= crate::net::linux::IFNAME_MAX);
        assert_eq!(bridge_name(4094), "vmbr4094");
        assert!(bridge_mac(100)[0] & 0x02 != 0, "locally administered");
    }

    #[test]
    fn user_mode_dns_avoids_the_guest_and_gateway() {
        let net: ipnet::Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let gw: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let NicBackend::User { dns, .. } = user_backend("10.0.0.6".parse().unwrap(), &net, gw, 2222) else { panic!() };
        assert_eq!(dns, "10.0.0.5".parse::<Ipv4Addr>().unwrap());
        let NicBackend::User { dns, .. } = user_backend("10.0.0.2".parse().unwrap(), &net, gw, 2222) else { panic!() };
        assert_eq!(dns, "10.0.0.6".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn a_foreign_interface_is_named_apart_from_the_advice() {
        let veth: Error = HostNetError::NotOurs { name: "vmbr3101".into(), expected: "bridge", found: "kind veth".into() }.into();
        assert_eq!(veth.kind(), crate::ErrorKind::AlreadyExists);
        assert_eq!(
            veth.to_string(),
            "Host interface vmbr3101 exists and was not made by vman; remove or rename it, or use another VLAN id"
        );
        let tap: Error = HostNetError::AlreadyExists { link: "vt5f6a7b8c9d0e0".into() }.into();
        assert_eq!(tap.kind(), crate::ErrorKind::AlreadyExists);
        assert_eq!(tap.to_string(), "Host interface vt5f6a7b8c9d0e0 exists and was not made by vman; remove or rename it");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("user".parse::<NetworkMode>().unwrap(), NetworkMode::User);
        assert_eq!("nat".parse::<NetworkMode>().unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
