//! The serial console on a real guest (TCG): one client per VM across
//! threads and processes, reads and writes with timeouts, `read_until`,
//! `wait_for_console` bound to the current run of QEMU, and what closing a
//! console or dropping its manager does. One VM, booted twice.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use support::{READY, boot, open};
use vman_core::{Console, ErrorKind, TemplateSpec, VmSpec, VmState};

const CHILD_DIR: &str = "VMAN_TEST_CONSOLE_DIR";
const BOOT_WAIT: Duration = Duration::from_secs(90);
const SHORT: Duration = Duration::from_secs(20);

/// Not a test on its own: another process that tries to attach to VM "g1"
/// and reports the outcome; once attached, it holds the console until it
/// is killed.
#[test]
fn console_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let vman = open(std::path::Path::new(&dir));
    match vman.console("g1") {
        Ok(_console) => {
            println!("CONSOLE attached");
            std::thread::sleep(Duration::from_secs(600)); // until killed
        }
        Err(e) => println!("CONSOLE {} {}", e.kind(), e.full_message()),
    }
}

/// Runs `console_child` on `dir` and returns it with its report line.
#[allow(clippy::zombie_processes, reason = "the caller waits for the child it gets")]
fn child_attach(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "console_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("the child ended without a report ({status})");
        }
        // The test harness prints its own words before ours on that line.
        if let Some(report) = line.trim_end().split("CONSOLE ").nth(1) {
            // Keep reading, so the child never writes into a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            return (child, report.to_string());
        }
    }
}

/// Types `command` and reads until `answer` comes back.
fn ask(console: &mut Console, command: &str, answer: &str) -> String {
    console.write_all(format!("{command}\n").as_bytes(), SHORT).unwrap();
    String::from_utf8_lossy(&console.read_until(answer, SHORT).unwrap()).into_owned()
}

fn assert_no_internal_path(e: &vman_core::Error, dir: &std::path::Path) {
    let message = e.full_message();
    assert!(!message.contains(&*dir.to_string_lossy()), "an internal path leaked: {message}");
}

