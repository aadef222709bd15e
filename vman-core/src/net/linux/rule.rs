//! Policy-routing rules that refuse to route what arrives on an interface:
//! `iif <name> prohibit` at a chosen priority, for IPv4 or IPv6.
//!
//! A rule names its input interface, so it can be made before the
//! interface exists and outlives it (the kernel keeps it, detached, until
//! it is deleted): whoever makes one must delete it.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::ReqError;
use super::{HostNetError, Netlink, Result, validate_ifname};

/// At most this many copies of one rule are deleted in one call (copies
/// exist only if someone added them without `NLM_F_EXCL`).
const MAX_COPIES: usize = 64;

/// The IP family a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4 (`ip -4 rule`).
    V4,
    /// IPv6 (`ip -6 rule`).
    V6,
}

impl IpFamily {
    fn address_family(self) -> AddressFamily {
        match self {
            IpFamily::V4 => AddressFamily::Inet,
            IpFamily::V6 => AddressFamily::Inet6,
        }
    }

    fn feature(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4 policy routing",
            IpFamily::V6 => "IPv6 policy routing",
        }
    }
}

/// `iif <iif> prohibit` at `priority`: what [`Netlink::ensure_prohibit_rule`]
/// adds and [`Netlink::remove_prohibit_rule`] deletes.
fn prohibit_rule(family: IpFamily, iif: &str, priority: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family.address_family();
    msg.header.action = RuleAction::Prohibit;
    msg.attributes.push(RuleAttribute::Priority(priority));
    msg.attributes.push(RuleAttribute::Iifname(iif.to_owned()));
    msg
}

/// Whether a dumped rule is exactly `iif <iif> prohibit` at `priority`
/// (no other selector that would narrow it).
fn is_prohibit_rule(msg: &RuleMessage, iif: &str, priority: u32) -> bool {
    let header = &msg.header;
    if header.action != RuleAction::Prohibit || header.src_len != 0 || header.dst_len != 0 || header.tos != 0 {
        return false;
    }
    let (mut iif_seen, mut priority_seen) = (false, false);
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Iifname(name) => iif_seen = name == iif,
            RuleAttribute::Priority(p) => priority_seen = *p == priority,
            // Selectors that would narrow the rule to some packets only.
            RuleAttribute::Destination(_)
            | RuleAttribute::Source(_)
            | RuleAttribute::Oifname(_)
            | RuleAttribute::FwMark(_)
            | RuleAttribute::FwMask(_)
            | RuleAttribute::Realm(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::L3MDev(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => return false,
            // What the kernel reports on every rule (table, protocol,
            // suppress_prefixlen), and attributes newer than this crate.
            _ => {}
        }
    }
    iif_seen && priority_seen
}

impl Netlink {
    /// Makes sure `family` has the rule `iif <iif> prohibit` at `priority`:
    /// packets arriving on `iif` that the rules before it (the `local`
    /// table's, at 0) do not deliver to this host are refused, never
    /// routed. Returns whether it added the rule.
    ///
    /// Idempotent and never duplicates the rule, even against another
    /// process doing the same: it is added with `NLM_F_EXCL`, which the
    /// kernel answers with EEXIST if an identical rule exists. `iif` need
    /// not exist yet. Fails with `Unsupported` if the kernel lacks the
    /// family (IPv6 disabled at boot).
    pub fn ensure_prohibit_rule(&mut self, family: IpFamily, iif: &str, priority: u32) -> Result<bool> {
        validate_ifname(iif)?;
        match self.request(RouteNetlinkMessage::NewRule(prohibit_rule(family, iif, priority)), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => {
                log::debug!("added rule {family:?} iif {iif} prohibit at priority {priority}");
                Ok(true)
            }
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(rule_error(e, family, "add rule", iif)),
        }
    }

