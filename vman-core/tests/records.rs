//! Templates, networks, allocation, VM records and history through the public
//! API, against a real SQLite file in a temporary state directory.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vman_core::{ErrorKind, Manager, NetworkSpec, NicSpec, ObjectKind, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState};

fn open() -> (tempfile::TempDir, Manager) {
    let dir = tempfile::tempdir().unwrap();
    let vman = Manager::open(dir.path().join("state"), &OpenOptions::default()).unwrap();
    (dir, vman)
}

/// Every row of every table, so a test can prove a failed call changed nothing.
fn snapshot(vman: &Manager) -> String {
    let conn = rusqlite::Connection::open(vman.state_dir().join("vman.db")).unwrap();
    let mut out = String::new();
    for table in ["templates", "networks", "network_reserved", "free_ranges", "vms", "nics", "events"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY rowid")).unwrap();
        let n = stmt.column_count();
        let rows =
            stmt.query_map([], |r| Ok((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))).unwrap();
        for row in rows {
            out.push_str(table);
            out.push(':');
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    out
}

fn assert_unchanged_by<T: std::fmt::Debug>(vman: &Manager, kind: ErrorKind, f: impl FnOnce(&Manager) -> vman_core::Result<T>) {
    let before = snapshot(vman);
    let err = f(vman).expect_err("call should fail");
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(snapshot(vman), before, "failed call with {err} changed the store");
}

fn base(vman: &Manager) {
    vman.create_template(&TemplateSpec::new("small", 1, 512, 10).description("one core")).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24").dns("10.100.0.1")).unwrap();
}

#[test]
fn state_directory_is_private_and_reopenable() {
    let (_dir, vman) = open();
    base(&vman);
    let meta = std::fs::metadata(vman.state_dir()).unwrap();
    if nix::unistd::geteuid().is_root() {
        // QEMU runs as its own user, whose group may only pass through
        // (to its run directory): no listing, no reading.
        let qemu = nix::unistd::User::from_name(vman_core::DEFAULT_QEMU_USER)
            .unwrap()
            .or_else(|| nix::unistd::User::from_name("nobody").unwrap())
            .unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o710);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), qemu.gid.as_raw());
    } else {
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
    let again = Manager::open(vman.state_dir(), &OpenOptions::default()).unwrap();
    assert_eq!(again.templates().unwrap().len(), 1);
    assert_eq!(again.network("lan").unwrap().vlan, 100);
}

#[test]
fn templates_round_trip_and_refuse_delete_while_used() {
    let (_dir, vman) = open();
    base(&vman);
    let t = vman.template("small").unwrap();
    assert_eq!((t.vcpus, t.memory_mib, t.disk_gib, t.description.as_str()), (1, 512, 10, "one core"));
    vman.create_template(&TemplateSpec::new("large", 8, 16384, 100)).unwrap();
    assert_eq!(vman.templates().unwrap().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["large", "small"]);

    vman.create_vm(&VmSpec::new("web1", "small")).unwrap();
    assert_unchanged_by(&vman, ErrorKind::InUse, |v| v.delete_template("small"));
    vman.delete_vm("web1", false).unwrap();
    vman.delete_template("small").unwrap();
    assert_eq!(vman.template("small").unwrap_err().kind(), ErrorKind::NotFound);
    assert_unchanged_by(&vman, ErrorKind::NotFound, |v| v.delete_template("small"));
}

