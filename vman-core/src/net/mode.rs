//! How this host connects VM NICs to their networks, and whether this
//! process may do it.

use std::fs;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::linux::Netlink;

/// How VM NICs reach their networks on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Bridged with CAP_NET_ADMIN, otherwise user.
    #[default]
    Auto,
    /// Per-VLAN bridges, taps, DHCP (root or CAP_NET_ADMIN).
    Bridged,
    /// QEMU user-mode NAT with a forwarded SSH port (no privileges).
    User,
    /// NICs that reach nothing.
    Isolated,
}

impl NetworkMode {
    /// The mode's lower-case name, as serde writes it: `auto`, `bridged`,
    /// `user` or `isolated`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Auto => "auto",
            NetworkMode::Bridged => "bridged",
            NetworkMode::User => "user",
            NetworkMode::Isolated => "isolated",
        }
    }
}

impl FromStr for NetworkMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<NetworkMode> {
        [NetworkMode::Auto, NetworkMode::Bridged, NetworkMode::User, NetworkMode::Isolated]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::invalid("network mode", format!("{s:?} is not one of auto, bridged, user, isolated")))
    }
}

/// The guest port forwarded in user mode.
pub const SSH_PORT: u16 = 22;

/// Whether this process may manage network interfaces (CAP_NET_ADMIN in its
/// effective set).
pub(crate) fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| u64::from_str_radix(v.trim(), 16).ok())))
        .flatten()
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Resolves `auto`: bridged with CAP_NET_ADMIN, else user. Any other mode
/// stands as it is, privileged or not: a directory's setting says how its
/// VMs are plugged in, and only doing that ([`require_net_admin`]) needs
/// the privilege; reading the directory never does.
pub(crate) fn resolve_mode(requested: NetworkMode) -> NetworkMode {
    match requested {
        NetworkMode::Auto if has_net_admin() => NetworkMode::Bridged,
        NetworkMode::Auto => NetworkMode::User,
        mode => mode,
    }
}

/// What an unprivileged process is told when it would make bridged
/// networking: who can, and how the directory leaves bridged mode.
pub(crate) const BRIDGED_NEEDS_NET_ADMIN: &str = "bridged networking needs root or CAP_NET_ADMIN: run vman as root or grant it \
     CAP_NET_ADMIN, or switch this state directory to QEMU's user-mode NAT with `vman settings set network user`";

/// Refuses, with [`BRIDGED_NEEDS_NET_ADMIN`], host networking work (bridges,
/// taps, making a directory bridged) in a process without CAP_NET_ADMIN.
pub(crate) fn require_net_admin() -> Result<()> {
    if has_net_admin() { Ok(()) } else { Err(Error::PermissionDenied { what: BRIDGED_NEEDS_NET_ADMIN.into(), source: None }) }
}

/// Refuses an uplink this host cannot serve: the kernel must have 802.1Q.
pub(crate) fn check_uplink_support(uplink: &str, vlan: u16) -> Result<()> {
    if Netlink::open()?.vlan_supported() {
        return Ok(());
    }
    Err(Error::Unsupported {
        what: format!(
            "this kernel has no 802.1Q VLAN support, so {uplink}.{vlan} cannot join the bridge; \
             leave out the uplink (the VLAN then stays on this host) or load the 8021q module"
        ),
        source: None,
    })
}
