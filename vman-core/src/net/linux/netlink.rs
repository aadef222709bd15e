//! Blocking rtnetlink client: links, bridges, ports, IPv4 addresses, vlans.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoTun, InfoVlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{HostNetError, LinkInfo, LinkRef, Result, TunInfo, map_errno, validate_ifname, validate_mac};

/// Receive buffer size. The kernel caps one dump datagram at 32 KiB, and
/// `recv` is told `MSG_TRUNC` so a larger datagram is detected, not cut.
const RECV_BUF: usize = 64 * 1024;
/// How long one request may wait for the kernel's answer.
const RECV_TIMEOUT_SECS: i64 = 30;
/// A dump that raced with changes (NLM_F_DUMP_INTR) is restarted this often.
const DUMP_ATTEMPTS: usize = 5;
/// Extended-ack attribute carrying the kernel's error text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Name used by [`Netlink::vlan_supported`]'s probe; nothing by this name
/// is ever created (the probe request is incomplete on purpose).
const VLAN_PROBE_NAME: &str = "vmanvlanprobe";
const VLAN_FEATURE: &str = "802.1Q vlan interfaces";

// IFLA_TUN_* (linux/if_link.h); netlink-packet-route keeps them opaque.
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;

/// A failed request, before it is given the caller's context.
#[derive(Debug)]
pub(super) enum ReqError {
    /// The kernel answered with an error (`errno` is positive).
    Kernel { errno: i32, extack: Option<String> },
    /// Sending, receiving or decoding failed.
    Transport(io::Error),
}

impl ReqError {
    pub(super) fn errno(&self) -> Option<i32> {
        match self {
            ReqError::Kernel { errno, .. } => Some(*errno),
            ReqError::Transport(_) => None,
        }
    }

    pub(super) fn into_error(self, op: &'static str, link: &dyn fmt::Display) -> HostNetError {
        match self {
            ReqError::Kernel { errno, extack } => map_errno(op, link, errno, extack),
            ReqError::Transport(source) => HostNetError::Netlink { op, extack: None, source },
        }
    }
}

impl From<io::Error> for ReqError {
    fn from(e: io::Error) -> Self {
        ReqError::Transport(e)
    }
}

enum Collected {
    Complete(Vec<RouteNetlinkMessage>),
    /// The dump raced with a change and must be restarted.
    Interrupted,
}

