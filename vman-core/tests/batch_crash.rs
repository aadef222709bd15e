//! Kills of the embedding process in the middle of batch operations: while
//! qemu-img makes the k-th boot disk, while the k-th VM's QEMU launches,
//! and at random instants of a create/delete cycle. After each kill a new
//! process opens the directory (which reconciles) and finds the batch whole
//! or gone, with nothing of it left behind: no VM, address, disk file,
//! seed, run directory, lock or QEMU.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Cleanup, boot, open};
use vman_core::{
    BatchSpec, BatchState, DiskFilter, DiskState, ErrorKind, ImageSpec, Manager, NetworkSpec, TemplateSpec, VmFilter, VmSpec, VmState,
};

const CHILD_DIR: &str = "VMAN_TEST_BATCH_CRASH_DIR";
/// `once`: create the batch, then wait to be killed; `cycle`: delete and
/// create it again and again.
const CHILD_MODE: &str = "VMAN_TEST_BATCH_CRASH_MODE";
const CHILD_QEMU: &str = "VMAN_TEST_BATCH_CRASH_QEMU";
const COUNT: usize = 3;

fn spec() -> BatchSpec {
    let vm = VmSpec::new("", "t").image("base").nic("lan").cloud_init(None).boot(boot("").unwrap());
    BatchSpec::new("worker{:02}", COUNT as u32, vm).start(true)
}

/// Not a test on its own: the embedder that is killed.
#[test]
fn batch_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let m = Manager::open(&dir, &support::options()).unwrap();
    if let Ok(qemu) = std::env::var(CHILD_QEMU) {
        // A setting of the directory: every opener uses it from here on.
        m.set_setting("qemu_binary", &qemu).unwrap();
    }
    println!("OPENED");
    let ok = |what: &str, r: vman_core::Result<()>| {
        if let Err(e) = r {
            assert!(!matches!(e.kind(), ErrorKind::Internal | ErrorKind::AlreadyExists), "{what}: {e}");
        }
    };
    if std::env::var(CHILD_MODE).as_deref() == Ok("once") {
        println!("BEGIN create");
        ok("create", m.create_batch(&spec()).map(drop));
        println!("DONE");
        std::thread::sleep(Duration::from_secs(600)); // until killed
    }
    loop {
        println!("BEGIN delete");
        match m.delete_batch("worker", true) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => ok("delete", other.map(drop)),
        }
        println!("BEGIN create");
        ok("create", m.create_batch(&spec()).map(drop));
        println!("IDLE"); // a kill now finds the batch whole
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Starts this test binary's `batch_crash_child` on `dir` with `envs`; its
/// output lines are collected as they come.
fn embedder(dir: &Path, envs: &[(&str, String)]) -> (std::process::Child, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "batch_crash_child", "--nocapture", "--test-threads=1"]).env(CHILD_DIR, dir).stdout(Stdio::piped());
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Template "t", network "lan", image "base".
fn setup(dir: &Path) -> Option<()> {
    boot("")?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let m = open(dir);
    m.create_template(&TemplateSpec::new("t", 1, 192, 1)).unwrap();
    m.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    let src = tempfile::tempdir().unwrap();
    let base = src.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("64M").status().unwrap().success());
    m.register_image(&ImageSpec::new("base", base.to_str().unwrap())).unwrap();
    Some(())
}

/// A tool wrapper that appends a line to `mark` on each call (of `sub`,
/// if given) and sleeps `pause` on the `nth`, then runs the real tool. It
/// may run as QEMU's unprivileged user, so its directory is open to all.
fn wrapper(dir: &Path, tool: &str, sub: Option<&str>, nth: usize, pause: u32) -> (PathBuf, PathBuf) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let real = String::from_utf8(Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().stdout).unwrap();
    let mark = dir.join(format!("{tool}.mark"));
    let script = dir.join(tool);
    let test = sub.map_or_else(|| "true".to_string(), |s| format!("[ \"$1\" = {s} ]"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif {test}; then\n  echo \"$1\" >> '{m}'\n  if [ \"$(wc -l < '{m}')\" -eq {nth} ]; then sleep {pause}; fi\nfi\nexec {real} \"$@\"\n",
            m = mark.display(),
            real = real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, mark)
}

