//! Networking: the VLAN model and its address pool (`model`, `mac`), how
//! NICs reach their networks on this host (`mode`, `plumbing`), the DHCP
//! server of a bridged VLAN (`dhcp`), and the Linux mechanism underneath
//! (`linux`: bridges and taps over netlink and `/dev/net/tun`).

pub(crate) mod dhcp;
pub mod linux;
pub(crate) mod mac;
pub(crate) mod mode;
pub(crate) mod model;
pub(crate) mod plumbing;
