//! VMs outlive the program that started them, and a crash at any step is
//! repaired by the next manager that opens the state directory.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::process::Command;
use std::time::Duration;

use support::{READY, alive, boot, open};
use vman_core::{NetworkSpec, TemplateSpec, VmSpec, VmState};

const CHILD_DIR: &str = "VMAN_TEST_SURVIVAL_DIR";

/// Not a test on its own: the embedding process that starts two VMs and is
/// then killed with SIGKILL by `vms_survive_a_sigkilled_embedder_and_are_adopted`.
#[test]
fn survival_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let vman = open(std::path::Path::new(&dir));
    for name in ["a1", "a2"] {
        let vm = vman.start(name).unwrap();
        println!("STARTED {name} {}", vm.pid.unwrap());
    }
    println!("EMBEDDER-READY");
    std::thread::sleep(Duration::from_secs(600)); // until killed
}

#[test]
fn vms_survive_a_sigkilled_embedder_and_are_adopted() {
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    {
        let vman = open(dir.path());
        vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
        vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
        for name in ["a1", "a2"] {
            vman.create_vm(&VmSpec::new(name, "tiny").nic("lan").boot(spec_boot.clone())).unwrap();
        }
    }
    let pids = support::run_and_kill_embedder("survival_child", CHILD_DIR, dir.path());
    assert!(pids.iter().all(|p| alive(*p)), "the VMs outlive the embedder");

    // A new process (here: a new manager) adopts them...
    let vman = open(dir.path());
    for (name, pid) in ["a1", "a2"].iter().zip(&pids) {
        let vm = vman.vm(name).unwrap();
        assert_eq!((vm.state, vm.pid), (VmState::Running, Some(*pid)));
        vman.wait_for_console(name, READY, Duration::from_secs(90)).unwrap();
    }
    // ...and manages them as its own: pause, resume, console, graceful stop.
    assert_eq!(vman.pause("a1").unwrap().state, VmState::Paused);
    assert_eq!(vman.resume("a1").unwrap().state, VmState::Running);
    for (name, pid) in ["a1", "a2"].iter().zip(&pids) {
        assert_eq!(vman.stop(name, Duration::from_secs(30)).unwrap().state, VmState::Stopped);
        assert!(!alive(*pid));
        let actions: Vec<String> = vman.vm_history(name, 100).unwrap().into_iter().map(|e| e.action).collect();
        assert!(!actions.contains(&"forced".to_string()), "{name} stopped gracefully: {actions:?}");
    }
}

#[test]
fn a_vm_stuck_in_starting_is_resolved_by_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("stuck", "tiny").nic("lan")).unwrap();
    // The crash: a process recorded `starting` and died before QEMU ran.
    let db = rusqlite::Connection::open(dir.path().join("vman.db")).unwrap();
    db.execute("UPDATE vms SET state = 'starting' WHERE name = 'stuck'", []).unwrap();
    drop(db);
    assert_eq!(vman.vm("stuck").unwrap().state, VmState::Starting);

    let report = vman.reconcile().unwrap();
    let drift = report.drifts.iter().find(|d| d.vm == "stuck").expect("the drift is reported");
    assert!(drift.found.contains("starting"), "{drift:?}");
    let vm = vman.vm("stuck").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert!(vm.last_error.is_some());
    // Once resolved it is an ordinary failed VM: it can be deleted.
    vman.delete_vm("stuck", false).unwrap();
    assert!(vman.reconcile().unwrap().drifts.is_empty(), "nothing left to repair");
}

#[test]
fn a_reused_pid_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    let vm = vman.create_vm(&VmSpec::new("ghost", "tiny")).unwrap();
    // The store says running with a pid that now belongs to another program.
    let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("vman.db")).unwrap();
    db.execute("UPDATE vms SET state = 'running', pid = ?1 WHERE id = ?2", rusqlite::params![stranger.id(), vm.id]).unwrap();
    drop(db);
    // Opening reconciles: the stranger is not this VM's QEMU.
    let reopened = open(dir.path());
    assert!(reopened.reconcile().unwrap().adopted.is_empty());
    assert_eq!(vman.vm("ghost").unwrap().state, VmState::Stopped);
    let last = reopened.vm_history("ghost", 1).unwrap().pop().unwrap();
    assert_eq!((last.details["from"].as_str(), last.details["to"].as_str()), (Some("running"), Some("stopped")));
    assert!(alive(stranger.id()), "the stranger was not signalled");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}