/// A blocking `NETLINK_ROUTE` socket in the calling thread's network
/// namespace.
///
/// Calls take `&mut self`: one request is in flight at a time. Opening one
/// costs a few microseconds, so a short-lived `Netlink` per operation is fine;
/// to share one between threads put it behind a mutex.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens a rtnetlink socket, with extended acks and a receive timeout.
    pub fn open() -> Result<Self> {
        let op = "open a netlink socket";
        let wrap = |source| HostNetError::Netlink { op, extack: None, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(wrap)?;
        socket.bind_auto().map_err(wrap)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(wrap)?;
        // Both are optional: without them errors just carry no kernel text.
        if let Err(e) = socket.set_ext_ack(true) {
            log::debug!("netlink extended ack unavailable: {e}");
        }
        if let Err(e) = socket.set_cap_ack(true) {
            log::debug!("netlink capped ack unavailable: {e}");
        }
        let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT_SECS, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout).map_err(|e| wrap(io::Error::from(e)))?;
        Ok(Netlink { socket, seq: std::process::id().wrapping_shl(16), buf: Vec::with_capacity(RECV_BUF) })
    }

    // ----- links -------------------------------------------------------

    /// The interface called `name` (or having `name` as an alternative
    /// name), or `None`.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        validate_ifname(name)?;
        self.get_link(LinkRef::Name(name))
    }

    /// The interface with index `index`, or `None`.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>> {
        self.get_link(LinkRef::Index(index))
    }

    fn get_link(&mut self, link: LinkRef<'_>) -> Result<Option<LinkInfo>> {
        let mut msg = link_message(link);
        msg.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_info_from(l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.into_error("get link", &link)),
        }
    }

    /// Every interface in the namespace.
    pub fn list_links(&mut self) -> Result<Vec<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_DUMP).map_err(|e| e.into_error("list links", &"(all)"))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_info_from(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates bridge `name` (fails with `AlreadyExists` if the name is
    /// taken by anything). Give `mac` so the bridge keeps that address
    /// whatever ports join; otherwise the kernel picks one.
    pub fn create_bridge(&mut self, name: &str, mac: Option<[u8; 6]>) -> Result<()> {
        validate_ifname(name)?;
        if let Some(mac) = &mac {
            validate_mac(mac)?;
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map_err(|e| e.into_error("create bridge", &name))?;
        log::debug!("created bridge {name}");
        Ok(())
    }

    /// Deletes any interface, whatever its kind. Prefer
    /// [`ensure_bridge_absent`](Self::ensure_bridge_absent) /
    /// [`ensure_tap_absent`](Self::ensure_tap_absent), which check the kind.
    pub fn delete_link<'a>(&mut self, link: impl Into<LinkRef<'a>>) -> Result<()> {
        let link = link.into();
        if let LinkRef::Name(name) = link {
            validate_ifname(name)?;
        }
        self.request(RouteNetlinkMessage::DelLink(link_message(link)), 0).map_err(|e| e.into_error("delete link", &link))?;
        log::debug!("deleted link {link}");
        Ok(())
    }

    /// Sets the interface administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = link_message(LinkRef::Index(index));
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map_err(|e| e.into_error("set link up", &LinkRef::Index(index)))?;
        Ok(())
    }

    /// Sets the interface's MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        validate_mac(&mac)?;
        let mut msg = link_message(LinkRef::Index(index));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map_err(|e| e.into_error("set MAC address", &LinkRef::Index(index)))?;
        Ok(())
    }

    /// Makes `port_index` a port of bridge `bridge_index`.
    pub fn set_controller(&mut self, port_index: u32, bridge_index: u32) -> Result<()> {
        let mut msg = link_message(LinkRef::Index(port_index));
        msg.attributes.push(LinkAttribute::Controller(bridge_index));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map_err(|e| {
            let what = format!("with ifindex {port_index} or bridge with ifindex {bridge_index}");
            e.into_error("attach port to bridge", &what)
        })?;
        Ok(())
    }

    /// Detaches `port_index` from its bridge (no-op if it has none).
    pub fn set_nocontroller(&mut self, port_index: u32) -> Result<()> {
        let mut msg = link_message(LinkRef::Index(port_index));
        msg.attributes.push(LinkAttribute::Controller(0));
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(|e| e.into_error("detach port from bridge", &LinkRef::Index(port_index)))?;
        Ok(())
    }

    /// Adds `addr/prefix` (with the subnet's broadcast address) to the
    /// interface. Adding an address that is already there succeeds.
    pub fn add_ipv4_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        if prefix > 32 {
            return Err(HostNetError::InvalidArgument {
                what: "IPv4 prefix length",
                value: prefix.to_string(),
                expected: "must be 0 to 32",
            });
        }
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
        if let Some(brd) = ipv4_broadcast(addr, prefix) {
            msg.attributes.push(AddressAttribute::Broadcast(brd));
        }
        match self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e.into_error("add address", &LinkRef::Index(index))),
        }
    }

    // ----- vlans ---------------------------------------------------------

    /// Creates `name`, an 802.1Q link on `uplink` for `vid`. Fails with
    /// `Unsupported` where the kernel has no 8021q.
    pub fn create_vlan<'a>(&mut self, uplink: impl Into<LinkRef<'a>>, vid: u16, name: &str) -> Result<()> {
        validate_ifname(name)?;
        if !(1..=4094).contains(&vid) {
            return Err(HostNetError::InvalidArgument { what: "vlan id", value: vid.to_string(), expected: "must be 1 to 4094" });
        }
        let uplink = uplink.into();
        let uplink_index = match uplink {
            LinkRef::Index(index) => index,
            LinkRef::Name(n) => self.link_by_name(n)?.ok_or_else(|| HostNetError::NotFound { link: n.to_owned() })?.index,
        };
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::Link(uplink_index));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Vlan),
            NlLinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(vid)])),
        ]));
        match self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => {
                log::debug!("created vlan {name} (id {vid}) on {uplink}");
                Ok(())
            }
            Err(ReqError::Kernel { errno: libc::EOPNOTSUPP, extack }) => {
                Err(HostNetError::Unsupported { feature: VLAN_FEATURE, extack, source: io::Error::from_raw_os_error(libc::EOPNOTSUPP) })
            }
            Err(e) if e.errno() == Some(libc::ENODEV) => Err(HostNetError::NotFound { link: uplink.to_string() }),
            Err(e) => Err(e.into_error("create vlan", &name)),
        }
    }

    /// Whether this kernel can make 802.1Q vlan links. Creates nothing:
    /// the probe asks for a vlan link without vlan id or uplink, which the
    /// kernel refuses with EINVAL when it knows the kind and EOPNOTSUPP when
    /// it does not (loading 8021q on demand if it is a module).
    pub fn vlan_supported(&mut self) -> bool {
        if Path::new("/proc/net/vlan").exists() {
            return true;
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(VLAN_PROBE_NAME.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Vlan)]));
        let fallback = || Path::new("/sys/module/8021q").exists();
        match self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL) {
            Err(ReqError::Kernel { errno: libc::EOPNOTSUPP, .. }) => false,
            Err(ReqError::Kernel { errno: libc::EINVAL, .. }) => true,
            Ok(_) => {
                // Cannot happen with a kernel that validates vlan requests;
                // roll back rather than leave a link behind.
                log::warn!("vlan probe unexpectedly created {VLAN_PROBE_NAME}; deleting it");
                if let Err(e) = self.delete_link(VLAN_PROBE_NAME) {
                    log::warn!("could not delete {VLAN_PROBE_NAME}: {e}");
                }
                true
            }
            Err(e) => {
                log::debug!("vlan probe inconclusive ({e:?}); checking /sys/module/8021q");
                fallback()
            }
        }
    }

    // ----- idempotent bridge management ---------------------------------

    /// Makes sure bridge `name` exists, is up, has `mac` (if given) and
    /// `ipv4` (if given). Returns its index. Fails with `NotOurs` if `name`
    /// belongs to an interface that is not a bridge.
    pub fn ensure_bridge(&mut self, name: &str, mac: Option<[u8; 6]>, ipv4: Option<(Ipv4Addr, u8)>) -> Result<u32> {
        validate_ifname(name)?;
        if let Some(mac) = &mac {
            validate_mac(mac)?;
        }
        let info = match self.link_by_name(name)? {
            Some(info) => info,
            None => {
                match self.create_bridge(name, mac) {
                    Ok(()) | Err(HostNetError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                self.link_by_name(name)?.ok_or_else(|| HostNetError::NotFound { link: name.to_owned() })?
            }
        };
        expect_kind(name, &info, "bridge", LinkInfo::is_bridge)?;
        if let Some(mac) = mac
            && info.mac != Some(mac)
        {
            self.set_mac(info.index, mac)?;
        }
        if !info.up {
            self.set_up(info.index)?;
        }
        if let Some((addr, prefix)) = ipv4 {
            self.add_ipv4_address(info.index, addr, prefix)?;
        }
        Ok(info.index)
    }

    /// Deletes bridge `name` if it exists. Returns whether it did. Fails
    /// with `NotOurs` (deleting nothing) if `name` is not a bridge.
    pub fn ensure_bridge_absent(&mut self, name: &str) -> Result<bool> {
        let Some(info) = self.link_by_name(name)? else {
            return Ok(false);
        };
        expect_kind(name, &info, "bridge", LinkInfo::is_bridge)?;
        match self.delete_link(info.index) {
            Ok(()) => Ok(true),
            Err(HostNetError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ----- transport -----------------------------------------------------

    /// Sends one request and collects its answer: for a dump every message
    /// up to NLMSG_DONE (restarting if the dump was interrupted), otherwise
    /// every message up to the ack. Only answers carrying our sequence
    /// number count; stale ones (from a request that timed out) are dropped.
    pub(super) fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<Vec<RouteNetlinkMessage>, ReqError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        for _ in 0..DUMP_ATTEMPTS {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = seq;
            let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg.clone()));
            packet.finalize();
            let mut bytes = vec![0u8; packet.buffer_len()];
            packet.serialize(&mut bytes);
            let sent = self.socket.send(&bytes, 0)?;
            if sent != bytes.len() {
                return Err(ReqError::Transport(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("netlink send was short: {sent} of {} bytes", bytes.len()),
                )));
            }
            match self.collect(seq, dump)? {
                Collected::Complete(replies) => return Ok(replies),
                Collected::Interrupted => log::debug!("netlink dump interrupted; restarting"),
            }
        }
        Err(ReqError::Transport(io::Error::new(io::ErrorKind::Interrupted, "netlink dump kept being interrupted by concurrent changes")))
    }

    fn collect(&mut self, seq: u32, dump: bool) -> std::result::Result<Collected, ReqError> {
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let len = self.recv()?;
            let mut offset = 0;
            while offset < len {
                let bytes = &self.buf[offset..len];
                let msg_len = NetlinkBuffer::new_checked(bytes).map_err(decode_error)?.length() as usize;
                if msg_len < NLMSG_HDRLEN || msg_len > bytes.len() {
                    return Err(decode_error(format!("bad netlink message length {msg_len}")));
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..msg_len]).map_err(decode_error)?;
                offset += align4(msg_len);
                let header = msg.header;
                if header.sequence_number != seq {
                    log::debug!("dropping stale netlink message (seq {} while waiting for {seq})", header.sequence_number);
                    continue;
                }
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(err) => match err.code {
                        None if dump => {}
                        None => return Ok(Collected::Complete(replies)),
                        Some(code) => {
                            return Err(ReqError::Kernel {
                                errno: code.get().saturating_abs(),
                                extack: error_extack(header.flags, &err.header),
                            });
                        }
                    },
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            let extack = if header.flags & NLM_F_ACK_TLVS != 0 { extack_message(&done.extended_ack) } else { None };
                            return Err(ReqError::Kernel { errno: done.code.saturating_abs(), extack });
                        }
                        return Ok(if interrupted { Collected::Interrupted } else { Collected::Complete(replies) });
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(decode_error("netlink overrun"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Receives one datagram into `self.buf`; returns its length.
    fn recv(&mut self) -> std::result::Result<usize, ReqError> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(len) if len > self.buf.len() => {
                    return Err(decode_error(format!("netlink datagram of {len} bytes exceeds the {RECV_BUF}-byte buffer")));
                }
                Ok(len) => return Ok(len),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(ReqError::Transport(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no netlink answer within {RECV_TIMEOUT_SECS} s"),
                    )));
                }
                Err(e) => return Err(ReqError::Transport(e)),
            }
        }
    }
}

