//! Host networking on Linux: bridges, ports, addresses, persistent taps and
//! the policy-routing rules that keep a bridge's traffic from being routed.
//!
//! Everything here is blocking and runs in the network namespace of the
//! calling *thread* (a netlink socket and `/dev/net/tun` bind to the namespace
//! of the task that opens them).
//!
//! * Bridges, addresses, ports and 802.1Q links go through rtnetlink
//!   ([`Netlink`], netlink-packet-route over a blocking netlink-sys socket).
//! * Rules (`iif <name> prohibit`) go through rtnetlink too (`rule`).
//! * Taps are made with `TUNSETIFF`/`TUNSETPERSIST` on `/dev/net/tun`
//!   (the kernel refuses tun/tap creation over rtnetlink with EOPNOTSUPP).
//!
//! The `ensure_*` calls are idempotent and refuse to touch an interface that
//! has the wanted name but is of another kind ([`HostNetError::NotOurs`]).
//! All of it needs CAP_NET_ADMIN in the namespace; without it the calls fail
//! with [`HostNetError::PermissionDenied`].

use std::fmt;
use std::io;

mod netlink;
mod rule;
mod tap;

pub use netlink::Netlink;
pub use rule::IpFamily;
pub use tap::{create_persistent_tap, delete_persistent_tap, open_tap};

/// Whether this process can open `/dev/net/tun`, which every tap needs.
pub(crate) fn tun_usable() -> Result<()> {
    tap::open_tun().map(drop)
}

/// Longest interface name the kernel accepts (IFNAMSIZ − 1).
pub const IFNAME_MAX: usize = 15;

/// Result of the host networking calls.
pub type Result<T, E = HostNetError> = std::result::Result<T, E>;

/// Why a host networking call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostNetError {
    /// EPERM/EACCES from the kernel.
    #[error("Permission denied to {op}: CAP_NET_ADMIN or root is needed")]
    PermissionDenied {
        /// What was attempted, as a verb phrase: `create bridge`, `open tap`…
        op: &'static str,
        /// The kernel's EPERM or EACCES.
        #[source]
        source: io::Error,
    },
    /// The interface (or the address, for non-idempotent calls) already exists.
    #[error("Interface {link} already exists")]
    AlreadyExists {
        /// The interface: its name, or `with ifindex N`.
        link: String,
    },
    /// No interface with that name or index.
    #[error("Interface {link} not found")]
    NotFound {
        /// The interface: its name, or `with ifindex N`.
        link: String,
    },
    /// An interface with that name exists but is not of the kind we manage;
    /// it was left untouched.
    #[error("Interface {name} exists and is not a {expected} (found {found})")]
    NotOurs {
        /// The interface name asked for.
        name: String,
        /// The kind vman manages under that name: `bridge` or `tap`.
        expected: &'static str,
        /// What is there instead: `kind veth`, `a tun device in layer-3
        /// mode`, `an alternative name of eth0`…
        found: String,
    },
    /// The tap is attached to a running process (EBUSY), e.g. a QEMU.
    #[error("Tap {name} is in use by another process")]
    Busy {
        /// The tap's name.
        name: String,
    },
    /// The kernel lacks the feature (e.g. no 8021q module for vlan links).
    #[error("Not supported by this kernel: {feature}{}", extack_suffix(.extack))]
    Unsupported {
        /// The missing feature, e.g. `802.1Q vlan interfaces`.
        feature: &'static str,
        /// The kernel's extended-ack text, if it sent one.
        extack: Option<String>,
        /// The errno the kernel answered with (EOPNOTSUPP).
        #[source]
        source: io::Error,
    },
    /// The interface name cannot be used (see [`validate_ifname`]).
    #[error("Invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it, e.g. `longer than 15 bytes`.
        reason: &'static str,
    },
    /// Some other argument is out of range (vlan id, prefix length, MAC).
    #[error("Invalid {what} {value}: {expected}")]
    InvalidArgument {
        /// Which argument: `vlan id`, `IPv4 prefix length`, `MAC address`.
        what: &'static str,
        /// The value as given, as text.
        value: String,
        /// What is accepted, e.g. `must be 1 to 4094`.
        expected: &'static str,
    },
    /// A system call outside netlink failed (opening /dev/net/tun, an ioctl).
    #[error("Cannot {op}")]
    Io {
        /// The call, as a verb phrase: `open /dev/net/tun`,
        /// `set tap owner (TUNSETOWNER)`…
        op: &'static str,
        /// The OS's error.
        #[source]
        source: io::Error,
    },
    /// A netlink request failed; `extack` is the kernel's extended-ack text.
    #[error("Netlink request to {op} failed{}", extack_suffix(.extack))]
    Netlink {
        /// The request, as a verb phrase: `create vlan`, `add address`…
        op: &'static str,
        /// The kernel's extended-ack text, if it sent one.
        extack: Option<String>,
        /// The errno the kernel answered with.
        #[source]
        source: io::Error,
    },
}

