//! Kills of the embedding process in the middle of storage operations:
//! a linked-clone VM create and delete, a live attach and detach, and an
//! offline snapshot create and delete, each interrupted at random instants.
//! After each kill a new process opens the directory (which reconciles)
//! and finds store, files, QEMU and the guest agreeing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Cleanup, READY, boot, open};
use vman_core::{DiskFilter, DiskSpec, DiskState, ErrorKind, ImageSpec, Manager, TemplateSpec, VmSpec};

const CHILD_DIR: &str = "VMAN_TEST_STORAGE_CRASH_DIR";
const CHILD_FIRST: &str = "VMAN_TEST_STORAGE_CRASH_FIRST";
/// Run only this operation, then wait to be killed.
const CHILD_ONLY: &str = "VMAN_TEST_STORAGE_CRASH_ONLY";
const MIB: u64 = 1024 * 1024;

/// Not a test on its own: the embedder that is killed. It cycles through
/// the storage operations, printing BEGIN/END around each.
#[test]
fn storage_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let m = open(Path::new(&dir));
    println!("OPENED");
    let ok = |what: &str, r: vman_core::Result<()>| {
        if let Err(e) = r {
            assert_ne!(e.kind(), ErrorKind::Internal, "{what}: {e}");
        }
    };
    // Each embedder begins at another operation, so every one of them is
    // interrupted in some round, not only the slowest.
    let first: usize = std::env::var(CHILD_FIRST).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ops: [(&str, &dyn Fn() -> vman_core::Result<()>); 6] = [
        ("clone", &|| m.create_vm(&VmSpec::new("k", "t").image("base")).map(drop)),
        ("delete-clone", &|| m.delete_vm("k", true)),
        ("attach", &|| m.attach_disk("g", "hot").map(drop)),
        ("detach", &|| m.detach_disk("g", "hot", Duration::from_secs(20)).map(drop)),
        ("snapshot", &|| m.create_snapshot("c", "s").map(drop)),
        ("delete-snapshot", &|| m.delete_snapshot("c", "s")),
    ];
    if let Ok(only) = std::env::var(CHILD_ONLY) {
        let (name, op) = ops.iter().find(|(name, _)| *name == only).unwrap();
        println!("BEGIN {name}");
        ok(name, op());
        println!("DONE {name}");
        std::thread::sleep(Duration::from_secs(600)); // until killed
    }
    for i in first.. {
        let (name, op) = ops[i % ops.len()];
        println!("BEGIN {name}");
        ok(name, op());
    }
}

/// Starts this test binary's `storage_crash_child` on `dir` with `envs`;
/// its output lines are collected as they come.
fn embedder(dir: &Path, envs: &[(&str, String)]) -> (std::process::Child, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "storage_crash_child", "--nocapture", "--test-threads=1"]).env(CHILD_DIR, dir).stdout(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, lines)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The directory every kill test starts from: a running guest `g` with a
/// spare disk `hot`, a stopped VM `c` with a qcow2 disk, and an image.
fn setup(dir: &Path) -> Option<()> {
    let kernel_boot = boot("")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let m = open(dir);
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    let src = tempfile::tempdir().unwrap();
    let base = src.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("64M").status().unwrap().success());
    m.register_image(&ImageSpec::new("base", base.to_str().unwrap())).unwrap();
    m.create_vm(&VmSpec::new("g", "t").boot(kernel_boot)).unwrap();
    m.create_disk(&DiskSpec::new("hot", 16 * MIB)).unwrap();
    m.create_vm(&VmSpec::new("c", "t")).unwrap();
    m.create_disk(&DiskSpec::new("cdata", 16 * MIB)).unwrap();
    m.attach_disk("c", "cdata").unwrap();
    m.start("g").unwrap();
    m.wait_for_console("g", READY, Duration::from_secs(90)).unwrap();
    Some(())
}

