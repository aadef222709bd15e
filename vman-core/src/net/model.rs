//! VLAN networks: their validated definition and the address plan the
//! allocator starts from.

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::name::validate_name;

/// Prefixes outside this range are refused: a /8 is the largest pool worth
/// managing per VLAN, and a /31 or /32 leaves no host once the gateway is set.
pub const MIN_PREFIX: u8 = 8;
/// The longest prefix accepted; see [`MIN_PREFIX`].
pub const MAX_PREFIX: u8 = 30;
/// Resolvers handed to guests (resolv.conf honours three; leave headroom).
pub const MAX_DNS_SERVERS: usize = 8;

/// What to create a network from. Addresses are text so every language
/// passes them the same way; vman-core parses and checks them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The network's name, unique in the store (see [`validate_name`]).
    pub name: String,
    /// 802.1Q VLAN id, 1–4094, unique per store.
    pub vlan: u16,
    /// IPv4 subnet, e.g. `10.10.0.0/24`; host bits must be zero.
    pub cidr: String,
    /// Defaults to the first host of the subnet.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Addresses never handed out: `a.b.c.d` or `a.b.c.d-a.b.c.e`.
    #[serde(default)]
    pub reserved: Vec<String>,
    /// DNS servers, dotted quads, at most 8; the DHCP server of a bridged
    /// network offers them to guests (none: no DNS option).
    #[serde(default)]
    pub dns: Vec<String>,
    /// A host interface whose 802.1Q sub-interface `<uplink>.<vid>` joins
    /// the VLAN's bridge, taking the VLAN beyond this host. Needs a kernel
    /// with 802.1Q support.
    #[serde(default)]
    pub uplink: Option<String>,
}

impl NetworkSpec {
    /// A network `name` on VLAN `vlan` (1..=4094) with subnet `cidr`; its
    /// gateway is the subnet's first host.
    pub fn new(name: impl Into<String>, vlan: u16, cidr: impl Into<String>) -> NetworkSpec {
        NetworkSpec { name: name.into(), vlan, cidr: cidr.into(), ..NetworkSpec::default() }
    }

    /// Sets the gateway: a host address of the subnet, never handed to a VM.
    pub fn gateway(mut self, gateway: impl Into<String>) -> NetworkSpec {
        self.gateway = Some(gateway.into());
        self
    }

    /// Keeps an address or range (`a.b.c.d` or `a.b.c.d-a.b.c.e`, inside the
    /// subnet) from ever being handed out; ranges may overlap.
    pub fn reserve(mut self, range: impl Into<String>) -> NetworkSpec {
        self.reserved.push(range.into());
        self
    }

    /// Takes the VLAN beyond this host through `interface`'s 802.1Q
    /// sub-interface `<interface>.<vid>`.
    pub fn uplink(mut self, interface: impl Into<String>) -> NetworkSpec {
        self.uplink = Some(interface.into());
        self
    }

    /// Adds a DNS server (a dotted quad) to offer to guests.
    pub fn dns(mut self, server: impl Into<String>) -> NetworkSpec {
        self.dns.push(server.into());
        self
    }