#[test]
fn bad_input_is_a_typed_error_that_changes_nothing() {
    let (_dir, vman) = open();
    base(&vman);
    vman.create_vm(&VmSpec::new("web1", "small").nic("lan")).unwrap();
    let long = "x".repeat(64);
    for name in ["", long.as_str(), "a/b", "..", "a..b", "a b", "a\0b", "a;b", "$(id)", "`id`", "a|b"] {
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_template(&TemplateSpec::new(name, 1, 512, 1)));
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_network(&NetworkSpec::new(name, 9, "10.9.0.0/24")));
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_vm(&VmSpec::new(name, "small")));
    }
    for (vcpus, mem, disk) in [(0, 512, 1), (1, 0, 1), (1, 512, 0), (1, 1 << 40, 1), (100_000, 512, 1)] {
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_template(&TemplateSpec::new("t", vcpus, mem, disk)));
    }
    for (vlan, cidr) in
        [(0, "10.9.0.0/24"), (4095, "10.9.0.0/24"), (9, "10.9.0.1/24"), (9, "10.9.0.0/31"), (9, "10.9.0.0/32"), (9, "fd00::/64")]
    {
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_network(&NetworkSpec::new("n9", vlan, cidr)));
    }
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_network(&NetworkSpec::new("n9", 9, "10.9.0.0/24").gateway("10.8.0.1"))
    });
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| v.create_network(&NetworkSpec::new("lan", 9, "10.9.0.0/24")));
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| v.create_network(&NetworkSpec::new("other", 100, "10.9.0.0/24")));
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| v.create_template(&TemplateSpec::new("small", 2, 512, 1)));
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| v.create_vm(&VmSpec::new("web1", "small")));
    assert_unchanged_by(&vman, ErrorKind::NotFound, |v| v.create_vm(&VmSpec::new("web2", "nope")));
    assert_unchanged_by(&vman, ErrorKind::NotFound, |v| v.create_vm(&VmSpec::new("web2", "small").nic("lan").nic("nope")));
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_vm(&VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").mac("01:00:5e:00:00:01")))
    });
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_vm(&VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").ip("10.100.0.1")))
    });
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_vm(&VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").ip("10.100.0.255")))
    });
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_vm(&VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").ip("10.200.0.5")))
    });
    let taken_mac = vman.vm("web1").unwrap().nics[0].mac.to_string();
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| {
        v.create_vm(&VmSpec::new("web2", "small").nic("lan").with_nic(NicSpec::on("lan").mac(taken_mac.clone())))
    });
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.recent_events(0));
}

