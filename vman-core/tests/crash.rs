//! Nothing is lost or leaked when the embedding process is killed at any
//! instant, two QEMUs of one VM never run, and operations act only on the
//! VM whose lock they hold.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{alive, boot, qemus_of};
use vman_core::{ErrorKind, Manager, NetworkMode, NetworkSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec, VmState};

const CHILD_DIR: &str = "VMAN_TEST_CRASH_DIR";
const CHILD_MODE: &str = "VMAN_TEST_CRASH_MODE";
const CHILD_QEMU: &str = "VMAN_TEST_CRASH_QEMU";
const CHILD_SEED: &str = "VMAN_TEST_CRASH_SEED";

/// Isolated NICs: these tests are about processes and records, and must not
/// touch the host's interfaces.
fn options() -> OpenOptions {
    OpenOptions { network: Some(NetworkMode::Isolated), ..support::options() }
}

fn open(dir: &Path) -> Manager {
    Manager::open(dir, &options()).expect("open state dir")
}

/// A small, seedable generator: the failing seed is printed, so a failure
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Not a test on its own: the embedding process the tests below kill.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let dir = PathBuf::from(dir);
    let qemu = std::env::var_os(CHILD_QEMU).map(PathBuf::from);
    let vman = Manager::open(&dir, &options()).unwrap();
    // The QEMU binary is the directory's setting, which the parent made.
    if let Some(qemu) = &qemu {
        vman.set_setting("qemu_binary", qemu.to_str().unwrap()).unwrap();
    }
    match std::env::var(CHILD_MODE).as_deref() {
        Ok("start") => {
            println!("BEGIN start a");
            let vm = vman.start("a").unwrap();
            println!("END start a {}", vm.pid.unwrap());
            std::thread::sleep(Duration::from_secs(600)); // until killed
        }
        Ok("random") => {
            let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
            let mut rng = Rng(seed | 1);
            let spec = |name: &str| VmSpec::new(name, "tiny").nic("lan").boot(boot("").unwrap());
            loop {
                for name in ["r0", "r1"] {
                    let vm = match vman.vm(name) {
                        Ok(vm) => vm,
                        Err(_) => {
                            println!("BEGIN create {name}");
                            let _ = vman.create_vm(&spec(name));
                            println!("END create {name}");
                            continue;
                        }
                    };
                    let op = match (vm.state, rng.below(3)) {
                        (VmState::Created | VmState::Stopped | VmState::Error, _) => "start",
                        (VmState::Running | VmState::Paused, 0) => "force_stop",
                        (VmState::Running | VmState::Paused, 1) => "stop",
                        (VmState::Running | VmState::Paused, _) => "delete",
                        _ => continue,
                    };
                    println!("BEGIN {op} {name}");
                    let result = match op {
                        "start" => vman.start(name).map(drop),
                        "force_stop" => vman.force_stop(name).map(drop),
                        "stop" => vman.stop(name, Duration::from_millis(300)).map(drop),
                        _ => vman.delete_vm(name, true),
                    };
                    if let Err(e) = &result {
                        assert_ne!(e.kind(), ErrorKind::Internal, "{op} {name}: {e}");
                    }
                    println!("END {op} {name}");
                }
            }
        }
        other => panic!("unknown mode {other:?}"),
    }
}