fn extack_suffix(extack: &Option<String>) -> String {
    match extack {
        Some(msg) if !msg.is_empty() => format!(" (kernel: {msg})"),
        _ => String::new(),
    }
}

/// Maps an errno from the kernel to the variant a caller can act on.
///
/// `link` names the interface the request was about; it is used for
/// `AlreadyExists`/`NotFound`. Errors with no dedicated variant become
/// [`HostNetError::Netlink`].
pub(crate) fn map_errno(op: &'static str, link: &dyn fmt::Display, errno: i32, extack: Option<String>) -> HostNetError {
    let source = io::Error::from_raw_os_error(errno);
    match errno {
        libc::EPERM | libc::EACCES => HostNetError::PermissionDenied { op, source },
        libc::EEXIST => HostNetError::AlreadyExists { link: link.to_string() },
        libc::ENODEV => HostNetError::NotFound { link: link.to_string() },
        _ => HostNetError::Netlink { op, extack, source },
    }
}

/// An interface named or numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRef<'a> {
    /// By name, at most [`IFNAME_MAX`] bytes.
    Name(&'a str),
    /// By interface index (ifindex).
    Index(u32),
}

impl<'a> From<&'a str> for LinkRef<'a> {
    fn from(name: &'a str) -> Self {
        LinkRef::Name(name)
    }
}

impl<'a> From<&'a String> for LinkRef<'a> {
    fn from(name: &'a String) -> Self {
        LinkRef::Name(name)
    }
}

impl From<u32> for LinkRef<'_> {
    fn from(index: u32) -> Self {
        LinkRef::Index(index)
    }
}

impl fmt::Display for LinkRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Name(name) => f.write_str(name),
            LinkRef::Index(index) => write!(f, "with ifindex {index}"),
        }
    }
}

/// What the kernel reports about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its interface index (ifindex), unique in the namespace while it exists.
    pub index: u32,
    /// Its name, at most [`IFNAME_MAX`] bytes.
    pub name: String,
    /// `IFLA_INFO_KIND`: "bridge", "tun", "veth", "vlan"…; `None` for
    /// physical devices and loopback.
    pub kind: Option<String>,
    /// Index of the bridge (or bond…) this interface is a port of.
    pub controller_index: Option<u32>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier (IFF_LOWER_UP); for a tap this means a process has it open.
    pub lower_up: bool,
    /// Its Ethernet address (`IFLA_ADDRESS`); `None` without one, e.g. for
    /// a tun device in layer-3 mode.
    pub mac: Option<[u8; 6]>,
    /// Details of a tun/tap device (`IFLA_TUN_*`); `None` for other kinds.
    pub tun: Option<TunInfo>,
}

impl LinkInfo {
    /// A Linux bridge (link kind `bridge`).
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// A tun device in tap (layer-2) mode.
    pub fn is_tap(&self) -> bool {
        self.kind.as_deref() == Some("tun") && self.tun.is_some_and(|t| t.tap)
    }

    /// How this interface is described in a `NotOurs` error.
    pub(crate) fn kind_description(&self) -> String {
        match (self.kind.as_deref(), self.tun) {
            (Some("tun"), Some(t)) if !t.tap => "a tun device in layer-3 mode".to_owned(),
            (Some(kind), _) => format!("kind {kind}"),
            (None, _) => "a device without link kind".to_owned(),
        }
    }
}