fn marks(mark: &Path) -> usize {
    std::fs::read_to_string(mark).map_or(0, |s| s.lines().count())
}

fn hex_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// The batch is whole (created, every VM running with its disk) or gone,
/// and nothing of a VM that is gone remains.
fn check(m: &Manager, dir: &Path, context: &str) {
    assert_eq!(m.reconcile().unwrap().drifts, [], "{context}: a second reconcile has nothing to repair");
    let vms = m.vms(&VmFilter::default()).unwrap();
    match m.batches().unwrap().as_slice() {
        [] => assert_eq!(vms, [], "{context}: VMs without their batch"),
        [batch] => {
            assert_eq!((batch.state, batch.vms.len()), (BatchState::Created, COUNT), "{context}: {batch:?}");
            assert_eq!(vms.iter().map(|v| v.name.clone()).collect::<Vec<_>>(), batch.vms, "{context}");
            for vm in &vms {
                assert_eq!(vm.state, VmState::Running, "{context}: {vm:?}");
                assert_eq!(support::qemus_of(&vm.id), vec![vm.pid.unwrap()], "{context}: the QEMU of {}", vm.name);
            }
        }
        many => panic!("{context}: {many:?}"),
    }
    let live: Vec<&str> = vms.iter().map(|v| v.id.as_str()).collect();
    // Disks: a file for each row, a row for each file, all attached.
    let disks = m.disks(&DiskFilter::default()).unwrap();
    assert!(disks.iter().all(|d| d.state == DiskState::Attached), "{context}: {disks:?}");
    let mut files: Vec<String> =
        hex_entries(&dir.join("disks")).into_iter().map(|f| dir.join("disks").join(f).to_string_lossy().into_owned()).collect();
    files.sort();
    let mut paths: Vec<String> = disks.iter().map(|d| d.path.clone()).collect();
    paths.sort();
    assert_eq!(files, paths, "{context}");
    // Seeds, run directories and QEMUs of live VMs only.
    for seed in hex_entries(&dir.join("seeds")) {
        assert!(live.iter().any(|id| seed == format!("{id}.img")), "{context}: seed {seed} of a VM that is gone");
    }
    for run in hex_entries(&dir.join("run")).into_iter().filter(|d| d.len() == 16) {
        assert!(live.iter().any(|id| id.ends_with(&run[4..])), "{context}: run directory {run} of a VM that is gone");
    }
    for pid in support::processes_mentioning(&format!("{}/run/", dir.display())) {
        assert!(vms.iter().any(|vm| vm.pid == Some(pid)), "{context}: process {pid} belongs to no running VM");
    }
    let held: Vec<String> = m.allocations("lan").unwrap().into_iter().map(|a| a.vm_id).collect();
    assert_eq!(held, live, "{context}: addresses");
    // Locks: of live VMs. (A kill between taking a new VM's lock and
    // recording it leaves the lock file of an id that never was a VM:
    // create_vm's window too, and harmless; a deleted VM's lock must go.)
    for lock in hex_entries(&dir.join("locks")).into_iter().filter(|l| !l.starts_with("net-")) {
        let id = lock.trim_end_matches(".qemu");
        if !live.contains(&id) {
            assert_eq!(m.vm_history(id, 1).unwrap_err().kind(), ErrorKind::NotFound, "{context}: lock {lock} of a deleted VM");
        }
    }
}

