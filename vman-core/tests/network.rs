//! Host networking with real guests, bridges, taps and dnsmasq. Every
//! bridged scenario runs in a network namespace of its own: the test binary
//! re-runs itself under `unshare --net`, so vman, its watcher thread, QEMU
//! and dnsmasq all live there, and the host's interfaces are never touched.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{READY, boot};
use vman_core::{ErrorKind, Manager, NetworkMode, NetworkSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState};

const CHILD: &str = "VMAN_TEST_NETNS_CHILD";
const BOOT_WAIT: Duration = Duration::from_secs(120);

/// Runs `test` in a fresh network namespace (re-running this binary there).
/// Returns true in the child, which runs the body; false in the parent, after
/// the child passed. Skips outside CI when not root.
fn in_own_netns(test: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let lo = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
        assert!(lo.success());
        return true;
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "network tests need root in CI");
        eprintln!("skipping {test}: needs root (network namespaces, bridges, taps)");
        return false;
    }
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{test} failed in its namespace:\n{text}");
    false
}

fn bridged(dir: &std::path::Path) -> Manager {
    Manager::open(dir, &OpenOptions { network: Some(NetworkMode::Bridged), ..support::options() }).unwrap()
}

fn links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names
}

/// dnsmasq processes serving this state directory (/proc is host-wide: a
/// network namespace does not hide other tests' processes).
fn dnsmasq_count(state: &std::path::Path) -> usize {
    let state = state.to_string_lossy().into_owned().into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(7).any(|w| w == b"dnsmasq") && c.windows(state.len()).any(|w| w == state.as_slice()))
        })
        .count()
}

/// Types `command` into the guest's shell and waits for `marker` to appear.
fn run_in_guest(vman: &Manager, vm: &str, command: &str, markers: &[&str]) -> String {
    let mut console = vman.console(vm).unwrap();
    console.write_all(format!("{command}\n").as_bytes(), Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = console.read(&mut buf, Duration::from_millis(200)) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // The command echo contains the markers too; wait for output lines.
        if let Some(hit) = markers.iter().find(|m| seen.lines().any(|l| l.trim() == **m)) {
            return hit.to_string();
        }
    }
    panic!("none of {markers:?} from {vm}; console said: {seen}");
}

#[test]
fn vlans_are_isolated_and_dhcp_serves_the_allocations() {
    if !in_own_netns("vlans_are_isolated_and_dhcp_serves_the_allocations") {
        return;
    }
    let Some(base_boot) = boot("vman.net=dhcp") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = bridged(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("v100", 100, "10.100.0.0/24")).unwrap();
    vman.create_network(&NetworkSpec::new("v200", 200, "10.200.0.0/24")).unwrap();
    let two_nics = {
        let mut b = base_boot.clone();
        b.cmdline = b.cmdline.replace("vman.net=dhcp", "vman.net=dhcp,dhcp");
        b
    };
    let specs = [
        VmSpec::new("a", "tiny").nic("v100").boot(base_boot.clone()),
        VmSpec::new("b", "tiny").nic("v100").boot(base_boot.clone()),
        VmSpec::new("c", "tiny").nic("v200").boot(base_boot.clone()),
        VmSpec::new("d", "tiny").nic("v100").nic("v200").boot(two_nics),
    ];
    for spec in &specs {
        vman.create_vm(spec).unwrap();
    }
    for spec in &specs {
        let vm = vman.start(&spec.name).unwrap();
        assert!(vm.nics.iter().all(|n| n.host_interface.is_some()), "bridged NICs have taps");
    }
    // A list reads names (networks, taps) otherwise than a get: both agree.
    for listed in vman.vms(&VmFilter::default()).unwrap() {
        assert_eq!(listed, vman.vm(&listed.name).unwrap(), "listed and read alike");
    }
    let ip = |vm: &str, i: usize| vman.vm(vm).unwrap().nics[i].ip.to_string();
    for (vm, nics) in [("a", 1), ("b", 1), ("c", 1), ("d", 2)] {
        vman.wait_for_console(vm, READY, BOOT_WAIT).unwrap();
        // DHCP gave each NIC exactly the address vman allocated.
        for i in 0..nics {
            let line = vman.wait_for_console(vm, &format!("^VMAN-DHCP eth{i} "), Duration::from_secs(5)).unwrap();
            assert_eq!(line, format!("VMAN-DHCP eth{i} {}/24", ip(vm, i)), "{vm} eth{i}");
        }
    }
    let ping = |from: &str, to: String| {
        run_in_guest(
            &vman,
            from,
            &format!("ping -c 2 -W 2 {to} >/dev/null 2>&1 && echo PING-OK || echo PING-FAIL"),
            &["PING-OK", "PING-FAIL"],
        )
    };
    assert_eq!(ping("a", ip("b", 0)), "PING-OK", "same VLAN");
    assert_eq!(ping("b", ip("a", 0)), "PING-OK", "same VLAN");
    assert_eq!(ping("c", ip("a", 0)), "PING-FAIL", "VLAN 200 must not reach VLAN 100");
    assert_eq!(ping("a", ip("c", 0)), "PING-FAIL", "VLAN 100 must not reach VLAN 200");
    assert_eq!(ping("d", ip("a", 0)), "PING-OK", "two-NIC guest on VLAN 100");
    assert_eq!(ping("d", ip("c", 0)), "PING-OK", "two-NIC guest on VLAN 200");

    for vm in ["a", "b", "c", "d"] {
        vman.force_stop(vm).unwrap();
    }
    assert_eq!(links(), Vec::<String>::new(), "no VM runs: no bridge, no tap");
    assert_eq!(dnsmasq_count(dir.path()), 0, "no VM runs: no DHCP server");
}