#[test]
fn a_vm_without_a_running_qemu_has_no_console_and_nothing_to_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_vm(&VmSpec::new("idle", "tiny")).unwrap();
    let e = vman.wait_for_console("idle", READY, Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert!(e.to_string().contains("\"idle\""), "the message names the VM: {e}");
    assert_no_internal_path(&e, dir.path());
    let e = vman.console("idle").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_no_internal_path(&e, dir.path());
    assert_eq!(vman.wait_for_console("idle", "(", Duration::ZERO).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(vman.wait_for_console("nobody", READY, Duration::ZERO).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(vman.console_tail("idle", 100).unwrap(), b"");
}

#[test]
fn one_console_per_vm_its_reads_and_writes_and_waits_that_follow_qemu() {
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").boot(spec_boot)).unwrap();
    vman.start("g1").unwrap();
    vman.wait_for_console("g1", READY, BOOT_WAIT).unwrap();

    // --- One client at a time: same thread, another thread, another process.
    let mut first = vman.console("g1").unwrap();
    let e = vman.console("g1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InUse, "{e}");
    assert!(e.to_string().contains("\"g1\""), "{e}");
    assert_no_internal_path(&e, dir.path());
    let from_thread = std::thread::scope(|s| s.spawn(|| vman.console("g1").map(drop)).join().unwrap());
    assert_eq!(from_thread.unwrap_err().kind(), ErrorKind::InUse);
    let (mut child, report) = child_attach(dir.path());
    child.wait().unwrap();
    assert!(report.starts_with("in_use "), "another process: {report}");
    // The refused clients disturbed nothing: the first is served as before.
    assert!(ask(&mut first, "echo first-$((40+2))", "first-42").ends_with("first-42"));

    // --- Reads: timeouts, bad input, read_until leaves what follows the match.
    let mut buf = [0u8; 256];
    // What followed the answer (the shell's prompt) is still there to read.
    while first.read(&mut buf, Duration::from_millis(500)).is_ok() {}
    assert_eq!(first.read(&mut buf, Duration::from_millis(300)).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(first.read(&mut buf, Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(first.read(&mut [], SHORT).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(first.read_until("(", SHORT).unwrap_err().kind(), ErrorKind::InvalidArgument);
    first.write_all(b"echo one-$((1)); echo two-$((2))\n", SHORT).unwrap();
    let upto = first.read_until("one-1", SHORT).unwrap();
    assert!(upto.ends_with(b"one-1"), "{}", String::from_utf8_lossy(&upto));
    let rest = first.read_until("two-2", SHORT).unwrap();
    assert!(!String::from_utf8_lossy(&rest).contains("one-1"), "{}", String::from_utf8_lossy(&rest));
    // A read_until that times out keeps what it read for the next read.
    first.write_all(b"echo kept-$((7))\n", SHORT).unwrap();
    assert_eq!(first.read_until("never-there", Duration::from_secs(3)).unwrap_err().kind(), ErrorKind::Timeout);
    assert!(first.read_until("kept-7", Duration::ZERO).unwrap().ends_with(b"kept-7"));

    // --- Closed: every later use says so.
    first.close();
    assert!(first.is_closed());
    assert_eq!(first.read(&mut buf, SHORT).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(first.write_all(b"x", SHORT).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(first.read_until("x", SHORT).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(first.fd().unwrap_err().kind(), ErrorKind::Closed);
    first.close();

    // --- Two threads racing for a free console: exactly one gets it.
    let barrier = Barrier::new(2);
    let race = |_| {
        barrier.wait();
        vman.console("g1")
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|i| s.spawn(move || race(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let kinds: Vec<_> = results.iter().map(|r| r.as_ref().err().map(|e| e.kind())).collect();
    assert!(kinds.contains(&None) && kinds.contains(&Some(ErrorKind::InUse)), "{kinds:?}");
    drop(results);

    // --- A process that holds the console keeps others out until it dies.
    let (mut child, report) = child_attach(dir.path());
    assert_eq!(report, "attached");
    assert_eq!(vman.console("g1").unwrap_err().kind(), ErrorKind::InUse);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut next = vman.console("g1").expect("the lock died with its process");
    assert!(ask(&mut next, "echo next-$((6*7))", "next-42").ends_with("next-42"));
    drop(next);

    // --- A console outlives its manager's handle but answers Closed.
    let other = open(dir.path());
    let mut orphan = other.console("g1").unwrap();
    drop(other);
    let e = orphan.read(&mut buf, Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert_eq!(orphan.write_all(b"x", SHORT).unwrap_err().kind(), ErrorKind::Closed);
    assert!(orphan.fd().is_ok(), "the descriptor stays valid until the console is closed");
    drop(orphan);

    // --- A stopped VM: the last run's output does not count.
    let mut console = vman.console("g1").unwrap();
    assert!(ask(&mut console, "echo run-one-$((1))", "run-one-1").ends_with("run-one-1"));
    vman.force_stop("g1").unwrap();
    // What is left (the prompt) comes first, then the end.
    while console.read(&mut buf, SHORT).unwrap() > 0 {}
    drop(console);
    let e = vman.wait_for_console("g1", READY, SHORT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_no_internal_path(&e, dir.path());
    assert!(String::from_utf8_lossy(&vman.console_tail("g1", 1 << 16).unwrap()).contains("run-one-1"), "the tail keeps it");

    // --- The next run: only its own output matches.
    let pid = vman.start("g1").unwrap().pid.unwrap();
    vman.wait_for_console("g1", READY, BOOT_WAIT).unwrap();
    assert_eq!(vman.wait_for_console("g1", "^run-one-1", Duration::from_secs(2)).unwrap_err().kind(), ErrorKind::Timeout);

    // --- QEMU dies during a wait: the wait ends then, not at its timeout.
    let mut console = vman.console("g1").unwrap();
    let waited = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            // SAFETY: kill(2) on the pid vman just reported for this VM.
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        });
        let started = Instant::now();
        let e = vman.wait_for_console("g1", "^never-printed$", Duration::from_secs(120)).unwrap_err();
        (e, started.elapsed())
    });
    assert_eq!(waited.0.kind(), ErrorKind::InvalidState, "{}", waited.0);
    assert!(waited.1 < Duration::from_secs(60), "the wait ran on for {:?} after QEMU died", waited.1);
    assert_eq!(vman.vm("g1").unwrap().state, VmState::Error);
    assert_eq!(vman.wait_for_console("g1", READY, SHORT).unwrap_err().kind(), ErrorKind::InvalidState);
    // The attached console sees the end, and writing to it is refused.
    while console.read(&mut buf, SHORT).unwrap() > 0 {}
    let e = console.write_all(b"echo hello\n", SHORT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
}