/// `IFLA_TUN_*` attributes of a tun/tap device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunInfo {
    /// IFF_TAP (layer 2) rather than IFF_TUN.
    pub tap: bool,
    /// IFF_PERSIST: the device outlives the last descriptor open on it.
    pub persist: bool,
    /// IFF_VNET_HDR: frames carry a virtio-net header (for offloads).
    pub vnet_hdr: bool,
    /// IFF_MULTI_QUEUE: the device can be opened as several queues.
    pub multi_queue: bool,
    /// The uid that may attach without CAP_NET_ADMIN (`TUNSETOWNER`);
    /// `None` if unset.
    pub owner: Option<u32>,
    /// The gid that may attach without CAP_NET_ADMIN (`TUNSETGROUP`);
    /// `None` if unset.
    pub group: Option<u32>,
}

/// Checks that `name` can be used as an interface name, as the kernel's
/// `dev_valid_name` would, but stricter: only printable ASCII, and no `%`
/// (the kernel would treat `tap%d` as a template and pick a name itself).
pub fn validate_ifname(name: &str) -> Result<()> {
    let invalid = |reason| Err(HostNetError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > IFNAME_MAX {
        return invalid("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return invalid("reserved");
    }
    for c in name.chars() {
        match c {
            '/' => return invalid("contains '/'"),
            ':' => return invalid("contains ':'"),
            '%' => return invalid("contains '%'"),
            '\0' => return invalid("contains NUL"),
            c if c.is_whitespace() => return invalid("contains whitespace"),
            c if !c.is_ascii_graphic() => {
                return invalid("contains a non-printable or non-ASCII character");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `mac` is usable as an interface address: unicast, not zero.
pub(crate) fn validate_mac(mac: &[u8; 6]) -> Result<()> {
    let expected = if mac.iter().all(|b| *b == 0) {
        Some("must not be all zeros")
    } else if mac[0] & 1 == 1 {
        Some("must be unicast (lowest bit of the first octet clear)")
    } else {
        None
    };
    match expected {
        Some(expected) => Err(HostNetError::InvalidArgument { what: "MAC address", value: format_mac(mac), expected }),
        None => Ok(()),
    }
}

/// `52:54:00:12:34:56`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn reason(name: &str) -> &'static str {
        match validate_ifname(name) {
            Err(HostNetError::InvalidName { reason, .. }) => reason,
            other => panic!("{name:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn ifname_accepts_usual_names_up_to_15_bytes() {
        for name in ["vmbr10", "vt0123abcd", "eth0.100", "a", "abcdefghijklmno", "br-lan_1"] {
            assert!(validate_ifname(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn ifname_rejects_what_the_kernel_rejects() {
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("abcdefghijklmnop"), "longer than 15 bytes");
        assert_eq!(reason("."), "reserved");
        assert_eq!(reason(".."), "reserved");
        assert_eq!(reason("a/b"), "contains '/'");
        assert_eq!(reason("a:1"), "contains ':'");
        assert_eq!(reason("br 0"), "contains whitespace");
        assert_eq!(reason("br\t0"), "contains whitespace");
        assert_eq!(reason("br\n"), "contains whitespace");
        assert_eq!(reason("a\0b"), "contains NUL");
    }

    #[test]
    fn ifname_rejects_templates_and_non_ascii() {
        assert_eq!(reason("tap%d"), "contains '%'");
        assert_eq!(reason("brü"), "contains a non-printable or non-ASCII character");
        assert_eq!(reason("br\u{7f}"), "contains a non-printable or non-ASCII character");
        // 15 bytes but 8 characters: the byte count is what matters.
        assert_eq!(reason("ééééééééé"), "longer than 15 bytes");
    }

    #[test]
    fn mac_validation_rejects_multicast_and_zero() {
        assert!(validate_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]).is_ok());
        assert!(validate_mac(&[0x02, 0, 0, 0, 0, 1]).is_ok());
        assert!(matches!(validate_mac(&[0; 6]), Err(HostNetError::InvalidArgument { what: "MAC address", .. })));
        let err = validate_mac(&[0x01, 0, 0x5e, 0, 0, 1]).expect_err("multicast MAC accepted");
        assert_eq!(err.to_string(), "Invalid MAC address 01:00:5e:00:00:01: must be unicast (lowest bit of the first octet clear)");
    }

    #[test]
    fn format_mac_is_lowercase_colon_separated() {
        assert_eq!(format_mac(&[0x52, 0x54, 0, 0xAB, 0xcd, 0x0f]), "52:54:00:ab:cd:0f");
    }

    #[test]
    fn errno_mapping_distinguishes_the_cases_callers_act_on() {
        let link = LinkRef::Name("vmbr10");
        assert!(matches!(map_errno("create bridge", &link, libc::EPERM, None), HostNetError::PermissionDenied { op: "create bridge", .. }));
        assert!(matches!(map_errno("create bridge", &link, libc::EACCES, None), HostNetError::PermissionDenied { .. }));
        match map_errno("create bridge", &link, libc::EEXIST, None) {
            HostNetError::AlreadyExists { link } => assert_eq!(link, "vmbr10"),
            other => panic!("{other:?}"),
        }
        match map_errno("delete link", &LinkRef::Index(7), libc::ENODEV, None) {
            HostNetError::NotFound { link } => assert_eq!(link, "with ifindex 7"),
            other => panic!("{other:?}"),
        }
        match map_errno("set link up", &link, libc::EINVAL, Some("bad attr".into())) {
            HostNetError::Netlink { op, extack, source } => {
                assert_eq!(op, "set link up");
                assert_eq!(extack.as_deref(), Some("bad attr"));
                assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
            }
            other => panic!("{other:?}"),
        }
    }

    fn all_variants() -> Vec<HostNetError> {
        let e = || io::Error::from_raw_os_error(libc::EPERM);
        vec![
            HostNetError::PermissionDenied { op: "create tap", source: e() },
            HostNetError::AlreadyExists { link: "vmbr10".into() },
            HostNetError::NotFound { link: "with ifindex 3".into() },
            HostNetError::NotOurs { name: "vt1".into(), expected: "tap", found: "kind veth".into() },
            HostNetError::Busy { name: "vt1".into() },
            HostNetError::Unsupported { feature: "802.1Q vlan interfaces", extack: Some("Unknown device type".into()), source: e() },
            HostNetError::InvalidName { name: "a b".into(), reason: "contains whitespace" },
            HostNetError::InvalidArgument { what: "vlan id", value: "0".into(), expected: "must be 1 to 4094" },
            HostNetError::Io { op: "open /dev/net/tun", source: e() },
            HostNetError::Netlink { op: "add address", extack: None, source: e() },
        ]
    }

    #[test]
    fn messages_are_sentence_case_without_trailing_period() {
        for err in all_variants() {
            let msg = err.to_string();
            let first = msg.chars().next().unwrap_or(' ');
            assert!(first.is_uppercase() || first.is_ascii_digit(), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }

    #[test]
    fn messages_do_not_repeat_the_source_text() {
        for err in all_variants() {
            if let Some(source) = err.source() {
                let msg = err.to_string();
                assert!(!msg.contains(&source.to_string()), "{msg}");
            }
        }
    }

    #[test]
    fn messages_read_as_intended() {
        let texts: Vec<String> = all_variants().iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "Permission denied to create tap: CAP_NET_ADMIN or root is needed",
                "Interface vmbr10 already exists",
                "Interface with ifindex 3 not found",
                "Interface vt1 exists and is not a tap (found kind veth)",
                "Tap vt1 is in use by another process",
                "Not supported by this kernel: 802.1Q vlan interfaces (kernel: Unknown device type)",
                "Invalid interface name \"a b\": contains whitespace",
                "Invalid vlan id 0: must be 1 to 4094",
                "Cannot open /dev/net/tun",
                "Netlink request to add address failed",
            ]
        );
    }

    #[test]
    fn permission_denied_keeps_the_errno_as_source() {
        let err = map_errno("add address", &LinkRef::Index(2), libc::EPERM, None);
        let source = err.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(libc::EPERM));
    }

    #[test]
    fn kind_description_names_what_was_found() {
        let mut info = LinkInfo {
            index: 3,
            name: "x".into(),
            kind: Some("veth".into()),
            controller_index: None,
            up: false,
            lower_up: false,
            mac: None,
            tun: None,
        };
        assert_eq!(info.kind_description(), "kind veth");
        assert!(!info.is_tap() && !info.is_bridge());
        info.kind = Some("tun".into());
        info.tun = Some(TunInfo { tap: false, ..TunInfo::default() });
        assert_eq!(info.kind_description(), "a tun device in layer-3 mode");
        assert!(!info.is_tap());
        info.tun = Some(TunInfo { tap: true, ..TunInfo::default() });
        assert!(info.is_tap());
        info.kind = None;
        info.tun = None;
        assert_eq!(info.kind_description(), "a device without link kind");
    }
}