/// The policy-routing rules at vman's priority (1000, documented in
/// docs/ARCHITECTURE.md), each prefixed by its family: `-4 1000:\tfrom all
/// iif vmbr100 prohibit`.
fn vman_rules() -> Vec<String> {
    let mut rules = Vec::new();
    for family in ["-4", "-6"] {
        let out = Command::new("ip").args([family, "rule", "show"]).output().unwrap();
        assert!(out.status.success(), "ip {family} rule: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        rules.extend(text.lines().filter(|l| l.starts_with("1000:")).map(|l| format!("{family} {l}")));
    }
    rules
}

/// What `vman_rules` shows for bridges that isolate `bridges`.
fn isolation_rules(bridges: &[&str]) -> Vec<String> {
    let mut rules = Vec::new();
    for family in ["-4", "-6"] {
        rules.extend(bridges.iter().map(|b| format!("{family} 1000:\tfrom all iif {b} prohibit")));
    }
    rules
}

fn ip_rule(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn sysctl(path: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/{path}")).unwrap().trim().to_string()
}

#[test]
fn vlans_stay_apart_when_ip_forward_is_turned_on_after_their_bridges_exist() {
    if !in_own_netns("vlans_stay_apart_when_ip_forward_is_turned_on_after_their_bridges_exist") {
        return;
    }
    let Some(dhcp_boot) = boot("vman.net=dhcp") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = bridged(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("v3111", 3111, "10.111.0.0/24")).unwrap();
    vman.create_network(&NetworkSpec::new("v3112", 3112, "10.112.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("a", "tiny").nic("v3111").boot(dhcp_boot.clone())).unwrap();
    vman.create_vm(&VmSpec::new("b", "tiny").nic("v3112").boot(dhcp_boot)).unwrap();
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
    for vm in ["a", "b"] {
        vman.start(vm).unwrap();
    }
    for vm in ["a", "b"] {
        vman.wait_for_console(vm, READY, BOOT_WAIT).unwrap();
        vman.wait_for_console(vm, "^VMAN-DHCP eth0 ", Duration::from_secs(5)).unwrap();
    }
    assert_eq!(vman_rules(), isolation_rules(&["vmbr3111", "vmbr3112"]));
    assert_eq!(sysctl("ipv4/conf/vmbr3111/forwarding"), "0");

    // What Docker's or libvirt's start does: the kernel then rewrites every
    // interface's forwarding flag, vman's 0 included.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    assert_eq!(sysctl("ipv4/conf/vmbr3111/forwarding"), "1");
    assert_eq!(sysctl("ipv4/conf/vmbr3112/forwarding"), "1");

    let ip = |vm: &str| vman.vm(vm).unwrap().nics[0].ip.to_string();
    let gateway = |vm: &str| vman.vm(vm).unwrap().nics[0].gateway.to_string();
    let ping = |from: &str, to: String| {
        run_in_guest(
            &vman,
            from,
            &format!("ping -c 2 -W 2 {to} >/dev/null 2>&1 && echo PING-OK || echo PING-FAIL"),
            &["PING-OK", "PING-FAIL"],
        )
    };
    assert_eq!(ping("a", gateway("a")), "PING-OK", "the host's own address (gateway, DHCP, DNS) is still delivered");
    assert_eq!(ping("b", gateway("b")), "PING-OK", "the host's own address (gateway, DHCP, DNS) is still delivered");
    assert_eq!(ping("a", ip("b")), "PING-FAIL", "VLAN 3111 must not reach VLAN 3112 through the host");
    assert_eq!(ping("b", ip("a")), "PING-FAIL", "VLAN 3112 must not reach VLAN 3111 through the host");

    // The rules are what keeps them apart: without them the host routes.
    for bridge in ["vmbr3111", "vmbr3112"] {
        ip_rule(&["-4", "rule", "del", "iif", bridge, "prohibit", "pref", "1000"]);
    }
    assert_eq!(ping("a", ip("b")), "PING-OK", "routed once the rules are gone");
    let report = vman.reconcile().unwrap();
    let found: Vec<&str> = report.drifts.iter().map(|d| d.found.as_str()).collect();
    assert_eq!(found.len(), 2, "{report:?}");
    assert!(found.iter().all(|f| f.starts_with("isolation rule of bridge vmbr311")), "{report:?}");
    assert_eq!(vman_rules(), isolation_rules(&["vmbr3111", "vmbr3112"]), "made again, once each");
    assert_eq!(ping("a", ip("b")), "PING-FAIL", "isolated again after the reconcile");
    assert_eq!(ping("b", ip("a")), "PING-FAIL", "isolated again after the reconcile");

    for vm in ["a", "b"] {
        vman.force_stop(vm).unwrap();
        vman.delete_vm(vm, false).unwrap();
    }
    for network in ["v3111", "v3112"] {
        vman.delete_network(network).unwrap();
    }
    assert_eq!(vman_rules(), Vec::<String>::new(), "the rules went with the bridges");
    assert_eq!(links(), Vec::<String>::new());
}

#[test]
fn reconcile_restores_an_isolation_rule_deleted_by_hand_and_no_process_duplicates_one() {
    if !in_own_netns("reconcile_restores_an_isolation_rule_deleted_by_hand_and_no_process_duplicates_one") {
        return;
    }
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let first = bridged(dir.path());
    first.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    first.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    for vm in ["g1", "g2"] {
        first.create_vm(&VmSpec::new(vm, "tiny").nic("lan").boot(spec_boot.clone())).unwrap();
    }
    first.start("g1").unwrap();
    // Another manager of the directory brings the same network up again.
    let second = bridged(dir.path());
    second.start("g2").unwrap();
    assert_eq!(vman_rules(), isolation_rules(&["vmbr100"]), "one rule per family, whoever made the bridge");

    for family in ["-4", "-6"] {
        ip_rule(&[family, "rule", "del", "iif", "vmbr100", "prohibit", "pref", "1000"]);
        assert_eq!(vman_rules().len(), 1, "{family} rule deleted by hand");
        let report = second.reconcile().unwrap();
        assert_eq!(report.drifts.len(), 1, "{report:?}");
        assert_eq!(report.drifts[0].found, "isolation rule of bridge vmbr100 (network lan) missing: its VLAN could be routed to others");
        assert_eq!(report.drifts[0].action, "made it again");
        assert_eq!(vman_rules(), isolation_rules(&["vmbr100"]));
        let report = first.reconcile().unwrap();
        assert!(report.drifts.is_empty(), "{report:?}");
        assert_eq!(vman_rules(), isolation_rules(&["vmbr100"]), "no duplicate");
    }
    first.force_stop("g1").unwrap();
    assert_eq!(vman_rules(), isolation_rules(&["vmbr100"]), "g2 still runs there");
    second.force_stop("g2").unwrap();
    assert_eq!(vman_rules(), Vec::<String>::new(), "gone with the bridge");
    assert!(second.reconcile().unwrap().drifts.is_empty());
}

const KILLED_CHILD: &str = "VMAN_TEST_NETNS_EMBEDDER";

/// Not a test on its own: the embedder that is killed in
/// `a_killed_embedder_leaves_nothing_the_reconciler_cannot_fix`.
#[test]
fn netns_embedder() {
    let Ok(dir) = std::env::var(KILLED_CHILD) else { return };
    let vman = bridged(std::path::Path::new(&dir));
    for vm in ["k1", "k2"] {
        println!("STARTED {vm} {}", vman.start(vm).unwrap().pid.unwrap());
    }
    println!("EMBEDDER-READY");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_embedder_leaves_nothing_the_reconciler_cannot_fix() {
    if !in_own_netns("a_killed_embedder_leaves_nothing_the_reconciler_cannot_fix") {
        return;
    }
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    {
        let vman = bridged(dir.path());
        vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
        vman.create_network(&NetworkSpec::new("v100", 100, "10.100.0.0/24")).unwrap();
        for vm in ["k1", "k2"] {
            vman.create_vm(&VmSpec::new(vm, "tiny").nic("v100").boot(spec_boot.clone())).unwrap();
        }
    }
    let pids = support::run_and_kill_embedder("netns_embedder", KILLED_CHILD, dir.path());
    // Left behind: the bridge, two taps, dnsmasq. Now k2's QEMU dies too.
    assert_eq!(links().len(), 3, "{:?}", links());
    assert_eq!(dnsmasq_count(dir.path()), 1);
    // SAFETY: kill(2) on k2's QEMU, whose pid the embedder printed.
    unsafe { libc::kill(pids[1] as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));

    let vman = bridged(dir.path()); // opening reconciles
    assert_eq!(vman.vm("k1").unwrap().state, VmState::Running);
    assert_eq!(vman.vm("k2").unwrap().state, VmState::Error);
    let k1_tap = vman.vm("k1").unwrap().nics[0].host_interface.clone().unwrap();
    let mut expected = vec![k1_tap, "vmbr100".to_string()];
    expected.sort();
    assert_eq!(links(), expected, "exactly what k1 needs");
    assert_eq!(vman_rules(), isolation_rules(&["vmbr100"]));
    assert_eq!(dnsmasq_count(dir.path()), 1);
    vman.stop("k1", Duration::from_secs(1)).unwrap();
    assert_eq!(links(), Vec::<String>::new());
    assert_eq!(vman_rules(), Vec::<String>::new());
    assert_eq!(dnsmasq_count(dir.path()), 0);
    let report = vman.reconcile().unwrap();
    assert!(report.drifts.is_empty(), "{report:?}");
}

#[test]
fn foreign_interfaces_and_a_missing_dnsmasq_are_typed_errors_that_touch_nothing() {
    if !in_own_netns("foreign_interfaces_and_a_missing_dnsmasq_are_typed_errors_that_touch_nothing") {
        return;
    }
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = bridged(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    // Someone else's interfaces with the names vman would use.
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    ip(&["link", "add", "vmbr300", "type", "veth", "peer", "name", "other300"]);
    ip(&["link", "add", "vmbr400", "type", "bridge"]);
    let before = Command::new("ip").args(["-d", "-j", "link"]).output().unwrap().stdout;
    for (vlan, net) in [(300, "v300"), (400, "v400")] {
        vman.create_network(&NetworkSpec::new(net, vlan, format!("10.{}.0.0/24", vlan / 10))).unwrap();
        vman.create_vm(&VmSpec::new(format!("vm{vlan}"), "tiny").nic(net).boot(spec_boot.clone())).unwrap();
        let err = vman.start(&format!("vm{vlan}")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        assert_eq!(
            err.to_string(),
            format!("Host interface vmbr{vlan} exists and was not made by vman; remove or rename it, or use another VLAN id")
        );
        assert_eq!(vman.vm(&format!("vm{vlan}")).unwrap().state, VmState::Error);
    }
    let after = Command::new("ip").args(["-d", "-j", "link"]).output().unwrap().stdout;
    assert_eq!(before, after, "the foreign interfaces are untouched and nothing was added");
    assert_eq!(vman_rules(), Vec::<String>::new(), "no rule for someone else's interface");

    // A directory setting: no VM runs, so it may change; the next start uses it.
    vman.set_setting("dnsmasq_binary", "/nonexistent/dnsmasq").unwrap();
    let no_dnsmasq = vman;
    no_dnsmasq.create_network(&NetworkSpec::new("v500", 500, "10.50.0.0/24")).unwrap();
    no_dnsmasq.create_vm(&VmSpec::new("vm500", "tiny").nic("v500").boot(spec_boot)).unwrap();
    let err = no_dnsmasq.start("vm500").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.full_message().contains("dnsmasq"), "{}", err.full_message());
    let after_dnsmasq = Command::new("ip").args(["-d", "-j", "link"]).output().unwrap().stdout;
    assert_eq!(after, after_dnsmasq, "the failed start left no bridge or tap behind");
}

#[test]
fn user_mode_needs_no_privilege_and_forwards_ssh() {
    let Some(spec_boot) = boot("vman.net=dhcp") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = Manager::open(dir.path(), &OpenOptions { network: Some(NetworkMode::User), ..support::options() }).unwrap();
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24").reserve("10.100.0.2-10.100.0.20")).unwrap();
    let vm = vman.create_vm(&VmSpec::new("u1", "tiny").nic("lan").boot(spec_boot)).unwrap();
    assert_eq!(vm.nics[0].ip.to_string(), "10.100.0.21");
    let vm = vman.start("u1").unwrap();
    let forward = vm.port_forwards.first().expect("a forwarded SSH port").clone();
    assert_eq!((forward.nic_index, forward.guest_port), (0, 22));
    vman.wait_for_console("u1", READY, BOOT_WAIT).unwrap();
    // The guest's DHCP (QEMU's user-mode server) gave the allocated address.
    let line = vman.wait_for_console("u1", "^VMAN-DHCP eth0 ", Duration::from_secs(5)).unwrap();
    assert_eq!(line, "VMAN-DHCP eth0 10.100.0.21/24");
    // QEMU accepts on the host side at once; until the guest's responder
    // listens, it closes the connection, so retry as an SSH client would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = String::new();
    while !banner.contains("VMAN-SSH-OK") && Instant::now() < deadline {
        banner.clear();
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", forward.host_port)) {
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = conn.read_to_string(&mut banner);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(banner.contains("VMAN-SSH-OK"), "the forward reaches the guest's port 22: {banner:?}");
    vman.force_stop("u1").unwrap();
    assert!(vman.vm("u1").unwrap().port_forwards.is_empty());
}

const WRITER_DB: &str = "VMAN_TEST_WRITER_DB";

/// Not a test on its own: another process that writes to a state database
/// once, as any process sharing the directory may. It gets ready first
/// (started, database open) and writes when told to on stdin, so its own
/// start-up is not part of what the test times.
#[test]
fn barrier_writer() {
    let Ok(db) = std::env::var(WRITER_DB) else { return };
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    println!("WRITER-READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    tx.execute("UPDATE templates SET description = 'written meanwhile'", []).unwrap();
    tx.commit().unwrap();
    println!("WRITER-DONE");
}

#[test]
fn host_work_holds_no_store_lock_so_other_writers_go_on_meanwhile() {
    if !in_own_netns("host_work_holds_no_store_lock_so_other_writers_go_on_meanwhile") {
        return;
    }
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = std::sync::Arc::new(bridged(dir.path()));
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").nic("lan").boot(spec_boot)).unwrap();
    vman.start("g1").unwrap();
    // The barrier: the VLAN's DHCP server, stopped (SIGSTOP). Taking the
    // network down after the VM stops sends it SIGTERM, which stays pending,
    // and waits for it (5 s) before SIGKILL: host work held in mid-flight.
    let state = dir.path().to_string_lossy().into_owned();
    let dnsmasq = support::processes_mentioning(&state)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next().is_some_and(|a0| a0.ends_with(b"dnsmasq")))
        })
        .expect("the VLAN's dnsmasq");
    let mut writer = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "barrier_writer", "--nocapture", "--test-threads=1"])
        .env(WRITER_DB, dir.path().join("vman.db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer_out = std::io::BufReader::new(writer.stdout.take().unwrap());
    let wait_for = |out: &mut std::io::BufReader<std::process::ChildStdout>, word: &str| loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(out, &mut line).unwrap() > 0, "the writer died before {word}");
        if line.contains(word) {
            break;
        }
    };
    wait_for(&mut writer_out, "WRITER-READY");
    // SAFETY: kill(2) on this test's own dnsmasq.
    assert_eq!(unsafe { libc::kill(dnsmasq as i32, libc::SIGSTOP) }, 0);
    let stopper = {
        let vman = vman.clone();
        std::thread::spawn(move || vman.force_stop("g1").map(|vm| vm.state))
    };
    let term_pending = || {
        let status = std::fs::read_to_string(format!("/proc/{dnsmasq}/status")).unwrap_or_default();
        status.lines().filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:")).any(|l| {
            u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).is_ok_and(|bits| bits & (1 << (libc::SIGTERM - 1)) != 0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !term_pending() {
        assert!(Instant::now() < deadline, "the teardown never reached the DHCP server");
        std::thread::sleep(Duration::from_millis(5));
    }
    // While that host work waits, another process's write completes.
    std::io::Write::write_all(writer.stdin.as_mut().unwrap(), b"go\n").unwrap();
    wait_for(&mut writer_out, "WRITER-DONE");
    assert!(!stopper.is_finished(), "the teardown was still waiting on the host when the other write committed");
    assert!(writer.wait().unwrap().success());
    assert_eq!(vman.template("tiny").unwrap().description, "written meanwhile");
    assert_eq!(stopper.join().unwrap().unwrap(), VmState::Stopped);
    assert_eq!(dnsmasq_count(dir.path()), 0, "the stopped DHCP server was killed after its grace time");
}
