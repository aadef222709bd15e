//! Cancelling long waits with a `Cancel` token, on real guests: what each
//! cancelled operation leaves is consistent, recorded, and reopenable.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Cleanup, READY, alive, boot, open, processes_mentioning};
use vman_core::{Cancel, DiskSpec, DiskState, ErrorKind, Manager, OpenOptions, TemplateSpec, VmSpec, VmState};

const BOOT_WAIT: Duration = Duration::from_secs(90);
/// Longer than any test may wait: a wait that ends must have been cancelled.
const LONG: Duration = Duration::from_secs(600);

fn state_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // QEMU runs as an unprivileged user: it must be able to enter the tree.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// Cancels `cancel` once `ready` says so (checked every 20 ms), from
/// another thread, as a UI thread or a signal handler would.
fn cancel_when(cancel: &Cancel, ready: impl Fn() -> bool + Send + 'static) -> std::thread::JoinHandle<()> {
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        while !ready() {
            std::thread::sleep(Duration::from_millis(20));
        }
        cancel.cancel();
    })
}

fn cancel_after(cancel: &Cancel, after: Duration) -> std::thread::JoinHandle<()> {
    let start = std::time::Instant::now();
    cancel_when(cancel, move || start.elapsed() >= after)
}

fn actions(m: &Manager, vm: &str) -> Vec<String> {
    m.vm_history(vm, 1000).unwrap().into_iter().map(|e| e.action).collect()
}

#[test]
fn an_already_cancelled_token_changes_nothing() {
    let dir = state_dir();
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    m.create_vm(&VmSpec::new("v", "t")).unwrap();
    let cancel = Cancel::new();
    cancel.cancel();
    let before = m.recent_events(1000).unwrap();
    for (what, err) in [
        ("start", m.start_cancellable("v", &cancel).unwrap_err()),
        ("stop", m.stop_cancellable("v", LONG, &cancel).unwrap_err()),
        ("restart", m.restart_cancellable("v", LONG, &cancel).unwrap_err()),
        ("detach", m.detach_disk_cancellable("v", "d", LONG, &cancel).unwrap_err()),
        ("snapshot", m.create_snapshot_cancellable("v", "s", &cancel).unwrap_err()),
        ("revert", m.revert_snapshot_cancellable("v", "s", &cancel).unwrap_err()),
        ("delete snapshot", m.delete_snapshot_cancellable("v", "s", &cancel).unwrap_err()),
        ("console", m.wait_for_console_cancellable("v", "x", LONG, &cancel).unwrap_err()),
    ] {
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{what}: {err}");
    }
    assert_eq!(m.recent_events(1000).unwrap(), before, "nothing recorded");
    assert_eq!(m.vm("v").unwrap().state, VmState::Created);
}

#[test]
fn an_event_wait_ends_when_cancelled_and_the_stream_goes_on() {
    let dir = state_dir();
    let m = open(dir.path());
    let stream = m.subscribe().unwrap();
    let cancel = Cancel::new();
    let canceller = cancel_after(&cancel, Duration::from_millis(200));
    // No timeout at all: only the cancel can end this wait.
    assert_eq!(stream.next_cancellable(Duration::MAX, &cancel).unwrap_err().kind(), ErrorKind::Cancelled);
    canceller.join().unwrap();
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    let event = stream.next(Duration::from_secs(5)).unwrap().expect("the stream lost nothing");
    assert_eq!((event.object_name.as_str(), event.action.as_str()), ("t", "created"));
    // A child token is cancelled with its parent, not the other way round.
    let parent = Cancel::new();
    let child = parent.child();
    child.cancel();
    assert!(!parent.is_cancelled());
    let second = parent.child();
    parent.cancel();
    assert_eq!(stream.next_cancellable(Duration::MAX, &second).unwrap_err().kind(), ErrorKind::Cancelled);
}