/// Fails with `NotOurs` unless `info` is the interface called `name` and
/// passes `is_kind`.
pub(super) fn expect_kind(name: &str, info: &LinkInfo, expected: &'static str, is_kind: fn(&LinkInfo) -> bool) -> Result<()> {
    let found = if info.name != name {
        format!("an alternative name of {}", info.name)
    } else if !is_kind(info) {
        info.kind_description()
    } else {
        return Ok(());
    };
    Err(HostNetError::NotOurs { name: name.to_owned(), expected, found })
}

fn link_message(link: LinkRef<'_>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    match link {
        LinkRef::Index(index) => msg.header.index = index,
        LinkRef::Name(name) => msg.attributes.push(LinkAttribute::IfName(name.to_owned())),
    }
    msg
}

fn link_info_from(msg: LinkMessage) -> LinkInfo {
    let flags = msg.header.flags;
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        controller_index: None,
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        mac: None,
        tun: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Controller(index) if index != 0 => info.controller_index = Some(index),
            LinkAttribute::Address(addr) => info.mac = <[u8; 6]>::try_from(addr.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                for item in infos {
                    match item {
                        NlLinkInfo::Kind(kind) => info.kind = Some(kind.to_string()),
                        NlLinkInfo::Data(InfoData::Tun(attrs)) => info.tun = Some(tun_info_from(&attrs)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if info.kind.as_deref() == Some("tun") && info.tun.is_none() {
        // Kernels before 4.15 send no IFLA_TUN_* data; a tun-kind link
        // with an Ethernet address is then a tap.
        info.tun = Some(TunInfo { tap: info.mac.is_some(), ..TunInfo::default() });
    }
    info
}

fn tun_info_from(attrs: &[InfoTun]) -> TunInfo {
    use netlink_packet_core::Nla;
    let mut tun = TunInfo::default();
    for attr in attrs {
        let mut value = vec![0u8; attr.value_len()];
        attr.emit_value(&mut value);
        let flag = value.first().is_some_and(|b| *b != 0);
        let word = <[u8; 4]>::try_from(value.as_slice()).ok().map(u32::from_ne_bytes);
        match attr.kind() {
            IFLA_TUN_TYPE => tun.tap = value.first() == Some(&(libc::IFF_TAP as u8)),
            IFLA_TUN_PERSIST => tun.persist = flag,
            IFLA_TUN_VNET_HDR => tun.vnet_hdr = flag,
            IFLA_TUN_MULTI_QUEUE => tun.multi_queue = flag,
            IFLA_TUN_OWNER => tun.owner = word,
            IFLA_TUN_GROUP => tun.group = word,
            _ => {}
        }
    }
    tun
}

fn ipv4_broadcast(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None; // /31 point-to-point and /32 host routes have none
    }
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host_bits))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn decode_error(e: impl fmt::Display) -> ReqError {
    ReqError::Transport(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// The kernel's error text from an NLMSG_ERROR body (everything after the
/// error code): the echoed request (only its header if `NLM_F_CAPPED`),
/// then, if `NLM_F_ACK_TLVS`, the extended-ack attributes.
fn error_extack(flags: u16, body: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = body.get(..4)?;
        u32::from_ne_bytes(len.try_into().ok()?) as usize
    };
    extack_message(body.get(align4(echoed)..)?)
}

/// `NLMSGERR_ATTR_MSG` from a run of extended-ack attributes.
fn extack_message(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .filter_map(|nla| nla.ok())
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let value = nla.value();
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            String::from_utf8_lossy(text).trim().to_owned()
        })
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
        out
    }

    fn nlmsghdr(len: u32) -> Vec<u8> {
        let mut out = len.to_ne_bytes().to_vec();
        out.extend_from_slice(&[0; 12]);
        out
    }

    #[test]
    fn extack_text_is_read_after_a_capped_echo() {
        let mut body = nlmsghdr(40);
        body.extend(nla(NLMSGERR_ATTR_MSG, b"Unknown device type\0"));
        assert_eq!(error_extack(NLM_F_CAPPED | NLM_F_ACK_TLVS, &body).as_deref(), Some("Unknown device type"));
    }

    #[test]
    fn extack_text_is_read_after_a_full_echo() {
        let mut body = nlmsghdr(22); // 16-byte header + 6 bytes, padded to 24
        body.extend_from_slice(&[0xaa; 8]);
        body.extend(nla(2, &7u32.to_ne_bytes())); // NLMSGERR_ATTR_OFFS first
        body.extend(nla(NLMSGERR_ATTR_MSG, b"ipv4: Address already assigned\0"));
        assert_eq!(error_extack(NLM_F_ACK_TLVS, &body).as_deref(), Some("ipv4: Address already assigned"));
    }

    #[test]
    fn no_extack_without_the_tlv_flag_or_with_garbage() {
        let mut body = nlmsghdr(16);
        body.extend(nla(NLMSGERR_ATTR_MSG, b"x\0"));
        assert_eq!(error_extack(NLM_F_CAPPED, &body), None);
        assert_eq!(error_extack(NLM_F_ACK_TLVS, &[1, 2]), None);
        assert_eq!(error_extack(NLM_F_ACK_TLVS, &nlmsghdr(4000)), None);
        assert_eq!(extack_message(&nla(NLMSGERR_ATTR_MSG, b"\0")), None);
    }

    #[test]
    fn broadcast_is_the_subnet_top_except_for_31_and_32() {
        let a = Ipv4Addr::new(10, 20, 30, 1);
        assert_eq!(ipv4_broadcast(a, 24), Some(Ipv4Addr::new(10, 20, 30, 255)));
        assert_eq!(ipv4_broadcast(a, 16), Some(Ipv4Addr::new(10, 20, 255, 255)));
        assert_eq!(ipv4_broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(ipv4_broadcast(a, 31), None);
        assert_eq!(ipv4_broadcast(a, 32), None);
    }

    #[test]
    fn tun_attributes_are_decoded() {
        use netlink_packet_core::DefaultNla;
        let attrs = vec![
            InfoTun::Other(DefaultNla::new(IFLA_TUN_TYPE, vec![libc::IFF_TAP as u8])),
            InfoTun::Other(DefaultNla::new(IFLA_TUN_PERSIST, vec![1])),
            InfoTun::Other(DefaultNla::new(IFLA_TUN_VNET_HDR, vec![1])),
            InfoTun::Other(DefaultNla::new(IFLA_TUN_MULTI_QUEUE, vec![0])),
            InfoTun::Other(DefaultNla::new(IFLA_TUN_OWNER, 1000u32.to_ne_bytes().to_vec())),
        ];
        assert_eq!(
            tun_info_from(&attrs),
            TunInfo { tap: true, persist: true, vnet_hdr: true, multi_queue: false, owner: Some(1000), group: None }
        );
        let tun = [InfoTun::Other(DefaultNla::new(IFLA_TUN_TYPE, vec![libc::IFF_TUN as u8]))];
        assert!(!tun_info_from(&tun).tap);
    }

    #[test]
    fn expect_kind_rejects_other_kinds_and_alternative_names() {
        let info = LinkInfo {
            index: 4,
            name: "eth0".into(),
            kind: Some("bridge".into()),
            controller_index: None,
            up: true,
            lower_up: true,
            mac: None,
            tun: None,
        };
        assert!(expect_kind("eth0", &info, "bridge", LinkInfo::is_bridge).is_ok());
        match expect_kind("uplink", &info, "bridge", LinkInfo::is_bridge) {
            Err(HostNetError::NotOurs { name, found, .. }) => {
                assert_eq!(name, "uplink");
                assert_eq!(found, "an alternative name of eth0");
            }
            other => panic!("{other:?}"),
        }
        match expect_kind("eth0", &info, "tap", LinkInfo::is_tap) {
            Err(e @ HostNetError::NotOurs { .. }) => {
                assert_eq!(e.to_string(), "Interface eth0 exists and is not a tap (found kind bridge)")
            }
            other => panic!("{other:?}"),
        }
    }
}