    /// Parses and checks everything; the result is what gets stored.
    pub(crate) fn plan(&self) -> Result<NetworkPlan> {
        validate_name("network name", &self.name)?;
        if !(1..=4094).contains(&self.vlan) {
            return Err(Error::invalid("VLAN id", format!("{} is outside 1..=4094", self.vlan)));
        }
        let cidr = parse_cidr(&self.cidr)?;
        let gateway = match &self.gateway {
            None => first_host(cidr),
            Some(text) => {
                let gw = parse_ipv4("gateway", text)?;
                if !cidr.contains(&gw) || gw == cidr.network() || gw == cidr.broadcast() {
                    return Err(Error::invalid("gateway", format!("{gw} is not a host address of {cidr}")));
                }
                gw
            }
        };
        let mut reserved = Vec::with_capacity(self.reserved.len());
        for text in &self.reserved {
            let range = AddrRange::from_str(text)?;
            if !cidr.contains(&range.first) || !cidr.contains(&range.last) {
                return Err(Error::invalid("reserved range", format!("{range} is not inside {cidr}")));
            }
            reserved.push(range);
        }
        let reserved = merge_ranges(reserved);
        if self.dns.len() > MAX_DNS_SERVERS {
            return Err(Error::invalid("DNS servers", format!("{} given; at most {MAX_DNS_SERVERS}", self.dns.len())));
        }
        let dns = self.dns.iter().map(|s| parse_ipv4("DNS server", s)).collect::<Result<Vec<_>>>()?;

        if let Some(uplink) = &self.uplink {
            let vlan_if = format!("{uplink}.{}", self.vlan);
            crate::net::linux::validate_ifname(uplink)
                .and_then(|()| crate::net::linux::validate_ifname(&vlan_if))
                .map_err(|e| Error::invalid_because("uplink", format!("{uplink} cannot carry VLAN {}", self.vlan), e))?;
        }
        let free = free_extents(cidr, gateway, &reserved);
        if free.is_empty() {
            return Err(Error::invalid("network", format!("{cidr} leaves no address to assign after the gateway and reservations")));
        }
        Ok(NetworkPlan { name: self.name.clone(), vlan: self.vlan, cidr, gateway, reserved, dns, free, uplink: self.uplink.clone() })
    }
}

/// A network definition that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct NetworkPlan {
    pub name: String,
    pub vlan: u16,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub reserved: Vec<AddrRange>,
    pub dns: Vec<Ipv4Addr>,
    /// Assignable addresses as disjoint sorted extents: hosts minus gateway
    /// minus reservations.
    pub free: Vec<AddrRange>,
    pub uplink: Option<String>,
}

/// A stored network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Network {
    /// The store's id for it, never reused after a delete.
    pub id: i64,
    /// The network's name, unique in the store.
    pub name: String,
    /// Its 802.1Q VLAN id, 1..=4094, unique in the store.
    pub vlan: u16,
    /// Its subnet, /8 to /30, overlapping no other network's.
    pub cidr: Ipv4Net,
    /// Its gateway: a host of `cidr` never handed to a VM.
    pub gateway: Ipv4Addr,
    /// Addresses never handed out: disjoint ranges inside `cidr`, sorted,
    /// adjacent ones merged.
    pub reserved: Vec<AddrRange>,
    /// DNS servers, in the order given, that the DHCP server of a bridged
    /// network offers guests.
    pub dns: Vec<Ipv4Addr>,
    /// The host interface whose `<uplink>.<vid>` joins the bridge, if any.
    pub uplink: Option<String>,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
}

impl Network {
    /// Why `ip` cannot be assigned on this network, if it can't by its nature
    /// (as opposed to being taken).
    pub(crate) fn unassignable_reason(&self, ip: Ipv4Addr) -> Option<String> {
        let cidr = self.cidr;
        if !cidr.contains(&ip) {
            Some(format!("{ip} is not inside {cidr}"))
        } else if ip == cidr.network() {
            Some(format!("{ip} is the network address of {cidr}"))
        } else if ip == cidr.broadcast() {
            Some(format!("{ip} is the broadcast address of {cidr}"))
        } else if ip == self.gateway {
            Some(format!("{ip} is the gateway of {}", self.name))
        } else {
            self.reserved.iter().find(|r| r.contains(ip)).map(|r| format!("{ip} is reserved ({r})"))
        }
    }
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AddrRange {
    /// The lowest address in the range.
    pub first: Ipv4Addr,
    /// The highest address in the range, never below `first`.
    pub last: Ipv4Addr,
}

impl AddrRange {
    /// Whether `ip` lies in the range, both ends included.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    pub(crate) fn from_u32(first: u32, last: u32) -> AddrRange {
        AddrRange { first: Ipv4Addr::from(first), last: Ipv4Addr::from(last) }
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

impl FromStr for AddrRange {
    type Err = Error;

