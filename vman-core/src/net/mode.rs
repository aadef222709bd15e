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

/// Resolves `auto`, and refuses bridged mode without the privilege.
pub(crate) fn resolve_mode(requested: NetworkMode) -> Result<NetworkMode> {
    let privileged = has_net_admin();
    match requested {
        NetworkMode::Auto if privileged => Ok(NetworkMode::Bridged),
        NetworkMode::Auto => Ok(NetworkMode::User),
        NetworkMode::Bridged if !privileged => Err(Error::PermissionDenied {
            what: "bridged networking needs root or CAP_NET_ADMIN; open with network mode \"user\" for QEMU's user-mode NAT instead".into(),
            source: None,
        }),
        mode => Ok(mode),
    }
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