/// Starts this test binary's `crash_child` as an embedding process.
fn embedder(dir: &Path, mode: &str, qemu: Option<&Path>, seed: u64) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped());
    if let Some(qemu) = qemu {
        command.env(CHILD_QEMU, qemu);
    }
    let mut child = command.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, lines)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn setup(dir: &Path, vms: &[&str]) {
    let vman = open(dir);
    vman.create_template(&TemplateSpec::new("tiny", 1, 128, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    for name in vms {
        vman.create_vm(&VmSpec::new(*name, "tiny").nic("lan").boot(boot("").unwrap())).unwrap();
    }
}

/// The state directory agrees with the processes: no VM mid-operation, one
/// QEMU per running VM and none for any other, every lineage lock held
/// exactly while its VM runs, addresses held exactly by live VMs' NICs, no
/// run files or locks of VMs that are gone or down.
fn check_consistent(vman: &Manager, dir: &Path, context: &str) {
    let vms = vman.vms(&VmFilter::default()).unwrap();
    let mut nics = 0;
    for vm in &vms {
        assert!(!vm.state.is_transitional(), "{context}: {} left {}", vm.name, vm.state);
        let qemus = qemus_of(&vm.id);
        let lineage_held = std::fs::File::open(dir.join("locks").join(format!("{}.qemu", vm.id)))
            .map(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err())
            .unwrap_or(false);
        if matches!(vm.state, VmState::Running | VmState::Paused) {
            assert_eq!(qemus, vec![vm.pid.unwrap()], "{context}: {} is {} with pid {:?}", vm.name, vm.state, vm.pid);
            assert!(lineage_held, "{context}: {} runs without its lineage lock", vm.name);
        } else {
            assert_eq!(qemus, Vec::<u32>::new(), "{context}: {} is {} yet QEMU runs", vm.name, vm.state);
            assert!(!lineage_held, "{context}: {} is {} yet its lineage lock is held", vm.name, vm.state);
            assert_eq!(vm.pid, None, "{context}: {}", vm.name);
            let run = dir.join("run");
            for entry in std::fs::read_dir(&run).unwrap().flatten() {
                let tail: String = vm.id.chars().filter(char::is_ascii_hexdigit).collect();
                if tail.ends_with(&*entry.file_name().to_string_lossy()) {
                    for file in ["qemu.pid", "qmp.sock", "serial.sock"] {
                        assert!(!entry.path().join(file).exists(), "{context}: {} is {} yet {file} is left", vm.name, vm.state);
                    }
                }
            }
        }
        nics += vm.nics.len();
    }
    let allocations = vman.allocations("lan").unwrap();
    assert_eq!(allocations.len(), nics, "{context}: addresses held by no live VM: {allocations:?}");
    // Run directories and lock files exist only for live VMs.
    let live_tails: Vec<String> = vms.iter().map(|vm| vm.id.chars().filter(char::is_ascii_hexdigit).collect()).collect();
    for entry in std::fs::read_dir(dir.join("run")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            assert!(live_tails.iter().any(|t| t.ends_with(&name)), "{context}: run directory {name} of a VM that is gone");
        }
    }
    for entry in std::fs::read_dir(dir.join("locks")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.trim_end_matches(".qemu");
        if id.len() == 36 {
            assert!(vms.iter().any(|vm| vm.id == id), "{context}: lock file {name} of a VM that is gone");
        }
    }
    // No QEMU of this directory runs for a VM that is not live.
    for pid in support::processes_mentioning(&format!("{}/run/", dir.display())) {
        assert!(vms.iter().any(|vm| vm.pid == Some(pid)), "{context}: process {pid} of this directory belongs to no running VM");
    }
}

/// A QEMU wrapper that is slow to `exec` the real QEMU, and says where it
/// is. It runs as QEMU's unprivileged user, so it lives in a directory that
/// user may write to.
fn slow_qemu() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let marker = dir.path().join("wrapper.log");
    let script = dir.path().join("slow-qemu");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho wrapper >> {m}\nsleep 1\necho exec >> {m}\nexec qemu-system-x86_64 \"$@\"\n", m = marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, script, marker)
}

#[test]
fn a_kill_at_any_point_of_start_leaves_exactly_one_tracked_qemu() {
    if boot("").is_none() {
        return;
    }
    for point in ["wrapper sleeping before exec", "QEMU initializing", "start returned"] {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = support::Cleanup(dir.path().to_path_buf());
        setup(dir.path(), &["a"]);
        let (_wrapper_dir, wrapper, marker) = slow_qemu();
        let (mut child, lines) = embedder(dir.path(), "start", Some(&wrapper), 0);
        let marker_says = |word: &str| std::fs::read_to_string(&marker).is_ok_and(|m| m.contains(word));
        match point {
            "wrapper sleeping before exec" => wait_until(point, Duration::from_secs(60), || marker_says("wrapper")),
            "QEMU initializing" => wait_until(point, Duration::from_secs(60), || marker_says("exec")),
            _ => wait_until(point, Duration::from_secs(60), || lines.lock().unwrap().iter().any(|l| l.starts_with("END start"))),
        }
        child.kill().unwrap();
        child.wait().unwrap();

        // The next opener finishes the start it finds in flight: it waits
        // for that QEMU and adopts it, never records it dead, never starts
        // a second one.
        let vman = open(dir.path());
        let vm = vman.vm("a").unwrap();
        assert_eq!(vm.state, VmState::Running, "{point}: {:?}", vm.last_error);
        assert_eq!(qemus_of(&vm.id), vec![vm.pid.unwrap()], "{point}");
        check_consistent(&vman, dir.path(), point);
        // Adopted once: a reconcile right after open finds nothing to do.
        assert_eq!(vman.reconcile().unwrap(), Default::default(), "{point}");
        assert_eq!(vman.start("a").unwrap_err().kind(), ErrorKind::InvalidState);
        let first = vm.pid.unwrap();
        assert_eq!(vman.force_stop("a").unwrap().state, VmState::Stopped);
        assert!(!alive(first));
        let again = vman.start("a").unwrap();
        assert_eq!(qemus_of(&again.id), vec![again.pid.unwrap()], "{point}: restarted once");
        vman.force_stop("a").unwrap();
        check_consistent(&vman, dir.path(), point);
    }
}

