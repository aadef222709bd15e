//! Batches: N VMs from one spec and a naming pattern, whole or not at all,
//! against the real store, qemu-img and (in a network namespace of their
//! own) QEMU, bridges, taps and dnsmasq.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use support::{Cleanup, boot, open};
use vman_core::{BatchSpec, BatchState, DiskFilter, ErrorKind, ImageSpec, Manager, NetworkSpec, TemplateSpec, VmFilter, VmSpec, VmState};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEEHKILeIA5KIMgEOxa+GSMJKC0wYoXMrzyXxBvwHzw alice@example";

/// Every file and directory under the state directory but the database:
/// what a failed call must leave as it found.
fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("vman.db") || rel == "run/accel-probe" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                walk(root, &entry.path(), out);
            }
            out.insert(rel);
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// A directory with template "t", network "lan" (/24), image "base" (a
/// 64 MiB qcow2) and SSH key "alice".
fn setup(dir: &Path) -> Manager {
    let m = open(dir);
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    m.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    let src = tempfile::tempdir().unwrap();
    let base = src.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("64M").status().unwrap().success());
    m.register_image(&ImageSpec::new("base", base.to_str().unwrap())).unwrap();
    m.import_ssh_key("alice", KEY).unwrap();
    m
}

fn worker() -> VmSpec {
    VmSpec::new("", "t").image("base").nic("lan").ssh_key("alice").cloud_init(Some("#cloud-config\npackages: [htop]\n".into()))
}

fn batch_events(m: &Manager, batch: &str) -> Vec<String> {
    m.recent_events(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.object_name == batch && e.object_kind.as_str() == "batch")
        .map(|e| e.action)
        .collect()
}