    fn from_str(text: &str) -> Result<AddrRange> {
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (parse_ipv4("reserved range", a.trim())?, parse_ipv4("reserved range", b.trim())?),
            None => {
                let ip = parse_ipv4("reserved range", text.trim())?;
                (ip, ip)
            }
        };
        if first > last {
            return Err(Error::invalid("reserved range", format!("{text:?} ends before it starts")));
        }
        Ok(AddrRange { first, last })
    }
}

/// Address blocks a VLAN's subnet must not touch, and why: vman puts the
/// gateway on a host bridge, and an address from these blocks there breaks
/// the host (loopback, link-local routes) or can never be a host's.
/// (`new_assert` checks each prefix at compile time.)
const UNUSABLE_BLOCKS: [(Ipv4Net, &str); 5] = [
    (Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8), "\"this network\", never a host's address"),
    (Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8), "loopback"),
    (Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16), "link-local; a gateway there breaks the host's link-local routes"),
    (Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4), "multicast"),
    (Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4), "reserved, with the limited broadcast address"),
];

/// Parses a dotted-quad IPv4 address. The one parser for every address a
/// caller gives vman (CIDRs, gateways, reservations, DNS servers, NIC
/// addresses), so all of them refuse the same things.
pub(crate) fn parse_ipv4(what: &'static str, text: &str) -> Result<Ipv4Addr> {
    refuse_leading_zeros(what, text)?;
    Ipv4Addr::from_str(text).map_err(|_| Error::invalid(what, format!("{text:?} is not an IPv4 address")))
}

/// `010` is 10 to vman but 8 to inet_aton, ping and many other parsers:
/// refused, so an address never means two things. (Rust's `Ipv4Addr`
/// refuses it too, but silently; `ipnet` accepts it as decimal.)
fn refuse_leading_zeros(what: &'static str, text: &str) -> Result<()> {
    let octal_like = |part: &str| part.len() > 1 && part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit());
    match text.split('.').find(|part| octal_like(part)) {
        Some(part) => Err(Error::invalid(what, format!("{text:?} has a leading zero in {part:?}, which other tools read as octal"))),
        None => Ok(()),
    }
}

fn parse_cidr(text: &str) -> Result<Ipv4Net> {
    let malformed = || Error::invalid("CIDR", format!("{text:?} is not an IPv4 CIDR like 10.0.0.0/24"));
    let (addr, prefix) = text.split_once('/').ok_or_else(malformed)?;
    refuse_leading_zeros("CIDR", addr)?;
    let addr = Ipv4Addr::from_str(addr).map_err(|_| malformed())?;
    // Decimal digits only: no sign, no spaces, no leading zero ("/024").
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if prefix.len() > 1 && prefix.starts_with('0') {
        return Err(Error::invalid("CIDR", format!("{text:?} has a leading zero in its prefix length")));
    }
    if prefix.len() > 2 {
        return Err(malformed());
    }
    let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
    let net = Ipv4Net::new(addr, prefix).map_err(|_| malformed())?;
    if net != net.trunc() {
        return Err(Error::invalid("CIDR", format!("{text} has host bits set; did you mean {}?", net.trunc())));
    }
    refuse_unusable_blocks(net)?;
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix_len()) {
        return Err(Error::invalid("CIDR", format!("prefix /{} is outside /{MIN_PREFIX}../{MAX_PREFIX}", net.prefix_len())));
    }
    Ok(net)
}

/// Refuses a subnet that overlaps any of [`UNUSABLE_BLOCKS`], whether it lies
/// inside one or merely reaches into one (`96.0.0.0/3` holds 127.0.0.0/8).
fn refuse_unusable_blocks(net: Ipv4Net) -> Result<()> {
    for (block, why) in UNUSABLE_BLOCKS {
        if overlaps(net, block) {
            return Err(Error::invalid("CIDR", format!("{net} overlaps {block}, which is {why}")));
        }
    }
    Ok(())
}