#[test]
fn a_qemu_left_running_for_a_stopped_vm_is_ended_before_a_new_start() {
    // A launch whose record was lost (the store says stopped): the lineage
    // lock still names it, so the next start ends it instead of running a
    // second QEMU beside it.
    if boot("").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    setup(dir.path(), &["a"]);
    let (_wrapper_dir, wrapper, marker) = slow_qemu();
    let (mut child, _) = embedder(dir.path(), "start", Some(&wrapper), 0);
    wait_until("the wrapper", Duration::from_secs(60), || std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("wrapper")));
    child.kill().unwrap();
    child.wait().unwrap();
    let stray = support::processes_mentioning(&format!("{}/run/", dir.path().display()));
    assert_eq!(stray.len(), 1, "the wrapper runs on: {stray:?}");
    // Forget the launch behind vman's back, as a lost write would.
    {
        let conn = rusqlite::Connection::open(dir.path().join("vman.db")).unwrap();
        conn.execute("UPDATE vms SET state = 'stopped', pid = 0 WHERE name = 'a'", []).unwrap();
    }
    let vman = open(dir.path());
    let vm = vman.vm("a").unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(!alive(stray[0]), "reconcile ended the launch nobody recorded");
    let started = vman.start("a").unwrap();
    assert_eq!(qemus_of(&started.id), vec![started.pid.unwrap()]);
    vman.force_stop("a").unwrap();
    check_consistent(&vman, dir.path(), "after");
}

#[test]
fn thirty_kills_at_random_instants_leave_nothing_behind() {
    if boot("").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    setup(dir.path(), &["r0", "r1"]);
    let seed = std::env::var("VMAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let mut rng = Rng(seed | 1);
    let mut interrupted: std::collections::BTreeMap<String, u32> = Default::default();
    for round in 0..30 {
        let (mut child, lines) = embedder(dir.path(), "random", None, rng.next());
        // Let it get going (opening takes a moment), then kill it anywhere.
        wait_until("the embedder's first operation", Duration::from_secs(60), || !lines.lock().unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        let last = lines.lock().unwrap().last().cloned().unwrap_or_default();
        let op = match last.split_whitespace().collect::<Vec<_>>()[..] {
            ["BEGIN", op, _] => op.to_string(),
            _ => "between operations".to_string(),
        };
        *interrupted.entry(op).or_default() += 1;
        let context = format!("seed {seed}, round {round}, killed during: {last}");
        let vman = open(dir.path());
        check_consistent(&vman, dir.path(), &context);
        assert_eq!(vman.reconcile().unwrap().drifts, Vec::new(), "{context}: a second reconcile has nothing to repair");
    }
    eprintln!("seed {seed}: kills by interrupted operation: {interrupted:?}");
    let vman = open(dir.path());
    for vm in vman.vms(&VmFilter::default()).unwrap() {
        if vm.state.has_process() {
            vman.force_stop(&vm.name).unwrap();
        }
    }
    check_consistent(&vman, dir.path(), "at the end");
}

#[test]
fn eight_threads_racing_create_and_delete_of_one_name_see_no_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let vman = Arc::new(open(dir.path()));
    vman.create_template(&TemplateSpec::new("tiny", 1, 128, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let vman = vman.clone();
            std::thread::spawn(move || {
                let mut kinds: std::collections::BTreeMap<String, u32> = Default::default();
                for _ in 0..150 {
                    let created = vman.create_vm(&VmSpec::new("x", "tiny").nic("lan")).map(drop);
                    let deleted = vman.delete_vm("x", false);
                    for result in [created, deleted] {
                        let kind = result.map_or_else(|e| e.kind().to_string(), |()| "ok".into());
                        *kinds.entry(kind).or_default() += 1;
                    }
                }
                kinds
            })
        })
        .collect();
    let mut total: std::collections::BTreeMap<String, u32> = Default::default();
    for thread in threads {
        for (kind, n) in thread.join().unwrap() {
            *total.entry(kind).or_default() += n;
        }
    }
    // A VM deleted (or re-created) under another thread's feet is NotFound
    // or AlreadyExists to it: never an internal error, never another VM.
    let allowed = ["ok", "not_found", "already_exists"];
    assert!(total.keys().all(|k| allowed.contains(&k.as_str())), "{total:?}");
    assert!(total["ok"] > 0, "{total:?}");
    let left = vman.vms(&VmFilter::default()).unwrap();
    assert!(left.len() <= 1);
    assert_eq!(vman.allocations("lan").unwrap().len(), left.iter().map(|vm| vm.nics.len()).sum::<usize>());
}