#[test]
fn allocation_automatic_fixed_exhaustion_and_release() {
    let (_dir, vman) = open();
    vman.create_template(&TemplateSpec::new("small", 1, 512, 10)).unwrap();
    // /29: hosts .1-.6, gateway .1, .6 reserved → .2 .3 .4 .5 assignable.
    vman.create_network(&NetworkSpec::new("tiny", 7, "10.7.0.0/29").reserve("10.7.0.6")).unwrap();
    let a = vman.create_vm(&VmSpec::new("a", "small").nic("tiny")).unwrap();
    assert_eq!(a.nics[0].ip.to_string(), "10.7.0.2");
    assert_eq!(a.nics[0].gateway.to_string(), "10.7.0.1");
    assert_eq!(a.nics[0].prefix_len, 29);
    assert!(a.nics[0].mac.to_string().starts_with("52:54:00:"));
    let b = vman.create_vm(&VmSpec::new("b", "small").with_nic(NicSpec::on("tiny").ip("10.7.0.4").mac("52:54:00:aa:bb:cc"))).unwrap();
    assert_eq!((b.nics[0].ip.to_string(), b.nics[0].mac.to_string()), ("10.7.0.4".into(), "52:54:00:aa:bb:cc".into()));
    assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| {
        v.create_vm(&VmSpec::new("c", "small").with_nic(NicSpec::on("tiny").ip("10.7.0.4")))
    });
    assert_eq!(vman.create_vm(&VmSpec::new("c", "small").nic("tiny")).unwrap().nics[0].ip.to_string(), "10.7.0.3");
    assert_eq!(vman.create_vm(&VmSpec::new("d", "small").nic("tiny")).unwrap().nics[0].ip.to_string(), "10.7.0.5");
    assert_unchanged_by(&vman, ErrorKind::Exhausted, |v| v.create_vm(&VmSpec::new("e", "small").nic("tiny")));

    let held: Vec<(String, String, u32)> =
        vman.allocations("tiny").unwrap().into_iter().map(|a| (a.ip.to_string(), a.vm_name, a.nic_index)).collect();
    assert_eq!(
        held,
        [
            ("10.7.0.2".into(), "a".into(), 0),
            ("10.7.0.3".into(), "c".into(), 0),
            ("10.7.0.4".into(), "b".into(), 0),
            ("10.7.0.5".into(), "d".into(), 0)
        ]
    );

    assert_unchanged_by(&vman, ErrorKind::InUse, |v| v.delete_network("tiny"));
    vman.delete_vm("b", false).unwrap();
    assert!(vman.allocations("tiny").unwrap().iter().all(|a| a.vm_name != "b"));
    // The released address and MAC are free again.
    let e = vman.create_vm(&VmSpec::new("e", "small").with_nic(NicSpec::on("tiny").mac("52:54:00:aa:bb:cc"))).unwrap();
    assert_eq!(e.nics[0].ip.to_string(), "10.7.0.4");
    for vm in ["a", "c", "d", "e"] {
        vman.delete_vm(vm, false).unwrap();
    }
    vman.delete_network("tiny").unwrap();
    assert_eq!(vman.network("tiny").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_vm_whose_third_nic_cannot_get_an_address_leaves_nothing_behind() {
    let (_dir, vman) = open();
    base(&vman);
    vman.create_network(&NetworkSpec::new("second", 200, "10.200.0.0/24")).unwrap();
    vman.create_network(&NetworkSpec::new("full", 300, "10.30.0.0/30")).unwrap();
    vman.create_vm(&VmSpec::new("holder", "small").nic("full")).unwrap();
    assert_unchanged_by(&vman, ErrorKind::Exhausted, |v| v.create_vm(&VmSpec::new("multi", "small").nic("lan").nic("second").nic("full")));
    assert_eq!(vman.vm("multi").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(vman.allocations("lan").unwrap().is_empty());
    assert!(vman.allocations("second").unwrap().is_empty());

    let multi = vman.create_vm(&VmSpec::new("multi", "small").nic("lan").nic("second")).unwrap();
    assert_eq!(multi.nics.iter().map(|n| (n.index, n.network.as_str(), n.vlan)).collect::<Vec<_>>(), [(0, "lan", 100), (1, "second", 200)]);
}

#[test]
fn vms_list_filters_and_soft_delete_frees_the_name() {
    let (_dir, vman) = open();
    base(&vman);
    for name in ["web1", "web2", "db1"] {
        vman.create_vm(&VmSpec::new(name, "small").nic("lan")).unwrap();
    }
    let names = |f: VmFilter| vman.vms(&f).unwrap().into_iter().map(|v| v.name).collect::<Vec<_>>();
    assert_eq!(names(VmFilter::default()), ["db1", "web1", "web2"]);
    assert_eq!(names(VmFilter { name_prefix: Some("web".into()), ..Default::default() }), ["web1", "web2"]);
    assert_eq!(names(VmFilter { name_prefix: Some("%".into()), ..Default::default() }), Vec::<String>::new());
    assert_eq!(names(VmFilter { state: Some(VmState::Created), ..Default::default() }).len(), 3);
    assert_eq!(names(VmFilter { state: Some(VmState::Running), ..Default::default() }).len(), 0);

    let old = vman.vm("web1").unwrap();
    assert_eq!(old.state, VmState::Created);
    assert_eq!((old.vcpus, old.memory_mib, old.template.as_str()), (1, 512, "small"));
    vman.delete_vm("web1", false).unwrap();
    assert_eq!(vman.vm("web1").unwrap_err().kind(), ErrorKind::NotFound);
    assert_unchanged_by(&vman, ErrorKind::NotFound, |v| v.delete_vm("web1", false));
    let new = vman.create_vm(&VmSpec::new("web1", "small").nic("lan")).unwrap();
    assert_ne!(new.id, old.id);
    // The deleted VM's history is still reachable by its id.
    let actions: Vec<String> = vman.vm_history(&old.id, 10).unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["created", "deleted"]);
    assert_eq!(vman.vm_history("web1", 10).unwrap().len(), 1);
}

#[test]
fn history_records_every_mutation_with_the_actor() {
    let (_dir, vman) = open();
    base(&vman);
    vman.create_vm(&VmSpec::new("web1", "small").nic("lan")).unwrap();
    vman.delete_vm("web1", false).unwrap();
    let events = vman.recent_events(100).unwrap();
    let summary: Vec<(ObjectKind, &str, &str)> =
        events.iter().map(|e| (e.object_kind, e.object_name.as_str(), e.action.as_str())).collect();
    assert_eq!(
        summary,
        [
            (ObjectKind::Template, "small", "created"),
            (ObjectKind::Network, "lan", "created"),
            (ObjectKind::Vm, "web1", "created"),
            (ObjectKind::Vm, "web1", "deleted"),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id && w[0].at_ms <= w[1].at_ms));
    for e in &events {
        assert_eq!(e.pid, std::process::id());
        assert!(!e.os_user.is_empty());
    }
    assert_eq!(events[2].details["nics"][0]["ip"], "10.100.0.2");
    assert_eq!(events[3].details["released"][0], "10.100.0.2");
    assert_eq!(vman.recent_events(2).unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), [events[2].id, events[3].id]);
}