/// Whether two subnets share an address.
pub(crate) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.network() <= b.broadcast() && b.network() <= a.broadcast()
}

fn first_host(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge_ranges(mut ranges: Vec<AddrRange>) -> Vec<AddrRange> {
    ranges.sort_by_key(|r| r.first);
    let mut merged: Vec<AddrRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(prev) if u32::from(r.first) <= u32::from(prev.last).saturating_add(1) => {
                prev.last = prev.last.max(r.last);
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// The assignable extents: hosts of `cidr` minus the gateway and `reserved`
/// (which must be sorted and merged).
fn free_extents(cidr: Ipv4Net, gateway: Ipv4Addr, reserved: &[AddrRange]) -> Vec<AddrRange> {
    let mut holes = reserved.to_vec();
    holes.push(AddrRange { first: gateway, last: gateway });
    let holes = merge_ranges(holes);
    let mut free = Vec::new();
    // Hosts exclude the network and broadcast addresses; prefixes ≤ /30
    // guarantee at least two hosts, so these never cross.
    let mut next = u32::from(cidr.network()) + 1;
    let last_host = u32::from(cidr.broadcast()) - 1;
    for hole in holes {
        let (hole_first, hole_last) = (u32::from(hole.first), u32::from(hole.last));
        if hole_first > next {
            free.push(AddrRange::from_u32(next, (hole_first - 1).min(last_host)));
        }
        next = next.max(hole_last.saturating_add(1));
        if next > last_host {
            return free;
        }
    }
    free.push(AddrRange::from_u32(next, last_host));
    free
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn spec(cidr: &str) -> NetworkSpec {
        NetworkSpec::new("lan", 100, cidr)
    }

    #[test]
    fn default_gateway_is_first_host_and_excluded_from_the_pool() {
        let plan = spec("10.0.0.0/24").plan().unwrap();
        assert_eq!(plan.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(plan.free, vec![AddrRange::from_str("10.0.0.2-10.0.0.254").unwrap()]);
    }

    #[test]
    fn reservations_and_a_middle_gateway_split_the_pool() {
        let plan = spec("10.0.0.0/24")
            .gateway("10.0.0.100")
            .reserve("10.0.0.1-10.0.0.9")
            .reserve("10.0.0.250-10.0.0.254")
            .reserve("10.0.0.5")
            .plan()
            .unwrap();
        assert_eq!(
            plan.free,
            vec![AddrRange::from_str("10.0.0.10-10.0.0.99").unwrap(), AddrRange::from_str("10.0.0.101-10.0.0.249").unwrap()]
        );
        assert_eq!(plan.reserved.len(), 2, "overlapping reservations merge");
    }

    #[test]
    fn rejects_bad_definitions() {
        let cases: Vec<NetworkSpec> = vec![
            NetworkSpec { vlan: 0, ..spec("10.0.0.0/24") },
            NetworkSpec { vlan: 4095, ..spec("10.0.0.0/24") },
            spec("10.0.0.1/24"),
            spec("10.0.0.0/31"),
            spec("10.0.0.0/32"),
            spec("10.0.0.0/7"),
            spec("fd00::/64"),
            spec("10.0.0.0"),
            spec("banana"),
            spec("10.0.0.0/24").gateway("10.0.1.1"),
            spec("10.0.0.0/24").gateway("10.0.0.0"),
            spec("10.0.0.0/24").gateway("10.0.0.255"),
            spec("10.0.0.0/24").gateway("nope"),
            spec("10.0.0.0/24").reserve("10.0.0.9-10.0.0.1"),
            spec("10.0.0.0/24").reserve("10.0.1.1"),
            spec("10.0.0.0/24").dns("8.8.8"),
            spec("10.0.0.0/30").reserve("10.0.0.2"),
            NetworkSpec { name: "../etc".into(), ..spec("10.0.0.0/24") },
        ];
        for bad in cases {
            let err = bad.plan().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn subnets_touching_unusable_blocks_are_refused_with_the_reason() {
        for (cidr, why) in [
            ("0.0.0.0/8", "this network"),
            ("0.1.2.0/24", "this network"),
            ("127.0.0.0/8", "loopback"),
            ("127.1.0.0/24", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("169.254.10.0/24", "link-local"),
            ("169.0.0.0/8", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("239.255.255.0/24", "multicast"),
            ("240.0.0.0/8", "reserved"),
            ("255.255.255.0/24", "reserved"),
            ("96.0.0.0/3", "loopback"), // merely reaches into 127.0.0.0/8
            ("224.0.0.0/3", "multicast"),
        ] {
            let err = spec(cidr).plan().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{cidr}");
            assert!(err.to_string().contains(why), "{cidr}: {err}");
        }
        // Neighbours of those blocks are fine.
        for cidr in ["1.0.0.0/24", "126.255.255.0/24", "128.0.0.0/24", "169.253.0.0/16", "169.255.0.0/16", "223.255.255.0/24"] {
            spec(cidr).plan().unwrap_or_else(|e| panic!("{cidr}: {e}"));
        }
    }

    #[test]
    fn leading_zeros_are_refused_wherever_an_address_is_parsed() {
        let cases = [
            spec("10.010.0.0/24"),
            spec("010.0.0.0/24"),
            spec("10.0.0.00/24"),
            spec("10.0.0.0/024"),
            spec("10.0.0.0/08"),
            spec("10.0.0.0/24").gateway("10.0.0.01"),
            spec("10.0.0.0/24").reserve("10.0.0.010"),
            spec("10.0.0.0/24").reserve("10.0.0.5-10.0.0.09"),
            spec("10.0.0.0/24").dns("08.8.8.8"),
        ];
        for bad in cases {
            let err = bad.plan().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(err.to_string().contains("leading zero"), "{bad:?}: {err}");
        }
        let err = parse_ipv4("IP address", "10.0.0.010").unwrap_err();
        assert!(err.to_string().contains("leading zero") && err.to_string().contains("octal"), "{err}");
        // A lone zero is a zero, not a leading one.
        assert_eq!(parse_ipv4("IP address", "10.0.0.0").unwrap(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn malformed_cidrs_are_refused() {
        for text in [
            "10.0.0.0/",
            "/24",
            "10.0.0.0/+24",
            "10.0.0.0/ 24",
            " 10.0.0.0/24",
            "10.0.0.0/24 ",
            "10.0.0.0/33",
            "10.0.0.0/1x",
            "10.0.0/24",
            "10.0.0.0.0/24",
            "10.0.0.256/24",
        ] {
            assert_eq!(parse_cidr(text).unwrap_err().kind(), ErrorKind::InvalidArgument, "{text:?}");
        }
    }

    #[test]
    fn overlap_is_any_shared_address() {
        let net = |s: &str| parse_cidr(s).unwrap();
        assert!(overlaps(net("10.0.0.0/16"), net("10.0.5.0/24")));
        assert!(overlaps(net("10.0.5.0/24"), net("10.0.0.0/16")));
        assert!(overlaps(net("10.0.0.0/24"), net("10.0.0.0/24")));
        assert!(!overlaps(net("10.0.0.0/24"), net("10.0.1.0/24")));
        assert!(!overlaps(net("10.0.0.0/25"), net("10.0.0.128/25")));
    }

    #[test]
    fn host_bits_error_suggests_the_network() {
        let err = spec("192.168.1.7/24").plan().unwrap_err();
        assert!(err.to_string().contains("192.168.1.0/24"), "{err}");
    }

    #[test]
    fn slash_30_has_one_assignable_address() {
        let plan = spec("10.0.0.0/30").plan().unwrap();
        assert_eq!(plan.free, vec![AddrRange::from_str("10.0.0.2").unwrap()]);
    }
}