/// One ACPI-ignoring guest through every cancellable wait of a running
/// VM: console, detach, the VM lock, a graceful stop; then reopened.
#[test]
fn cancelled_waits_on_a_running_guest_leave_it_consistent() {
    let Some(spec_boot) = boot("vman.acpi=ignore") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = std::sync::Arc::new(open(dir.path()));
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    m.create_vm(&VmSpec::new("g", "t").boot(spec_boot)).unwrap();
    m.create_disk(&DiskSpec::new("data", 16 << 20)).unwrap();
    m.attach_disk("g", "data").unwrap();
    let pid = m.start("g").unwrap().pid.unwrap();
    m.wait_for_console("g", READY, BOOT_WAIT).unwrap();

    // Console: a line that never comes.
    let cancel = Cancel::new();
    let c = cancel_after(&cancel, Duration::from_millis(300));
    let err = m.wait_for_console_cancellable("g", "^NEVER-PRINTED$", LONG, &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    c.join().unwrap();

    // Detach: a paused guest cannot release the disk; the cancel leaves what
    // a timeout leaves, the disk attached and the request standing.
    m.pause("g").unwrap();
    let cancel = Cancel::new();
    let c = cancel_after(&cancel, Duration::from_millis(500));
    let err = m.detach_disk_cancellable("g", "data", LONG, &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    c.join().unwrap();
    assert_eq!(m.disk("data").unwrap().state, DiskState::Attached);
    m.resume("g").unwrap();

    // The VM lock: a graceful stop that waits (the guest ignores the power
    // button) holds it; another stop waiting for the lock is cancelled.
    let first = Cancel::new();
    let holder = {
        let (m, first) = (m.clone(), first.clone());
        std::thread::spawn(move || m.stop_cancellable("g", LONG, &first))
    };
    while m.vm("g").unwrap().state != VmState::Stopping {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Cancel::new();
    let c = cancel_after(&second, Duration::from_millis(300));
    let err = m.stop_cancellable("g", LONG, &second).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(err.to_string().contains("another operation"), "{err}");
    c.join().unwrap();

    // The graceful stop itself: nothing was forced, so the VM is running,
    // its QEMU the same, with the cancel in its history.
    first.cancel();
    let err = holder.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(err.to_string().contains("left running"), "{err}");
    let vm = m.vm("g").unwrap();
    assert_eq!((vm.state, vm.pid), (VmState::Running, Some(pid)));
    assert!(alive(pid));
    let history = m.vm_history("g", 1000).unwrap();
    let cancelled = history.iter().rev().find(|e| e.action == "cancelled").expect("a cancelled event");
    assert_eq!(cancelled.details["operation"], "stop");
    let back = history.iter().rev().find(|e| e.action == "state_changed").unwrap();
    assert_eq!((back.details["from"].as_str(), back.details["to"].as_str()), (Some("stopping"), Some("running")));
    assert!(!actions(&m, "g").contains(&"forced".to_string()));

    // Another manager finds it as recorded; the guest may still act on the
    // power button it got (this one ignores it): a later stop forces it.
    let other = open(dir.path());
    let report = other.reconcile().unwrap();
    assert!(report.drifts.is_empty(), "{report:?}");
    // Resumed, the guest let go of the disk as asked: reconcile sees it.
    let mut released = false;
    for _ in 0..60 {
        other.reconcile().unwrap();
        if other.disk("data").unwrap().state == DiskState::Available {
            released = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(released, "the detach request stood after the cancel");
    let vm = other.stop("g", Duration::from_secs(1)).unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(!alive(pid));
}

/// A QEMU wrapper that waits long before it `exec`s QEMU, and writes
/// `wrapper` to its marker first. It runs as QEMU's unprivileged user, so
/// it lives in a directory that user may write to.
fn slow_qemu() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let marker = dir.path().join("wrapper.log");
    let script = dir.path().join("slow-qemu");
    std::fs::write(&script, format!("#!/bin/sh\necho wrapper >> {m}\nsleep 600\nexec qemu-system-x86_64 \"$@\"\n", m = marker.display()))
        .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, script, marker)
}

#[test]
fn a_start_cancelled_before_qemu_answers_ends_it_and_records_stopped() {
    let Some(spec_boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let (_wrapper_dir, wrapper, marker) = slow_qemu();
    let slow = Manager::open(dir.path(), &OpenOptions { qemu_binary: Some(wrapper), ..support::options() }).unwrap();
    slow.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    slow.create_vm(&VmSpec::new("g", "t").boot(spec_boot)).unwrap();

    let cancel = Cancel::new();
    let c = cancel_when(&cancel, move || std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("wrapper")));
    let err = slow.start_cancellable("g", &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    c.join().unwrap();
    let vm = slow.vm("g").unwrap();
    assert_eq!((vm.state, vm.pid), (VmState::Stopped, None));
    let actions = actions(&slow, "g");
    assert_eq!(actions.iter().filter(|a| *a == "cancelled").count(), 1, "{actions:?}");
    let run = format!("{}/run/", dir.path().display());
    assert!(processes_mentioning(&run).is_empty(), "the launch was ended");

    // With the real QEMU again (a setting of the directory), the reopened
    // VM starts as any stopped VM.
    drop(slow);
    let m = open(dir.path());
    m.set_setting("qemu_binary", "qemu-system-x86_64").unwrap();
    assert!(m.reconcile().unwrap().drifts.is_empty());
    assert_eq!(m.start("g").unwrap().state, VmState::Running);
    m.wait_for_console("g", READY, BOOT_WAIT).unwrap();
    m.force_stop("g").unwrap();
}