#[test]
fn a_batch_of_linked_clones_is_made_listed_and_deleted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    let batch = m.create_batch(&BatchSpec::new("worker{:02}", 3, worker())).unwrap();
    assert_eq!((batch.name.as_str(), batch.pattern.as_str(), batch.count, batch.state), ("worker", "worker{:02}", 3, BatchState::Created));
    assert_eq!(batch.vms, ["worker01", "worker02", "worker03"]);
    assert_eq!(m.batches().unwrap(), std::slice::from_ref(&batch));
    assert_eq!(m.batch("worker").unwrap(), batch);
    assert_eq!(batch_events(&m, "worker"), ["creating", "created"]);
    // Each VM is what create_vm would have made of the spec.
    let ips: Vec<String> = m.allocations("lan").unwrap().iter().map(|a| format!("{} {}", a.vm_name, a.ip)).collect();
    assert_eq!(ips, ["worker01 10.100.0.2", "worker02 10.100.0.3", "worker03 10.100.0.4"]);
    for name in &batch.vms {
        let vm = m.vm(name).unwrap();
        assert_eq!((vm.state, vm.template.as_str(), vm.cloud_init, vm.ssh_keys.len()), (VmState::Created, "t", true, 1));
        let disk = m.disk(&format!("{name}.boot")).unwrap();
        assert_eq!((disk.image.as_deref(), disk.vm.as_deref()), (Some("base"), Some(name.as_str())));
        assert!(Path::new(&disk.path).is_file());
    }
    // A second batch numbers on, under a name of its own.
    let more = m.create_batch(&BatchSpec::new("worker{:02}", 2, worker()).first(4).name("more")).unwrap();
    assert_eq!(more.vms, ["worker04", "worker05"]);
    assert_eq!(m.batches().unwrap().iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["more", "worker"]);
    // A VM deleted on its own leaves its batch.
    m.delete_vm("worker02", false).unwrap();
    assert_eq!(m.batch("worker").unwrap().vms, ["worker01", "worker03"]);

    assert_eq!(m.delete_batch("worker", false).unwrap(), ["worker01", "worker03"]);
    assert_eq!(m.batch("worker").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(batch_events(&m, "worker"), ["creating", "created", "deleting", "deleted"]);
    let left: Vec<String> = m.vms(&VmFilter::default()).unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(left, ["worker04", "worker05"]);
    assert_eq!(m.disks(&DiskFilter::default()).unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(dir.path().join("disks")).unwrap().count(), 2);
    // The name is free again.
    m.create_batch(&BatchSpec::new("worker{:02}", 1, worker())).unwrap();
    assert_eq!(m.delete_batch("nope", false).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn taken_and_bad_names_are_refused_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    m.create_vm(&VmSpec::new("web02", "t")).unwrap();
    m.create_batch(&BatchSpec::new("db{}", 1, VmSpec::new("", "t"))).unwrap();
    let before = (m.recent_events(1000).unwrap(), m.vms(&VmFilter::default()).unwrap(), m.batches().unwrap(), files(dir.path()));
    let refused = [
        (BatchSpec::new("web{:02}", 3, worker()), ErrorKind::AlreadyExists), // web02 is taken
        (BatchSpec::new("x{}", 2, worker()).name("db"), ErrorKind::AlreadyExists), // so is batch db
        (BatchSpec::new("web{:02", 3, worker()), ErrorKind::InvalidArgument),
        (BatchSpec::new("web", 3, worker()), ErrorKind::InvalidArgument),
        (BatchSpec::new("web{}", 0, worker()), ErrorKind::InvalidArgument),
        (BatchSpec::new("web{}", vman_core::MAX_BATCH_SIZE + 1, worker()), ErrorKind::InvalidArgument),
        (BatchSpec::new("web{}", 2, VmSpec::new("named", "t")), ErrorKind::InvalidArgument),
        (BatchSpec::new("web{}", 2, VmSpec::new("", "nope")), ErrorKind::NotFound),
        (BatchSpec::new("web{}", 2, VmSpec::new("", "t").image("nope")), ErrorKind::NotFound),
        (BatchSpec::new("web{}", 2, VmSpec::new("", "t").ssh_key("nope")), ErrorKind::NotFound),
    ];
    for (spec, kind) in refused {
        let err = m.create_batch(&spec).unwrap_err();
        assert_eq!(err.kind(), kind, "{spec:?}: {err}");
    }
    let err = m.create_batch(&BatchSpec::new("web{:02}", 3, worker())).unwrap_err();
    assert!(err.to_string().contains("\"web02\""), "{err}");
    let after = (m.recent_events(1000).unwrap(), m.vms(&VmFilter::default()).unwrap(), m.batches().unwrap(), files(dir.path()));
    assert_eq!(before, after);
}

#[test]
fn a_batch_whose_third_vm_finds_no_address_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    // Two free addresses: .2 and .3.
    m.create_network(&NetworkSpec::new("small", 9, "10.9.0.0/29").reserve("10.9.0.4-10.9.0.6")).unwrap();
    let before = (m.recent_events(1000).unwrap(), files(dir.path()));
    let err = m.create_batch(&BatchSpec::new("node{}", 3, worker().nic("small"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    assert_eq!((m.recent_events(1000).unwrap(), files(dir.path())), before);
    assert!(m.vms(&VmFilter::default()).unwrap().is_empty());
    assert!(m.batches().unwrap().is_empty());
    assert!(m.allocations("lan").unwrap().is_empty() && m.allocations("small").unwrap().is_empty());
    assert!(m.disks(&DiskFilter::default()).unwrap().is_empty());
    // Two fit.
    assert_eq!(m.create_batch(&BatchSpec::new("node{}", 2, worker().nic("small"))).unwrap().vms, ["node1", "node2"]);
}

#[test]
fn delete_by_prefix_takes_matching_vms_and_retires_emptied_batches() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path());
    m.create_batch(&BatchSpec::new("cp{:02}", 3, worker()).name("control")).unwrap();
    m.create_batch(&BatchSpec::new("worker{}", 2, worker())).unwrap();
    m.create_vm(&VmSpec::new("workers-db", "t")).unwrap();
    m.create_vm(&VmSpec::new("cpx", "t")).unwrap();
    for bad in ["", "-x", "a b", "../x"] {
        assert_eq!(m.delete_vms_by_prefix(bad, false).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    assert!(m.delete_vms_by_prefix("nothing", false).unwrap().is_empty());
    // Byte for byte, case-sensitive.
    assert!(m.delete_vms_by_prefix("CP", false).unwrap().is_empty());
    assert_eq!(m.delete_vms_by_prefix("cp0", false).unwrap(), ["cp01", "cp02", "cp03"]);
    assert_eq!(m.batch("control").unwrap_err().kind(), ErrorKind::NotFound, "an emptied batch is deleted");
    assert_eq!(batch_events(&m, "control"), ["creating", "created", "deleted"]);
    assert_eq!(m.delete_vms_by_prefix("worker", false).unwrap(), ["worker1", "worker2", "workers-db"]);
    assert!(m.batches().unwrap().is_empty());
    let left: Vec<String> = m.vms(&VmFilter::default()).unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(left, ["cpx"]);
    assert_eq!(m.disks(&DiskFilter::default()).unwrap(), []);
    assert_eq!(std::fs::read_dir(dir.path().join("disks")).unwrap().count(), 0);
    assert_eq!(m.allocations("lan").unwrap(), []);
}

// ----- with QEMU, bridged, in a network namespace of its own -------------

const CHILD: &str = "VMAN_TEST_BATCH_NETNS_CHILD";

/// Runs `test` in a fresh network namespace (re-running this binary there).
/// True in the child, which runs the body; false in the parent, after the
/// child passed. Skips outside CI when not root.
fn in_own_netns(test: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        assert!(Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap().success());
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

/// Interfaces other than lo in this namespace.
fn links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .filter(|n| n != "lo")
        .collect()
}

/// A QEMU that really fails for VM `fails`: the wrapper hands QEMU a
/// kernel file that does not exist. It runs as QEMU's unprivileged user,
/// so it lives where that user may read it.
fn qemu_failing_for(fails: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = dir.path().join("qemu");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$*\" in *guest={fails},*) exec qemu-system-x86_64 \"$@\" -kernel /nonexistent/vmlinuz;; esac\n\
             exec qemu-system-x86_64 \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, script)
}

fn check_nothing_left(m: &Manager, dir: &Path, before: &BTreeSet<String>) {
    assert!(m.vms(&VmFilter::default()).unwrap().is_empty());
    assert!(m.batches().unwrap().is_empty());
    assert_eq!(m.allocations("lan").unwrap(), []);
    assert_eq!(m.disks(&DiskFilter::default()).unwrap(), []);
    // The network's own lock and DHCP log stay while the network does.
    let network_files = |f: &String| !f.starts_with("locks/net-") && !f.starts_with("run/net-");
    let now: BTreeSet<String> = files(dir).into_iter().filter(network_files).collect();
    assert_eq!(&now, before, "disks, seeds, run directories and locks");
    assert_eq!(support::processes_mentioning(&format!("{}/", dir.display())), Vec::<u32>::new(), "QEMU or dnsmasq left running");
    assert_eq!(links(), Vec::<String>::new(), "taps or bridges left");
    assert_eq!(m.reconcile().unwrap().drifts, [], "the next reconcile has nothing to repair");
}

#[test]
fn a_batch_whose_third_start_fails_leaves_nothing_behind() {
    if !in_own_netns("a_batch_whose_third_start_fails_leaves_nothing_behind") {
        return;
    }
    let Some(kernel_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    drop(setup(dir.path()));
    let (_wrapper_dir, qemu) = qemu_failing_for("worker03");
    let m = Manager::open(dir.path(), &support::options()).unwrap();
    m.set_setting("network", "bridged").unwrap();
    m.set_setting("qemu_binary", qemu.to_str().unwrap()).unwrap();
    let before = files(dir.path());
    let spec = BatchSpec::new("worker{:02}", 3, worker().boot(kernel_boot)).start(true);
    let err = m.create_batch(&spec).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Qemu, "{err}");
    assert!(err.full_message().contains("/nonexistent/vmlinuz"), "QEMU's own words: {}", err.full_message());
    check_nothing_left(&m, dir.path(), &before);
    assert_eq!(batch_events(&m, "worker"), ["creating", "rolling_back", "deleted"]);
    // The two that ran were stopped, then deleted.
    let history =
        m.vm_history(&m.recent_events(1000).unwrap().iter().find(|e| e.object_name == "worker01").unwrap().object_id, 100).unwrap();
    let ran = history.iter().any(|e| e.details["to"] == "running");
    assert!(ran && history.last().unwrap().action == "deleted", "{history:?}");

    // Without the failure, the batch runs whole: each VM its QEMU and tap;
    // deleting the batch takes them all.
    let spec = BatchSpec::new("node{}", 2, worker().boot(boot("").unwrap())).start(true);
    let batch = m.create_batch(&spec).unwrap();
    let vms: Vec<_> = batch.vms.iter().map(|n| m.vm(n).unwrap()).collect();
    assert!(vms.iter().all(|v| v.state == VmState::Running && v.pid.is_some_and(support::alive)));
    assert_eq!(links().iter().filter(|l| l.starts_with("vt")).count(), 2, "{:?}", links());
    // Without force, neither the batch nor a prefix deletion kills them:
    // refused before anything is deleted, naming the running VMs.
    let events = m.recent_events(1000).unwrap().len();
    for err in [m.delete_batch("node", false).unwrap_err(), m.delete_vms_by_prefix("no", false).unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
        assert!(err.to_string().contains("VM node1, node2") && err.to_string().contains("force"), "{err}");
    }
    assert_eq!(m.recent_events(1000).unwrap().len(), events, "nothing was deleted");
    assert_eq!(m.batch("node").unwrap().vms, ["node1", "node2"]);
    assert!(vms.iter().all(|v| support::alive(v.pid.unwrap())));
    assert_eq!(m.delete_batch("node", true).unwrap(), ["node1", "node2"]);
    assert!(vms.iter().all(|v| !support::alive(v.pid.unwrap())));
    check_nothing_left(&m, dir.path(), &before);
}