/// A `qemu-img` that, for subcommand `slow_on`, says so in `mark` and
/// sleeps before doing the work: the embedder is then killed exactly while
/// its host work runs.
fn slow_qemu_img(dir: &Path, slow_on: &str, mark: &Path) -> String {
    let real = String::from_utf8(Command::new("sh").args(["-c", "command -v qemu-img"]).output().unwrap().stdout).unwrap();
    let bin = dir.join("slow-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("qemu-img");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = {slow_on} ]; then echo \"$@\" >>'{}'; sleep 30; fi\nexec {} \"$@\"\n",
            mark.display(),
            real.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn kills_at_chosen_points_of_clone_snapshot_and_detach_leave_everything_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    if setup(dir.path()).is_none() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    // While qemu-img makes the clone's overlay, takes a snapshot, removes one.
    for (op, slow_on) in [("clone", "create"), ("snapshot", "snapshot"), ("delete-snapshot", "snapshot")] {
        if op == "delete-snapshot" {
            open(dir.path()).create_snapshot("c", "s").unwrap();
        }
        let mark = tools.path().join(format!("{op}.mark"));
        let path = slow_qemu_img(tools.path(), slow_on, &mark);
        let (mut child, _lines) = embedder(dir.path(), &[(CHILD_ONLY, op.to_string()), ("PATH", path)]);
        wait_for(&format!("qemu-img {slow_on} of {op}"), || mark.exists());
        child.kill().unwrap();
        child.wait().unwrap();
        let m = open(dir.path());
        check(&m, dir.path(), &format!("killed while qemu-img ran for {op}"));
        // The intent was undone or finished, never left half.
        match op {
            "clone" => assert!(m.vm("k").is_ok_and(|_| m.disk("k.boot").is_ok()) || m.vm("k").is_err()),
            _ => assert!(m.snapshots("c").unwrap().iter().all(|s| s.state == "ready")),
        }
    }
    // While a paused guest holds a disk that is being detached.
    {
        let m = open(dir.path());
        if m.disk("hot").unwrap().vm.is_none() {
            m.attach_disk("g", "hot").unwrap();
        }
        wait_for("the guest to see the disk", || guest_disks(&m) == 1);
        m.pause("g").unwrap();
    }
    let (mut child, lines) = embedder(dir.path(), &[(CHILD_ONLY, "detach".to_string())]);
    wait_for("the detach to begin", || lines.lock().unwrap().iter().any(|l| l.contains("BEGIN detach")));
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    open(dir.path()).resume("g").unwrap();
    let m = open(dir.path());
    check(&m, dir.path(), "killed while a paused guest held a disk being detached");
    m.force_stop("g").unwrap();
}

fn guest_disks(m: &Manager) -> usize {
    let mut console = m.console("g").unwrap();
    let t = Duration::from_secs(30);
    console.write_all(b"ls /sys/block | grep -c vd; echo END-$((40+2))\n", t).unwrap();
    let out = String::from_utf8_lossy(&console.read_until(r"(?m)^END-42\r?$", t).unwrap()).into_owned();
    out.lines().map(str::trim).filter_map(|l| l.parse::<usize>().ok()).next_back().unwrap_or_else(|| panic!("{out:?}"))
}

fn snapshot_tags(path: &str) -> BTreeSet<String> {
    let out = Command::new("qemu-img").args(["snapshot", "-U", "-l", path]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().skip(2).filter_map(|l| l.split_whitespace().nth(1).map(str::to_string)).collect()
}

fn check(m: &Manager, dir: &Path, context: &str) {
    let report = m.reconcile().unwrap();
    assert_eq!(report.drifts, Vec::new(), "{context}: a second reconcile has nothing to repair");
    let disks = m.disks(&DiskFilter::default()).unwrap();
    for d in &disks {
        assert!(matches!(d.state, DiskState::Available | DiskState::Attached), "{context}: {d:?}");
        assert!(Path::new(&d.path).is_file(), "{context}: file of {d:?}");
    }
    // No file without a disk, no disk without a file.
    let mut files: Vec<String> =
        std::fs::read_dir(dir.join("disks")).unwrap().map(|e| e.unwrap().path().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut paths: Vec<String> = disks.iter().map(|d| d.path.clone()).collect();
    paths.sort();
    assert_eq!(files, paths, "{context}");
    // A clone VM is whole or absent.
    if let Ok(k) = m.vm("k") {
        let kd = m.disks(&DiskFilter { vm: Some("k".into()), ..Default::default() }).unwrap();
        assert_eq!(kd.len(), 1, "{context}: {k:?} {kd:?}");
    }
    // Snapshot records and the tags on the disk agree.
    let recorded: BTreeSet<String> = m.snapshots("c").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(snapshot_tags(&m.disk("cdata").unwrap().path), recorded, "{context}");
    // The guest sees exactly the disks the store says are attached. A
    // guest may be part-way through releasing one that a detach asked for
    // (it has dropped the disk, QEMU not yet the device): give it a moment,
    // reconciling as an embedder would.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attached = m.disks(&DiskFilter { vm: Some("g".into()), ..Default::default() }).unwrap().len();
        let seen = guest_disks(m);
        if seen == attached {
            break;
        }
        assert!(Instant::now() < deadline, "{context}: the guest sees {seen} disks, the store says {attached}");
        std::thread::sleep(Duration::from_millis(200));
        m.reconcile().unwrap();
    }
}

#[test]
fn kills_during_clone_hot_plug_and_snapshot_leave_store_files_and_guest_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    if setup(dir.path()).is_none() {
        return;
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = seed | 1;
    let mut interrupted: std::collections::BTreeMap<String, u32> = Default::default();
    for round in 0..24 {
        let (mut child, lines) = embedder(dir.path(), &[(CHILD_FIRST, (round % 6).to_string())]);
        wait_for("the embedder to open", || lines.lock().unwrap().iter().any(|l| l.contains("OPENED")));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Most operations take tens of milliseconds: kill early more often.
        let ms = if rng.is_multiple_of(2) { rng % 150 } else { rng % 1500 };
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let last = lines.lock().unwrap().iter().rev().find(|l| l.contains("BEGIN")).cloned().unwrap_or_default();
        let op = last.split("BEGIN ").nth(1).unwrap_or("opening").to_string();
        *interrupted.entry(op).or_default() += 1;
        let m = open(dir.path());
        check(&m, dir.path(), &format!("seed {seed}, round {round}, killed during: {last}"));
    }
    eprintln!("seed {seed}: kills by interrupted operation: {interrupted:?}");
    let m = open(dir.path());
    m.force_stop("g").unwrap();
}