#[test]
fn kills_at_chosen_points_of_a_batch_leave_it_whole_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    if setup(dir.path()).is_none() {
        return;
    }
    // (tool, which call): killed while it runs.
    for (tool, nth) in [("qemu-img", 1), ("qemu-img", COUNT), ("qemu", 1), ("qemu", COUNT)] {
        let tools = tempfile::tempdir().unwrap();
        let context = format!("killed during {tool} call {nth} of {COUNT}");
        let (mut child, lines) = if tool == "qemu-img" {
            let (script, mark) = wrapper(tools.path(), "qemu-img", Some("create"), nth, 30);
            let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap());
            assert!(script.starts_with(tools.path()));
            let started = embedder(dir.path(), &[(CHILD_MODE, "once".into()), ("PATH", path)]);
            wait_for(&context, || marks(&mark) >= nth);
            started
        } else {
            let (script, mark) = wrapper(tools.path(), "qemu-system-x86_64", None, nth, 2);
            let started = embedder(dir.path(), &[(CHILD_MODE, "once".into()), (CHILD_QEMU, script.to_string_lossy().into_owned())]);
            wait_for(&context, || marks(&mark) >= nth);
            started
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!lines.lock().unwrap().iter().any(|l| l == "DONE"), "{context}: the batch finished before the kill");
        let m = open(dir.path());
        check(&m, dir.path(), &context);
        assert_eq!(m.batches().unwrap(), [], "{context}: a batch whose creator died is rolled back");
        let history: Vec<String> =
            m.recent_events(50).unwrap().into_iter().filter(|e| e.object_kind.as_str() == "batch").map(|e| e.action).collect();
        assert!(history.ends_with(&["creating".into(), "rolling_back".into(), "deleted".into()]), "{context}: {history:?}");
    }
}

#[test]
fn kills_at_random_instants_of_create_and_delete_leave_the_batch_whole_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    if setup(dir.path()).is_none() {
        return;
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = seed | 1;
    let mut interrupted: std::collections::BTreeMap<String, u32> = Default::default();
    let mut whole = 0;
    for round in 0..16 {
        let (mut child, lines) = embedder(dir.path(), &[(CHILD_MODE, "cycle".into())]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // A create (about a second here) or a delete (a tenth of that) of
        // a whole batch, at a random instant inside it.
        let (op, within) = if rng.is_multiple_of(3) { ("delete", 150) } else { ("create", 2500) };
        let begun = |l: &String| l == &format!("BEGIN {op}");
        wait_for(&format!("a {op} to begin"), || lines.lock().unwrap().iter().filter(|l| begun(l)).count() >= 2);
        std::thread::sleep(Duration::from_millis((rng >> 8) % within));
        child.kill().unwrap();
        child.wait().unwrap();
        let last = lines.lock().unwrap().iter().rev().find(|l| l.contains("BEGIN") || *l == "IDLE").cloned().unwrap_or_default();
        *interrupted.entry(last.clone()).or_default() += 1;
        let m = open(dir.path());
        check(&m, dir.path(), &format!("seed {seed}, round {round}, killed during: {last}"));
        whole += m.batches().unwrap().len();
    }
    eprintln!("seed {seed}: kills by interrupted operation: {interrupted:?}; batches found whole: {whole}");
    let _ = open(dir.path()).delete_batch("worker", true);
}

#[test]
fn a_batch_being_made_by_a_live_process_is_never_rolled_back_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    if setup(dir.path()).is_none() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    // The creator pauses 3 s in the second VM's launch, the first running.
    let (script, mark) = wrapper(tools.path(), "qemu-system-x86_64", None, 2, 3);
    let (mut child, lines) = embedder(dir.path(), &[(CHILD_MODE, "once".into()), (CHILD_QEMU, script.to_string_lossy().into_owned())]);
    wait_for("the second launch", || marks(&mark) >= 2);
    // Another process opens the directory meanwhile (and so reconciles).
    let m = open(dir.path());
    let report = m.reconcile().unwrap();
    assert!(!report.drifts.iter().any(|d| d.found.contains("batch")), "{report:?}");
    let batch = m.batch("worker").unwrap();
    assert_eq!((batch.state, batch.vms.len()), (BatchState::Creating, COUNT));
    wait_for("the creator to finish", || lines.lock().unwrap().iter().any(|l| l == "DONE"));
    child.kill().unwrap();
    child.wait().unwrap();
    check(&m, dir.path(), "after a creation another process watched");
    assert_eq!(m.batch("worker").unwrap().state, BatchState::Created);
    assert_eq!(m.delete_batch("worker", true).unwrap().len(), COUNT);
}