#[test]
fn threads_sharing_a_manager_never_share_an_address() {
    let (_dir, vman) = open();
    vman.create_template(&TemplateSpec::new("small", 1, 512, 10)).unwrap();
    vman.create_network(&NetworkSpec::new("n", 5, "10.5.0.0/26")).unwrap(); // 61 assignable
    let vman = std::sync::Arc::new(vman);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let vman = vman.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                for i in 0.. {
                    match vman.create_vm(&VmSpec::new(format!("t{t}-{i}"), "small").nic("n")) {
                        Ok(_) => got += 1,
                        Err(e) if e.kind() == ErrorKind::Exhausted => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 61);
    let ips: HashSet<_> = vman.allocations("n").unwrap().into_iter().map(|a| a.ip).collect();
    assert_eq!(ips.len(), 61);
}

const RACE_DIR: &str = "VMAN_TEST_RACE_DIR";

/// Not a test on its own: the body of each racing process in
/// `two_processes_racing_for_addresses_never_duplicate_one`.
#[test]
fn race_child() {
    let Ok(dir) = std::env::var(RACE_DIR) else { return };
    let me = std::process::id();
    let vman = Manager::open(&dir, &OpenOptions::default()).unwrap();
    // Both processes start allocating at the same moment, so they contend.
    std::fs::write(std::path::Path::new(&dir).join(format!("ready-{me}")), b"").unwrap();
    let go = std::path::Path::new(&dir).join("go");
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut got = 0;
    for i in 0.. {
        match vman.create_vm(&VmSpec::new(format!("p{me}-{i}"), "small").nic("race")) {
            Ok(_) => {
                got += 1;
                // A process does some work between allocations; without it a
                // starved scheduler can let one process take everything
                // before the other runs at all, and nothing would be raced.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) if e.kind() == ErrorKind::Exhausted => {
                println!("RACE-RESULT got={got} exhausted=yes");
                return;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

#[test]
fn two_processes_racing_for_addresses_never_duplicate_one() {
    let (_dir, vman) = open();
    vman.create_template(&TemplateSpec::new("small", 1, 512, 10)).unwrap();
    vman.create_network(&NetworkSpec::new("race", 6, "10.6.0.0/24")).unwrap(); // 253 assignable
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env(RACE_DIR, vman.state_dir())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ready =
        || std::fs::read_dir(vman.state_dir()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("ready-")).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ready() < 2 {
        assert!(std::time::Instant::now() < deadline, "children never opened the store");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::write(vman.state_dir().join("go"), b"").unwrap();
    let mut total = 0;
    let mut winners = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let line =
            text.lines().find_map(|l| l.split_once("RACE-RESULT ").map(|(_, rest)| rest)).unwrap_or_else(|| panic!("child said: {text}"));
        assert!(line.ends_with("exhausted=yes"), "each process ends on a clean exhaustion error");
        let got = line.split("got=").nth(1).unwrap().split(' ').next().unwrap().parse::<usize>().unwrap();
        eprintln!("child: {line}");
        winners += usize::from(got > 0);
        total += got;
    }
    let allocations = vman.allocations("race").unwrap();
    let unique: HashSet<_> = allocations.iter().map(|a| a.ip).collect();
    assert_eq!(total, 253);
    assert_eq!(winners, 2, "both processes allocated, so they really raced");
    assert_eq!(allocations.len(), 253);
    assert_eq!(unique.len(), 253, "an address was handed out twice");
}

#[test]
fn an_uplink_needs_802_1q_and_is_refused_clearly_without_it() {
    let (_dir, vman) = open();
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| {
        v.create_network(&NetworkSpec::new("up", 100, "10.9.0.0/24").uplink("a-very-long-if"))
    });
    // This kernel has no 8021q; where it does, the network is recorded.
    if std::path::Path::new("/proc/net/vlan").exists() {
        assert_eq!(
            vman.create_network(&NetworkSpec::new("up", 100, "10.9.0.0/24").uplink("eth0")).unwrap().uplink.as_deref(),
            Some("eth0")
        );
        return;
    }
    let before = snapshot(&vman);
    let err = vman.create_network(&NetworkSpec::new("up", 100, "10.9.0.0/24").uplink("eth0")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("802.1Q") && err.to_string().contains("eth0.100"), "{err}");
    assert_eq!(snapshot(&vman), before);
}

#[test]
fn unusable_subnets_and_leading_zeros_are_refused_and_change_nothing() {
    let (_dir, vman) = open();
    base(&vman);
    for cidr in [
        "127.0.0.0/8",
        "127.0.0.0/24",
        "0.0.0.0/8",
        "169.254.0.0/16",
        "169.254.3.0/24",
        "224.0.0.0/8",
        "239.1.0.0/16",
        "240.0.0.0/8",
        "255.255.255.0/24",
        "96.0.0.0/3",
    ] {
        let err = vman.create_network(&NetworkSpec::new("n9", 9, cidr)).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{cidr}: {err}");
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_network(&NetworkSpec::new("n9", 9, cidr)));
    }
    let zeros = [
        NetworkSpec::new("n9", 9, "10.010.0.0/24"),
        NetworkSpec::new("n9", 9, "10.9.0.0/024"),
        NetworkSpec::new("n9", 9, "10.9.0.0/24").gateway("10.9.0.01"),
        NetworkSpec::new("n9", 9, "10.9.0.0/24").reserve("10.9.0.2-10.9.0.09"),
        NetworkSpec::new("n9", 9, "10.9.0.0/24").dns("1.1.1.01"),
    ];
    for spec in zeros {
        let err = vman.create_network(&spec).unwrap_err();
        assert!(err.to_string().contains("leading zero"), "{spec:?}: {err}");
        assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_network(&spec));
    }
    let nic = VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").ip("10.100.0.050"));
    assert_unchanged_by(&vman, ErrorKind::InvalidArgument, |v| v.create_vm(&nic));
    // The same addresses written plainly are fine.
    vman.create_network(&NetworkSpec::new("n9", 9, "10.9.0.0/24").gateway("10.9.0.1").reserve("10.9.0.2-10.9.0.9").dns("1.1.1.1")).unwrap();
    assert_eq!(
        vman.create_vm(&VmSpec::new("web2", "small").with_nic(NicSpec::on("lan").ip("10.100.0.50"))).unwrap().nics[0].ip.to_string(),
        "10.100.0.50"
    );
}

#[test]
fn a_subnet_overlapping_a_live_network_is_refused_naming_it() {
    let (_dir, vman) = open();
    base(&vman); // lan: 10.100.0.0/24
    for cidr in ["10.100.0.0/24", "10.100.0.0/16", "10.100.0.128/25", "10.0.0.0/8"] {
        let err = vman.create_network(&NetworkSpec::new("other", 9, cidr)).unwrap_err();
        assert!(err.to_string().contains("\"lan\"") && err.to_string().contains("10.100.0.0/24"), "{cidr}: {err}");
        assert_unchanged_by(&vman, ErrorKind::AlreadyExists, |v| v.create_network(&NetworkSpec::new("other", 9, cidr)));
    }
    // Neighbours do not overlap; a deleted network no longer counts.
    vman.create_network(&NetworkSpec::new("below", 9, "10.99.255.0/24")).unwrap();
    vman.create_network(&NetworkSpec::new("above", 10, "10.100.1.0/24")).unwrap();
    vman.delete_network("lan").unwrap();
    vman.create_network(&NetworkSpec::new("other", 11, "10.100.0.0/25")).unwrap();
}

#[test]
fn overlapping_creates_racing_on_two_connections_never_both_win() {
    let (_dir, first) = open();
    let second = Manager::open(first.state_dir(), &OpenOptions::default()).unwrap();
    let managers = [first, second];
    let barrier = std::sync::Barrier::new(2);
    let rounds = 30u16;
    let outcomes: Vec<Vec<Result<(), ErrorKind>>> = std::thread::scope(|s| {
        let handles: Vec<_> = managers
            .iter()
            .enumerate()
            .map(|(t, vman)| {
                let barrier = &barrier;
                s.spawn(move || {
                    (1..=rounds)
                        .map(|round| {
                            // Different names and VLANs; only the subnets collide
                            // (a /24 inside the other thread's /16).
                            let spec = if t == 0 {
                                NetworkSpec::new(format!("a{round}"), 100 + round, format!("10.{round}.7.0/24"))
                            } else {
                                NetworkSpec::new(format!("b{round}"), 1000 + round, format!("10.{round}.0.0/16"))
                            };
                            barrier.wait();
                            vman.create_network(&spec).map(drop).map_err(|e| e.kind())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut wins = [0; 2];
    for (round, (a, b)) in outcomes[0].iter().zip(&outcomes[1]).enumerate() {
        match (a, b) {
            (Ok(()), Err(ErrorKind::AlreadyExists)) => wins[0] += 1,
            (Err(ErrorKind::AlreadyExists), Ok(())) => wins[1] += 1,
            other => panic!("round {round}: exactly one create must win, got {other:?}"),
        }
    }
    eprintln!("overlap race: first thread won {} rounds, second {}", wins[0], wins[1]);
    assert_eq!(outcomes[0].len(), usize::from(rounds));
    let networks = managers[0].networks().unwrap();
    assert_eq!(networks.len(), usize::from(rounds));
}

#[test]
fn bad_open_options_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let bad = [
        OpenOptions { busy_timeout_ms: 0, ..OpenOptions::default() },
        OpenOptions { busy_timeout_ms: vman_core::MAX_BUSY_TIMEOUT_MS + 1, ..OpenOptions::default() },
        OpenOptions { busy_timeout_ms: u64::MAX, ..OpenOptions::default() },
        OpenOptions { qemu_binary: Some("".into()), ..OpenOptions::default() },
        OpenOptions { dnsmasq_binary: Some("".into()), ..OpenOptions::default() },
        OpenOptions { serial_log_cap_bytes: Some(0), ..OpenOptions::default() },
        OpenOptions { serial_log_cap_bytes: Some(vman_core::MIN_SERIAL_LOG_CAP_BYTES - 1), ..OpenOptions::default() },
        OpenOptions { serial_log_cap_bytes: Some(vman_core::MAX_SERIAL_LOG_CAP_BYTES + 1), ..OpenOptions::default() },
        OpenOptions { qemu_user: Some("no-such-user-here".into()), ..OpenOptions::default() },
    ];
    for options in bad {
        let err = Manager::open(&state, &options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{options:?}: {err}");
        assert!(!state.exists(), "{options:?} created the state directory");
    }
    // The setters refuse the same values and leave the options as they were.
    let mut options = OpenOptions::default();
    assert_eq!(options.set_busy_timeout_ms(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options.set_serial_log_cap_bytes(4095).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options.set_qemu_binary("").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options.set_dnsmasq_binary("").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options, OpenOptions::default());
    // The limits themselves are accepted.
    options.set_busy_timeout_ms(1).unwrap().set_serial_log_cap_bytes(vman_core::MIN_SERIAL_LOG_CAP_BYTES).unwrap();
    options.set_qemu_binary("/usr/bin/qemu-system-x86_64").unwrap().set_dnsmasq_binary("dnsmasq").unwrap();
    Manager::open(&state, &options).unwrap();
}

#[test]
fn a_state_directory_too_long_for_socket_paths_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_string_lossy().into_owned();
    let of_len = |len: usize| std::path::PathBuf::from(format!("{base}/{}", "d".repeat(len - base.len() - 1)));
    let long = of_len(108);
    let err = Manager::open(&long, &OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!long.exists(), "the refused state directory was created");
    // The message names the longest directory that fits; one byte more is refused, that one opens.
    let text = err.to_string();
    assert!(text.contains(&*long.to_string_lossy()), "{text}");
    let fits: usize = text.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{text}"));
    assert!((60..108).contains(&fits), "{text}");
    assert_eq!(Manager::open(of_len(fits + 1), &OpenOptions::default()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(!of_len(fits + 1).exists());
    Manager::open(of_len(fits), &OpenOptions::default()).unwrap();
}

#[test]
fn records_compare_and_hash_by_value() {
    let (_dir, vman) = open();
    base(&vman);
    vman.create_vm(&VmSpec::new("web1", "small").nic("lan")).unwrap();
    let (first, second) = (vman.vm("web1").unwrap(), vman.vm("web1").unwrap());
    assert_eq!(first, second);
    let set: HashSet<_> = [first.clone(), second].into_iter().collect();
    assert_eq!(set.len(), 1);
    vman.create_vm(&VmSpec::new("web2", "small").nic("lan")).unwrap();
    assert!(!set.contains(&vman.vm("web2").unwrap()));
    let events: HashSet<_> = vman.recent_events(100).unwrap().into_iter().chain(vman.recent_events(100).unwrap()).collect();
    assert_eq!(events.len(), vman.recent_events(100).unwrap().len());
    let networks: HashSet<_> = [vman.network("lan").unwrap(), vman.networks().unwrap().remove(0)].into_iter().collect();
    assert_eq!(networks.len(), 1);
    assert_eq!(vman.template("small").unwrap(), vman.templates().unwrap()[0]);
    assert_eq!(vman.reconcile().unwrap(), vman.reconcile().unwrap());
}
