//! Host networking against the real kernel, each test in a network namespace
//! of its own so nothing touches the host's interfaces.
//!
//! `unshare(CLONE_NEWNET)` moves only the calling *thread* into a new
//! namespace, so every test runs its body on a fresh thread that unshares
//! first; the namespace (and every bridge and tap made in it) disappears when
//! that thread ends. `ip` runs as the oracle: a child inherits the namespace
//! of the thread that spawns it.
//!
//! The tests need root (CAP_SYS_ADMIN to unshare, CAP_NET_ADMIN inside).
//! Without it they print why and pass, except under `CI=true`, where they
//! fail. The QEMU test also needs `qemu-system-x86_64`, under the same rule.
//! `measure_hostnet_latencies` is ignored by default: run it with
//! `cargo test --test hostnet_netns -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vman_core::hostnet::{HostNetError, IpFamily, Netlink, create_persistent_tap, delete_persistent_tap, validate_ifname};

// ----- harness ---------------------------------------------------------------

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints why `test` is skipped, or fails it under CI. Writes to the stderr
/// handle directly: libtest captures `eprintln!` of passing tests.
fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    assert!(!under_ci(), "{test}: {reason} (CI=true: failing instead of skipping)");
    let line = format!("skipping {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Runs `body` on a new thread inside a new network namespace. Returns
/// `None` (after [`skip`]) where that is impossible.
fn in_netns<R: Send>(test: &str, body: impl FnOnce() -> R + Send) -> Option<R> {
    if !nix::unistd::geteuid().is_root() {
        skip(test, "needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)");
        return None;
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                    skip(test, &format!("cannot unshare the network namespace: {e}"));
                    return None;
                }
                let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
                let process = std::fs::read_link("/proc/self/ns/net").expect("process netns");
                assert_ne!(ours, process, "the test thread must not share the process's netns");
                Some(body())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn netlink() -> Netlink {
    Netlink::open().expect("open netlink")
}

/// Runs `ip ARGS`; panics with its stderr if it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -d -j link show dev NAME` as JSON, or `None` if there is no such link.
fn ip_link(name: &str) -> Option<Value> {
    let out = Command::new("ip").args(["-d", "-j", "link", "show", "dev", name]).output().expect("run ip");
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("ip -j output is JSON");
    list.as_array().and_then(|a| a.first()).cloned()
}

/// `link` without the bridge's running timers (gc_timer, hello_timer…),
/// which change between two reads of an untouched interface.
fn without_timers(mut link: Value) -> Value {
    if let Some(data) = link.pointer_mut("/linkinfo/info_data").and_then(Value::as_object_mut) {
        data.retain(|key, _| !key.ends_with("_timer"));
    }
    link
}

fn ip_flags(link: &Value) -> Vec<String> {
    link["flags"].as_array().map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// IPv4 addresses of `name` as ("a.b.c.d", prefix, broadcast) per `ip -j addr`.
fn ip_ipv4_addrs(name: &str) -> Vec<(String, u64, Option<String>)> {
    let json: Value = serde_json::from_str(&ip(&["-j", "-4", "addr", "show", "dev", name])).expect("JSON");
    json[0]["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .map(|i| {
                    (
                        i["local"].as_str().unwrap_or_default().to_owned(),
                        i["prefixlen"].as_u64().unwrap_or_default(),
                        i["broadcast"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn link_names(nl: &mut Netlink) -> Vec<String> {
    let mut names: Vec<String> = nl.list_links().expect("list links").into_iter().map(|l| l.name).collect();
    names.sort();
    names
}

const MAC_A: [u8; 6] = [0x02, 0x76, 0x6d, 0x00, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x76, 0x6d, 0x00, 0x00, 0x0b];

// ----- the namespace itself ------------------------------------------------

#[test]
fn each_test_runs_in_an_empty_namespace_of_its_own() {
    in_netns("each_test_runs_in_an_empty_namespace_of_its_own", || {
        let mut nl = netlink();
        assert_eq!(link_names(&mut nl), ["lo"]);
        let oracle: Value = serde_json::from_str(&ip(&["-j", "link", "show"])).expect("JSON");
        let names: Vec<&str> = oracle.as_array().expect("array").iter().filter_map(|l| l["ifname"].as_str()).collect();
        assert_eq!(names, ["lo"], "ip must see the test's namespace, not the host's");
    });
}

// ----- bridges ---------------------------------------------------------------

#[test]
fn bridge_create_duplicate_and_delete() {
    in_netns("bridge_create_duplicate_and_delete", || {
        let mut nl = netlink();
        nl.create_bridge("vmbr10", Some(MAC_A)).expect("create bridge");

        let info = nl.link_by_name("vmbr10").expect("lookup").expect("bridge exists");
        assert!(info.is_bridge(), "{info:?}");
        assert_eq!(info.kind.as_deref(), Some("bridge"));
        assert_eq!(info.mac, Some(MAC_A));
        assert!(!info.up);
        let oracle = ip_link("vmbr10").expect("ip sees the bridge");
        assert_eq!(oracle["linkinfo"]["info_kind"], "bridge");
        assert_eq!(oracle["address"], "02:76:6d:00:00:0a");
        assert_eq!(oracle["ifindex"].as_u64(), Some(u64::from(info.index)));

        match nl.create_bridge("vmbr10", None) {
            Err(HostNetError::AlreadyExists { link }) => assert_eq!(link, "vmbr10"),
            other => panic!("duplicate create must fail with AlreadyExists: {other:?}"),
        }

        nl.delete_link("vmbr10").expect("delete by name");
        assert!(nl.link_by_name("vmbr10").expect("lookup").is_none());
        assert!(ip_link("vmbr10").is_none());
        assert!(matches!(nl.delete_link("vmbr10"), Err(HostNetError::NotFound { .. })));

        nl.create_bridge("vmbr11", None).expect("create without MAC");
        let index = nl.link_by_name("vmbr11").expect("lookup").expect("exists").index;
        nl.delete_link(index).expect("delete by index");
        assert!(matches!(nl.delete_link(index), Err(HostNetError::NotFound { .. })));
        assert!(nl.link_by_index(index).expect("lookup").is_none());
    });
}

#[test]
fn ensure_bridge_is_idempotent_and_converges() {
    in_netns("ensure_bridge_is_idempotent_and_converges", || {
        let mut nl = netlink();
        let addr = Some((Ipv4Addr::new(10, 10, 0, 1), 24));
        let index = nl.ensure_bridge("vmbr10", Some(MAC_A), addr).expect("ensure (create)");
        for _ in 0..3 {
            assert_eq!(nl.ensure_bridge("vmbr10", Some(MAC_A), addr).expect("ensure again"), index);
        }
        let info = nl.link_by_index(index).expect("lookup").expect("exists");
        assert!(info.is_bridge() && info.up && info.mac == Some(MAC_A), "{info:?}");
        let oracle = ip_link("vmbr10").expect("ip sees it");
        assert!(ip_flags(&oracle).contains(&"UP".to_owned()), "{oracle}");
        assert_eq!(ip_ipv4_addrs("vmbr10"), [("10.10.0.1".to_owned(), 24, Some("10.10.0.255".to_owned()))]);

        // A different MAC is applied; without MAC or address nothing changes.
        assert_eq!(nl.ensure_bridge("vmbr10", Some(MAC_B), None).expect("new MAC"), index);
        assert_eq!(ip_link("vmbr10").expect("exists")["address"], "02:76:6d:00:00:0b");
        assert_eq!(nl.ensure_bridge("vmbr10", None, None).expect("bare ensure"), index);
        assert_eq!(ip_link("vmbr10").expect("exists")["address"], "02:76:6d:00:00:0b");

        assert!(nl.ensure_bridge_absent("vmbr10").expect("remove"));
        assert!(!nl.ensure_bridge_absent("vmbr10").expect("remove again"));
        assert!(ip_link("vmbr10").is_none());
    });
}

#[test]
fn adding_the_same_address_twice_is_ok() {
    in_netns("adding_the_same_address_twice_is_ok", || {
        let mut nl = netlink();
        nl.create_bridge("vmbr20", None).expect("create");
        let index = nl.link_by_name("vmbr20").expect("lookup").expect("exists").index;
        let a = Ipv4Addr::new(10, 20, 0, 1);
        nl.add_ipv4_address(index, a, 24).expect("add");
        nl.add_ipv4_address(index, a, 24).expect("add again is ok");
        assert_eq!(ip_ipv4_addrs("vmbr20"), [("10.20.0.1".to_owned(), 24, Some("10.20.0.255".to_owned()))]);
        nl.add_ipv4_address(index, Ipv4Addr::new(10, 21, 0, 1), 32).expect("second address");
        assert_eq!(ip_ipv4_addrs("vmbr20").len(), 2);
        assert!(matches!(nl.add_ipv4_address(index, a, 33), Err(HostNetError::InvalidArgument { what: "IPv4 prefix length", .. })));
        assert!(matches!(nl.add_ipv4_address(999_999, a, 24), Err(HostNetError::NotFound { .. })));
    });
}

// ----- taps --------------------------------------------------------------

#[test]
fn tap_is_created_persistent_and_attached_to_the_bridge() {
    in_netns("tap_is_created_persistent_and_attached_to_the_bridge", || {
        let mut nl = netlink();
        let br = nl.ensure_bridge("vmbr30", Some(MAC_A), None).expect("bridge");
        let tap = nl.ensure_tap_on_bridge("vt30a", "vmbr30", None).expect("tap");

        let oracle = ip_link("vt30a").expect("ip sees the tap");
        assert_eq!(oracle["master"], "vmbr30", "{oracle}");
        assert_eq!(oracle["linkinfo"]["info_kind"], "tun");
        let data = &oracle["linkinfo"]["info_data"];
        assert_eq!(data["type"], "tap", "{oracle}");
        assert_eq!(data["persist"], true, "{oracle}");
        assert_eq!(data["pi"], false, "{oracle}");
        assert_eq!(data["vnet_hdr"], true, "{oracle}");
        assert!(ip_flags(&oracle).contains(&"UP".to_owned()), "{oracle}");

        let info = nl.link_by_index(tap).expect("lookup").expect("exists");
        assert!(info.is_tap() && info.up, "{info:?}");
        assert_eq!(info.controller_index, Some(br));
        let tun = info.tun.expect("tun details");
        assert!(tun.persist && tun.vnet_hdr && !tun.multi_queue, "{tun:?}");
        assert!(!info.lower_up, "no process holds the tap, so no carrier");

        // Idempotent, and a second creation is refused.
        assert_eq!(nl.ensure_tap_on_bridge("vt30a", "vmbr30", None).expect("again"), tap);
        assert!(matches!(nl.create_persistent_tap("vt30a", None), Err(HostNetError::AlreadyExists { .. })));

        // A detached tap is re-attached; one on another bridge is moved.
        nl.set_nocontroller(tap).expect("detach");
        assert!(ip_link("vt30a").expect("exists").get("master").is_none());
        nl.ensure_tap_on_bridge("vt30a", "vmbr30", None).expect("re-attach");
        assert_eq!(ip_link("vt30a").expect("exists")["master"], "vmbr30");
        nl.ensure_bridge("vmbr31", None, None).expect("second bridge");
        nl.ensure_tap_on_bridge("vt30a", "vmbr31", None).expect("move");
        assert_eq!(ip_link("vt30a").expect("exists")["master"], "vmbr31");

        nl.delete_persistent_tap("vt30a").expect("delete");
        assert!(ip_link("vt30a").is_none());
        assert!(matches!(nl.delete_persistent_tap("vt30a"), Err(HostNetError::NotFound { .. })));
        assert!(!nl.ensure_tap_absent("vt30a").expect("absent already"));

        // Free functions, and the bridge must exist for ensure_tap_on_bridge.
        create_persistent_tap("vt30b", None).expect("create");
        delete_persistent_tap("vt30b").expect("delete");
        assert!(matches!(
            nl.ensure_tap_on_bridge("vt30c", "vmbr39", None),
            Err(HostNetError::NotFound { link }) if link == "vmbr39"
        ));
        assert!(ip_link("vt30c").is_none(), "no tap without its bridge");
    });
}

#[test]
fn tap_owner_is_recorded() {
    in_netns("tap_owner_is_recorded", || {
        let mut nl = netlink();
        nl.create_persistent_tap("vt31", Some(4242)).expect("create owned tap");
        let info = nl.link_by_name("vt31").expect("lookup").expect("exists");
        assert_eq!(info.tun.expect("tun details").owner, Some(4242));
        let oracle = ip_link("vt31").expect("exists");
        // ip prints the user's name, or the number when it has none.
        let user = &oracle["linkinfo"]["info_data"]["user"];
        assert!(user == 4242 || user == "4242", "{oracle}");
        assert!(nl.ensure_tap_absent("vt31").expect("delete"));
    });
}

#[test]
fn names_taken_by_other_kinds_are_not_ours_and_left_untouched() {
    in_netns("names_taken_by_other_kinds_are_not_ours_and_left_untouched", || {
        let mut nl = netlink();
        ip(&["link", "add", "vx0", "type", "veth", "peer", "name", "vx1"]);
        ip(&["tuntap", "add", "dev", "tn0", "mode", "tun"]);
        nl.ensure_bridge("vmbr40", None, None).expect("bridge");
        let before: Vec<Value> = ["vx0", "tn0", "vmbr40"].iter().map(|n| without_timers(ip_link(n).expect("exists"))).collect();

        let not_ours = |r: Result<_, HostNetError>, name: &str, expected: &str| match r {
            Err(HostNetError::NotOurs { name: n, expected: e, found }) => {
                assert_eq!((n.as_str(), e), (name, expected), "found {found}");
                found
            }
            other => panic!("{name}: expected NotOurs, got {other:?}"),
        };

        // Taps over a veth, a layer-3 tun and a bridge.
        assert_eq!(not_ours(nl.create_persistent_tap("vx0", None).map(|_| ()), "vx0", "tap"), "kind veth");
        not_ours(create_persistent_tap("vx0", Some(1000)), "vx0", "tap");
        not_ours(nl.ensure_tap_on_bridge("vx0", "vmbr40", None).map(|_| ()), "vx0", "tap");
        not_ours(nl.delete_persistent_tap("vx0"), "vx0", "tap");
        not_ours(nl.ensure_tap_absent("vx0").map(|_| ()), "vx0", "tap");
        assert_eq!(not_ours(nl.ensure_tap_on_bridge("tn0", "vmbr40", None).map(|_| ()), "tn0", "tap"), "a tun device in layer-3 mode");
        not_ours(nl.delete_persistent_tap("tn0"), "tn0", "tap");
        not_ours(nl.create_persistent_tap("vmbr40", None), "vmbr40", "tap");

        // Bridges over a veth and a tun; a veth is no bridge to attach to.
        not_ours(nl.ensure_bridge("vx0", Some(MAC_A), Some((Ipv4Addr::new(10, 40, 0, 1), 24))).map(|_| ()), "vx0", "bridge");
        not_ours(nl.ensure_bridge_absent("vx0").map(|_| ()), "vx0", "bridge");
        not_ours(nl.ensure_bridge("tn0", None, None).map(|_| ()), "tn0", "bridge");
        not_ours(nl.ensure_tap_on_bridge("vt40", "vx0", None).map(|_| ()), "vx0", "bridge");
        assert!(ip_link("vt40").is_none());

        // An alternative name counts as taken, and is not mistaken for
        // the interface it belongs to.
        ip(&["link", "property", "add", "dev", "vx1", "altname", "vmbr41"]);
        let found = not_ours(nl.ensure_bridge("vmbr41", None, None).map(|_| ()), "vmbr41", "bridge");
        assert_eq!(found, "an alternative name of vx1");
        not_ours(nl.ensure_tap_on_bridge("vmbr41", "vmbr40", None).map(|_| ()), "vmbr41", "tap");
        assert!(matches!(nl.create_bridge("vmbr41", None), Err(HostNetError::AlreadyExists { .. })));

        let after: Vec<Value> = ["vx0", "tn0", "vmbr40"].iter().map(|n| without_timers(ip_link(n).expect("still exists"))).collect();
        assert_eq!(before, after, "the other interfaces must be untouched");
        assert!(ip_ipv4_addrs("vx0").is_empty());
        assert!(nl.create_bridge("vx1", None).is_err());
    });
}

#[test]
fn list_links_reads_a_dump_spanning_many_datagrams() {
    in_netns("list_links_reads_a_dump_spanning_many_datagrams", || {
        let mut nl = netlink();
        for i in 0..60 {
            nl.create_bridge(&format!("vmbr{i}"), None).expect("create");
        }
        let links = nl.list_links().expect("list");
        assert_eq!(links.len(), 61, "lo and every bridge");
        assert_eq!(links.iter().filter(|l| l.is_bridge()).count(), 60);
        let oracle: Value = serde_json::from_str(&ip(&["-j", "link", "show"])).expect("JSON");
        assert_eq!(oracle.as_array().map(Vec::len), Some(61));
    });
}

// ----- vlans ---------------------------------------------------------------

#[test]
fn vlan_support_is_probed_without_side_effects() {
    in_netns("vlan_support_is_probed_without_side_effects", || {
        let mut nl = netlink();
        ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        let kernel_has_vlan = Command::new("ip")
            .args(["link", "add", "link", "up0", "name", "up0.7", "type", "vlan", "id", "7"])
            .output()
            .expect("run ip")
            .status
            .success();
        if kernel_has_vlan {
            ip(&["link", "del", "up0.7"]);
        }
        let before = link_names(&mut nl);
        assert_eq!(nl.vlan_supported(), kernel_has_vlan);
        assert_eq!(nl.vlan_supported(), kernel_has_vlan, "probe is repeatable");
        assert_eq!(link_names(&mut nl), before, "the probe leaves nothing behind");

        for vid in [0, 4095] {
            assert!(matches!(nl.create_vlan("up0", vid, "up0.x"), Err(HostNetError::InvalidArgument { what: "vlan id", .. })));
        }
        assert!(matches!(nl.create_vlan("nope0", 7, "nope0.7"), Err(HostNetError::NotFound { .. })));

        let result = nl.create_vlan("up0", 7, "up0.7");
        if kernel_has_vlan {
            result.expect("create vlan");
            let oracle = ip_link("up0.7").expect("vlan exists");
            assert_eq!(oracle["linkinfo"]["info_data"]["id"], 7);
        } else {
            match result {
                Err(e @ HostNetError::Unsupported { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("802.1Q"), "{msg}");
                }
                other => panic!("expected Unsupported, got {other:?}"),
            }
            assert_eq!(link_names(&mut nl), before);
        }
    });
}

// ----- policy-routing rules ------------------------------------------------------

/// `ip <family> rule show` lines (tab-separated, as ip prints them) naming
/// input interface `iif`.
fn ip_rules(family: &str, iif: &str) -> Vec<String> {
    let needle = format!("iif {iif} ");
    ip(&[family, "rule", "show"]).lines().filter(|l| l.contains(&needle)).map(|l| l.trim().to_owned()).collect()
}

#[test]
fn prohibit_rules_are_made_once_found_exactly_and_removed_with_every_copy() {
    in_netns("prohibit_rules_are_made_once_found_exactly_and_removed_with_every_copy", || {
        let mut nl = netlink();
        for (family, flag) in [(IpFamily::V4, "-4"), (IpFamily::V6, "-6")] {
            // Before the interface exists: the kernel keeps it by name.
            assert!(!nl.has_prohibit_rule(family, "vmbr60", 1000).unwrap());
            assert!(nl.ensure_prohibit_rule(family, "vmbr60", 1000).unwrap(), "{flag}: added");
            assert!(!nl.ensure_prohibit_rule(family, "vmbr60", 1000).unwrap(), "{flag}: found, not added again");
            assert_eq!(ip_rules(flag, "vmbr60"), ["1000:\tfrom all iif vmbr60 [detached] prohibit"], "{flag}");
            assert!(nl.has_prohibit_rule(family, "vmbr60", 1000).unwrap());

            // Rules that are not this one: another priority, another
            // interface, another action, a narrower selector.
            ip(&[flag, "rule", "add", "iif", "vmbr60", "prohibit", "pref", "1001"]);
            ip(&[flag, "rule", "add", "iif", "vmbr61", "prohibit", "pref", "1000"]);
            ip(&[flag, "rule", "add", "iif", "vmbr62", "blackhole", "pref", "1000"]);
            ip(&[flag, "rule", "add", "iif", "vmbr63", "fwmark", "7", "prohibit", "pref", "1000"]);
            assert!(!nl.has_prohibit_rule(family, "vmbr62", 1000).unwrap(), "{flag}: blackhole is not prohibit");
            assert!(!nl.has_prohibit_rule(family, "vmbr63", 1000).unwrap(), "{flag}: a fwmark narrows it");
            assert!(!nl.has_prohibit_rule(family, "vmbr60", 1002).unwrap());
            // A copy differing only in its protocol, which NLM_F_EXCL lets in.
            ip(&[flag, "rule", "add", "iif", "vmbr60", "prohibit", "pref", "1000", "protocol", "static"]);
            let others: Vec<String> = ["vmbr61", "vmbr62", "vmbr63"].iter().flat_map(|i| ip_rules(flag, i)).collect();

            // Once the interface exists the rule is attached, and it stays
            // (detached again) when the interface goes: it must be deleted.
            nl.ensure_bridge("vmbr60", None, None).unwrap();
            assert!(ip_rules(flag, "vmbr60").iter().all(|r| !r.contains("detached")), "{flag}");
            nl.ensure_bridge_absent("vmbr60").unwrap();
            assert_eq!(ip_rules(flag, "vmbr60").len(), 3, "{flag}: rules outlive their interface");

            assert_eq!(nl.remove_prohibit_rule(family, "vmbr60", 1000).unwrap(), 2, "{flag}: both copies");
            assert_eq!(nl.remove_prohibit_rule(family, "vmbr60", 1000).unwrap(), 0, "{flag}: idempotent");
            assert_eq!(ip_rules(flag, "vmbr60"), ["1001:\tfrom all iif vmbr60 [detached] prohibit"], "{flag}: another priority stays");
            let still: Vec<String> = ["vmbr61", "vmbr62", "vmbr63"].iter().flat_map(|i| ip_rules(flag, i)).collect();
            assert_eq!(still, others, "{flag}: the other rules are untouched");
        }
        // The two families are apart: IPv4's rules are not IPv6's.
        ip(&["-6", "rule", "flush"]);
        assert!(nl.has_prohibit_rule(IpFamily::V4, "vmbr61", 1000).unwrap());
        assert!(!nl.has_prohibit_rule(IpFamily::V6, "vmbr61", 1000).unwrap());
    });
}

// ----- input checks and privileges --------------------------------------------

#[test]
fn invalid_names_are_refused_before_reaching_the_kernel() {
    in_netns("invalid_names_are_refused_before_reaching_the_kernel", || {
        let mut nl = netlink();
        let bad = ["", "abcdefghijklmnop", "a/b", "a b", "a\0b", "a:0", "tap%d", ".."];
        for name in bad {
            assert!(validate_ifname(name).is_err(), "{name:?}");
            let invalid = |r: Result<(), HostNetError>, what: &str| {
                assert!(matches!(r, Err(HostNetError::InvalidName { .. })), "{what}({name:?}): {r:?}");
            };
            invalid(nl.create_bridge(name, None), "create_bridge");
            invalid(nl.ensure_bridge(name, None, None).map(|_| ()), "ensure_bridge");
            invalid(nl.ensure_bridge_absent(name).map(|_| ()), "ensure_bridge_absent");
            invalid(nl.link_by_name(name).map(|_| ()), "link_by_name");
            invalid(nl.delete_link(name), "delete_link");
            invalid(nl.create_persistent_tap(name, None), "create_persistent_tap");
            invalid(nl.delete_persistent_tap(name), "delete_persistent_tap");
            invalid(nl.ensure_tap_on_bridge(name, "lo", None).map(|_| ()), "ensure_tap_on_bridge");
            invalid(nl.ensure_tap_on_bridge("vt0", name, None).map(|_| ()), "ensure_tap_on_bridge");
            invalid(nl.create_vlan("lo", 5, name), "create_vlan");
        }
        assert_eq!(link_names(&mut nl), ["lo"], "nothing was created");
    });
}

#[test]
fn without_cap_net_admin_changes_fail_with_permission_denied() {
    in_netns("without_cap_net_admin_changes_fail_with_permission_denied", || {
        let mut nl = netlink();
        nl.ensure_bridge("vmbr50", None, None).expect("bridge, as root");
        // Drop to nobody on this thread only (the raw syscall, unlike libc's
        // setresuid, does not propagate to the process's other threads).
        // SAFETY: setresuid takes three integers and touches no memory.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());

        let check = |r: Result<(), HostNetError>| match r {
            Err(e @ HostNetError::PermissionDenied { .. }) => {
                assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        };
        check(nl.create_bridge("vmbr51", None));
        check(nl.ensure_bridge("vmbr50", None, Some((Ipv4Addr::new(10, 50, 0, 1), 24))).map(|_| ()));
        check(nl.create_persistent_tap("vt50", None));
        check(nl.ensure_tap_on_bridge("vt50", "vmbr50", None).map(|_| ()));
        check(nl.delete_link("vmbr50"));
        check(nl.ensure_prohibit_rule(IpFamily::V4, "vmbr50", 1000).map(|_| ()));
        // Reading needs no privilege.
        assert!(nl.link_by_name("vmbr50").expect("lookup").is_some());
    });
}

// ----- QEMU on a persistent tap ------------------------------------------------

const QEMU: &str = "/usr/bin/qemu-system-x86_64";

/// Kills the daemonized QEMU whose pid is in `pidfile` when dropped.
struct Qemu {
    pid: i32,
}

impl Qemu {
    fn start(tap: &str, pidfile: &Path) -> Qemu {
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off");
        let out = Command::new(QEMU)
            .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-S", "-daemonize"])
            .arg("-pidfile")
            .arg(pidfile)
            .args(["-netdev", &netdev])
            .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"])
            .output()
            .expect("run qemu");
        assert!(out.status.success(), "qemu failed: {}", String::from_utf8_lossy(&out.stderr));
        let pid = std::fs::read_to_string(pidfile).expect("pidfile");
        Qemu { pid: pid.trim().parse().expect("pid") }
    }

    fn alive(&self) -> bool {
        // A killed daemon may linger as a zombie until init reaps it.
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    }

    fn kill_and_wait(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        wait_until(Duration::from_secs(5), || !self.alive());
        assert!(!self.alive(), "qemu {} still alive", self.pid);
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.alive() {
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn qemu_opens_the_persistent_tap_and_gives_it_carrier() {
    let test = "qemu_opens_the_persistent_tap_and_gives_it_carrier";
    if !Path::new(QEMU).exists() {
        skip(test, &format!("{QEMU} is not installed"));
        return;
    }
    in_netns(test, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile: PathBuf = dir.path().join("qemu.pid");
        let mut nl = netlink();
        let br = nl.ensure_bridge("vmbr60", Some(MAC_A), Some((Ipv4Addr::new(10, 60, 0, 1), 24))).expect("bridge");
        let tap = nl.ensure_tap_on_bridge("vt60", "vmbr60", None).expect("tap");
        assert!(!nl.link_by_index(tap).expect("lookup").expect("exists").lower_up);

        let qemu = Qemu::start("vt60", &pidfile);
        let mut info = None;
        wait_until(Duration::from_secs(5), || {
            info = nl.link_by_index(tap).expect("lookup");
            info.as_ref().is_some_and(|i| i.lower_up)
        });
        let info = info.expect("tap exists");
        assert!(info.lower_up && info.up, "tap must have carrier while QEMU runs: {info:?}");
        let oracle = ip_link("vt60").expect("exists");
        assert!(ip_flags(&oracle).contains(&"LOWER_UP".to_owned()), "{oracle}");
        assert_eq!(oracle["operstate"], "UP", "{oracle}");
        assert_eq!(oracle["master"], "vmbr60");

        // While QEMU holds it: deletion is refused, ensure still succeeds.
        match nl.delete_persistent_tap("vt60") {
            Err(e @ HostNetError::Busy { .. }) => {
                assert_eq!(e.to_string(), "Tap vt60 is in use by another process")
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(nl.ensure_tap_on_bridge("vt60", "vmbr60", None).expect("ensure while in use"), tap);

        qemu.kill_and_wait();
        let mut info = None;
        wait_until(Duration::from_secs(5), || {
            info = nl.link_by_index(tap).expect("lookup");
            info.as_ref().is_some_and(|i| !i.lower_up)
        });
        let info = info.expect("persistent tap survives QEMU");
        assert!(!info.lower_up, "{info:?}");
        assert_eq!(info.controller_index, Some(br), "still on its bridge");
        assert!(nl.ensure_tap_absent("vt60").expect("delete after QEMU"));
    });
}

// ----- measurements ------------------------------------------------------------

fn mean_ms(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / samples.len().max(1) as f64
}

fn max_ms(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).fold(0.0, f64::max) * 1e3
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn measure_hostnet_latencies() {
    in_netns("measure_hostnet_latencies", || {
        const N: usize = 50;
        let mut nl = netlink();
        let (mut open, mut bridge, mut tap, mut del_tap, mut del_br, mut again) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for i in 0..N {
            let (b, t) = (format!("mbr{i}"), format!("mtp{i}"));
            let mac = [0x02, 0, 0, 0, 0, i as u8 + 1];
            let addr = Some((Ipv4Addr::new(10, 99, i as u8, 1), 24));
            let s = Instant::now();
            drop(netlink());
            open.push(s.elapsed());
            let s = Instant::now();
            nl.ensure_bridge(&b, Some(mac), addr).expect("bridge");
            bridge.push(s.elapsed());
            let s = Instant::now();
            nl.ensure_tap_on_bridge(&t, &b, None).expect("tap");
            tap.push(s.elapsed());
            let s = Instant::now();
            nl.ensure_tap_on_bridge(&t, &b, None).expect("tap again");
            again.push(s.elapsed());
            let s = Instant::now();
            nl.delete_persistent_tap(&t).expect("delete tap");
            del_tap.push(s.elapsed());
            let s = Instant::now();
            nl.delete_link(b.as_str()).expect("delete bridge");
            del_br.push(s.elapsed());
        }
        // The same steps with the ip command, for reference (process spawns).
        let (mut ip_bridge, mut ip_tap, mut ip_del) = (vec![], vec![], vec![]);
        for i in 0..N {
            let (b, t) = (format!("ibr{i}"), format!("itp{i}"));
            let addr = format!("10.98.{i}.1/24");
            let s = Instant::now();
            ip(&["link", "add", &b, "type", "bridge"]);
            ip(&["link", "set", &b, "up"]);
            ip(&["addr", "add", &addr, "dev", &b]);
            ip_bridge.push(s.elapsed());
            let s = Instant::now();
            ip(&["tuntap", "add", "dev", &t, "mode", "tap", "vnet_hdr"]);
            ip(&["link", "set", &t, "master", &b, "up"]);
            ip_tap.push(s.elapsed());
            let s = Instant::now();
            ip(&["tuntap", "del", "dev", &t, "mode", "tap"]);
            ip_del.push(s.elapsed());
            ip(&["link", "del", &b]);
        }
        let rows = [
            ("Netlink::open", &open),
            ("ensure_bridge (new, MAC + IPv4)", &bridge),
            ("ensure_tap_on_bridge (new)", &tap),
            ("ensure_tap_on_bridge (existing)", &again),
            ("delete_persistent_tap", &del_tap),
            ("delete_link (bridge)", &del_br),
            ("ip: bridge add + up + addr", &ip_bridge),
            ("ip: tuntap add + master/up", &ip_tap),
            ("ip: tuntap del", &ip_del),
        ];
        println!("hostnet latencies over {N} iterations (mean / max, ms):");
        for (what, samples) in rows {
            println!("  {what:<34} {:>8.3} / {:>8.3}", mean_ms(samples), max_ms(samples));
        }
    });
}