    /// Whether `family` has the rule `iif <iif> prohibit` at `priority`.
    pub fn has_prohibit_rule(&mut self, family: IpFamily, iif: &str, priority: u32) -> Result<bool> {
        validate_ifname(iif)?;
        let mut msg = RuleMessage::default();
        msg.header.family = family.address_family();
        let replies = self.request(RouteNetlinkMessage::GetRule(msg), NLM_F_DUMP).map_err(|e| rule_error(e, family, "list rules", iif))?;
        Ok(replies.iter().any(|m| matches!(m, RouteNetlinkMessage::NewRule(rule) if is_prohibit_rule(rule, iif, priority))))
    }

    /// Deletes every copy of the rule `iif <iif> prohibit` at `priority`
    /// from `family`. Returns how many it deleted (0 if there was none).
    /// Fails with `Unsupported` if the kernel lacks the family.
    pub fn remove_prohibit_rule(&mut self, family: IpFamily, iif: &str, priority: u32) -> Result<usize> {
        validate_ifname(iif)?;
        for removed in 0..MAX_COPIES {
            match self.request(RouteNetlinkMessage::DelRule(prohibit_rule(family, iif, priority)), 0) {
                Ok(_) => {}
                Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(removed),
                Err(e) => return Err(rule_error(e, family, "delete rule", iif)),
            }
        }
        log::warn!("{MAX_COPIES} copies of rule {family:?} iif {iif} prohibit at priority {priority} deleted; some may remain");
        Ok(MAX_COPIES)
    }
}

fn rule_error(e: ReqError, family: IpFamily, op: &'static str, iif: &str) -> HostNetError {
    match e {
        ReqError::Kernel { errno: libc::EAFNOSUPPORT, extack } => {
            HostNetError::Unsupported { feature: family.feature(), extack, source: io::Error::from_raw_os_error(libc::EAFNOSUPPORT) }
        }
        e => e.into_error(op, &iif),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_core::Parseable;

    #[test]
    fn the_rule_is_an_iif_match_with_a_priority_and_no_table() {
        let msg = prohibit_rule(IpFamily::V4, "vmbr100", 1000);
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.action, RuleAction::Prohibit);
        assert_eq!(msg.header.table, 0);
        assert_eq!(msg.attributes, [RuleAttribute::Priority(1000), RuleAttribute::Iifname("vmbr100".into())]);
        assert_eq!(prohibit_rule(IpFamily::V6, "vmbr100", 1000).header.family, AddressFamily::Inet6);
    }

    #[test]
    fn only_the_exact_rule_matches() {
        let rule = |edit: fn(&mut RuleMessage)| {
            let mut msg = prohibit_rule(IpFamily::V4, "vmbr100", 1000);
            edit(&mut msg);
            // Through the wire format, as a dump delivers it.
            let mut bytes = vec![0; msg.buffer_len()];
            msg.emit(&mut bytes);
            is_prohibit_rule(&RuleMessage::parse(&bytes).unwrap(), "vmbr100", 1000)
        };
        assert!(rule(|_| {}));
        assert!(rule(|m| m.attributes.push(RuleAttribute::Table(0))), "the kernel reports a table on every rule");
        assert!(!rule(|m| m.header.action = RuleAction::Blackhole));
        assert!(!rule(|m| m.attributes[0] = RuleAttribute::Priority(1001)));
        assert!(!rule(|m| m.attributes[1] = RuleAttribute::Iifname("vmbr1000".into())));
        assert!(
            !rule(|m| {
                m.attributes.remove(1);
            }),
            "no iif: every packet"
        );
        assert!(!rule(|m| m.attributes.push(RuleAttribute::FwMark(7))), "narrowed by a mark");
        assert!(!rule(|m| m.header.src_len = 24), "narrowed by a source");
    }

    #[test]
    fn a_missing_family_is_unsupported() {
        let e = rule_error(ReqError::Kernel { errno: libc::EAFNOSUPPORT, extack: None }, IpFamily::V6, "add rule", "vmbr1");
        assert!(matches!(e, HostNetError::Unsupported { feature: "IPv6 policy routing", .. }), "{e:?}");
        let e = rule_error(ReqError::Kernel { errno: libc::EPERM, extack: None }, IpFamily::V4, "add rule", "vmbr1");
        assert!(matches!(e, HostNetError::PermissionDenied { op: "add rule", .. }), "{e:?}");
    }
}
