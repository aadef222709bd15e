//! The VM lifecycle on real QEMU with a real guest (TCG): start, console,
//! pause, resume, graceful stop, forced stop of a guest that ignores the
//! power button, an outside kill -9, failed starts, delete.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use support::{READY, alive, boot, open};
use vman_core::{ErrorKind, NetworkSpec, TemplateSpec, VmSpec, VmState};

const BOOT_WAIT: Duration = Duration::from_secs(90);

#[test]
fn a_guest_lives_through_its_whole_lifecycle() {
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").nic("lan").boot(spec_boot)).unwrap();
    let stream = vman.subscribe().unwrap();

    let vm = vman.start("g1").unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(vm.accel.as_deref(), Some("tcg"));
    let pid = vm.pid.expect("running VM has a pid");
    assert!(alive(pid));
    let line = vman.wait_for_console("g1", READY, BOOT_WAIT).unwrap();
    assert_eq!(line, "VMAN-GUEST-READY");
    // The live stream saw starting and running, in order.
    let seen: Vec<String> = std::iter::from_fn(|| stream.next(Duration::from_millis(100)).unwrap())
        .map(|e| e.details["to"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen, ["starting", "running"]);

    assert_eq!(vman.start("g1").unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(vman.delete_vm("g1", false).unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(vman.resume("g1").unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(vman.pause("g1").unwrap().state, VmState::Paused);
    assert_eq!(vman.pause("g1").unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(vman.resume("g1").unwrap().state, VmState::Running);

    // Graceful stop: the guest's acpid powers it off well within the timeout.
    let t = Instant::now();
    let vm = vman.stop("g1", Duration::from_secs(30)).unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(t.elapsed() < Duration::from_secs(25), "graceful stop took {:?}", t.elapsed());
    assert_eq!(vm.pid, None);
    assert!(!alive(pid));
    let tail = String::from_utf8_lossy(&vman.console_tail("g1", 4096).unwrap()).into_owned();
    assert!(tail.contains("VMAN-POWEROFF"), "the guest powered itself off: {tail}");
    let actions: Vec<String> = vman.vm_history("g1", 100).unwrap().into_iter().map(|e| e.action).collect();
    assert!(!actions.contains(&"forced".to_string()), "{actions:?}");

    // Started again, then killed from outside: the watcher records it.
    let pid = vman.start("g1").unwrap().pid.unwrap();
    vman.wait_for_console("g1", READY, BOOT_WAIT).unwrap();
    let stream = vman.subscribe().unwrap();
    let killed_at = Instant::now();
    // SAFETY: kill(2) with a pid we just proved is this VM's QEMU.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let event = stream.next(Duration::from_secs(5)).unwrap().expect("the watcher reports the death");
    let latency = killed_at.elapsed();
    assert_eq!(event.details["to"], "error");
    assert!(latency < Duration::from_millis(500), "death seen after {latency:?}");
    let vm = vman.vm("g1").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert!(vm.last_error.unwrap().contains("killed"));

    // A failed VM can be started again, and deleted with force while running.
    let pid = vman.start("g1").unwrap().pid.unwrap();
    vman.delete_vm("g1", true).unwrap();
    assert!(!alive(pid));
    assert_eq!(vman.vm("g1").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(vman.allocations("lan").unwrap().is_empty());
}

#[test]
fn a_guest_that_ignores_the_power_button_is_forced_after_the_timeout() {
    let Some(spec_boot) = boot("vman.acpi=ignore") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_vm(&VmSpec::new("stubborn", "tiny").boot(spec_boot)).unwrap();
    let pid = vman.start("stubborn").unwrap().pid.unwrap();
    vman.wait_for_console("stubborn", READY, BOOT_WAIT).unwrap();
    let t = Instant::now();
    let vm = vman.stop("stubborn", Duration::from_secs(3)).unwrap();
    let took = t.elapsed();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "took {took:?}");
    assert!(!alive(pid));
    let history = vman.vm_history("stubborn", 100).unwrap();
    let forced = history.iter().find(|e| e.action == "forced").expect("a forced event");
    assert!(forced.details["after_ms"].as_u64().unwrap() >= 3000);
}

#[test]
fn a_start_that_fails_keeps_qemus_words_and_leaves_a_clear_state() {
    if boot("").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    // A file that exists but is no kernel: QEMU itself refuses it.
    let not_a_kernel = dir.path().join("not-a-kernel");
    std::fs::write(&not_a_kernel, b"hello").unwrap();
    let spec = VmSpec::new("broken", "tiny").boot(vman_core::BootSpec::kernel(not_a_kernel.to_string_lossy()));
    vman.create_vm(&spec).unwrap();
    let err = vman.start("broken").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Qemu, "{err}");
    assert!(err.to_string().contains("kernel"), "QEMU's message is kept: {err}");
    let vm = vman.vm("broken").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert_eq!(vm.pid, None);
    assert!(vm.last_error.unwrap().contains("kernel"));
    // A missing QEMU binary is a typed, actionable error too. The binary is
    // the directory's: another opener asking for another one is refused,
    // and a changed setting reaches a manager opened before the change.
    let other = vman_core::Manager::open(dir.path(), &support::options()).unwrap();
    let asked = vman_core::OpenOptions { qemu_binary: Some("/nonexistent/qemu-system-x86_64".into()), ..support::options() };
    let conflict = vman_core::Manager::open(dir.path(), &asked).unwrap_err();
    assert_eq!(conflict.kind(), ErrorKind::SettingConflict, "{conflict}");
    vman.set_setting("qemu_binary", "/nonexistent/qemu-system-x86_64").unwrap();
    let err = other.start("broken").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(other.vm("broken").unwrap().state, VmState::Error);
}

#[test]
fn a_chatty_guest_cannot_fill_the_disk() {
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let cap: u64 = 64 * 1024;
    let vman =
        vman_core::Manager::open(dir.path(), &vman_core::OpenOptions { serial_log_cap_bytes: Some(cap), ..support::options() }).unwrap();
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_vm(&VmSpec::new("chatty", "tiny").boot(spec_boot)).unwrap();
    vman.start("chatty").unwrap();
    vman.wait_for_console("chatty", READY, BOOT_WAIT).unwrap();
    let mut console = vman.console("chatty").unwrap();
    console.write_all(b"while true; do echo spam-spam-spam-spam-spam; done\n", Duration::from_secs(5)).unwrap();
    // Drain the live stream so QEMU never blocks on us; the log is what grows.
    let run = std::fs::read_dir(dir.path().join("run")).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut rotated, mut largest) = (false, 0u64);
    let mut sink = [0u8; 65536];
    while Instant::now() < deadline {
        let _ = console.read(&mut sink, Duration::from_millis(100));
        let size = |f: &str| std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
        rotated |= size("serial.log.1") > 0;
        largest = largest.max(size("serial.log") + size("serial.log.1"));
    }
    assert!(rotated, "the log was rotated at least once");
    // Cap plus one throttle interval of TCG output, plus the kept half.
    assert!(largest < cap * 2 + 64 * 1024, "log reached {largest} bytes with a {cap}-byte cap");
    let tail = vman.console_tail("chatty", 4096).unwrap();
    assert!(String::from_utf8_lossy(&tail).contains("spam-spam"), "the newest output is kept");
    vman.force_stop("chatty").unwrap();
}

/// The `Uid:` (real, effective, saved, fs) and `Seccomp:` lines of a process.
fn uid_and_seccomp(pid: u32) -> (Vec<u32>, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    (field("Uid:").split_whitespace().map(|u| u.parse().unwrap()).collect(), field("Seccomp:"))
}

#[test]
fn qemu_runs_as_an_unprivileged_user_under_a_seccomp_filter() {
    let Some(spec_boot) = boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = vman_core::Manager::open(
        dir.path(),
        &vman_core::OpenOptions { network: Some(vman_core::NetworkMode::Isolated), ..support::options() },
    )
    .unwrap();
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").nic("lan").boot(spec_boot)).unwrap();
    let pid = vman.start("g1").unwrap().pid.unwrap();
    let (uids, seccomp) = uid_and_seccomp(pid);
    // Mode 2: a filter (QEMU's -sandbox) is installed.
    assert_eq!(seccomp, "2");
    if nix::unistd::geteuid().is_root() {
        assert!(uids.iter().all(|u| *u != 0), "QEMU runs as root: {uids:?}");
        // Its run directory is its own; the state directory only lets it pass.
        let run_dir = std::fs::read_dir(dir.path().join("run")).unwrap().flatten().find(|e| e.file_name().len() == 16).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&run_dir.metadata().unwrap()), uids[0]);
    }
    // The guest still boots and powers off cleanly under the filter.
    vman.wait_for_console("g1", READY, BOOT_WAIT).unwrap();
    assert_eq!(vman.stop("g1", Duration::from_secs(30)).unwrap().state, VmState::Stopped);
    let actions: Vec<String> = vman.vm_history("g1", 100).unwrap().into_iter().map(|e| e.action).collect();
    assert!(!actions.contains(&"forced".to_string()), "{actions:?}");
    // An unknown QEMU user is refused where it is given.
    let mut options = vman_core::OpenOptions::default();
    assert_eq!(options.set_qemu_user("no-such-user-here").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options.set_qemu_user("").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(options.qemu_user, None);
}

#[test]
fn a_vm_with_nothing_to_boot_is_refused_at_start_and_stays_created() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 256, 1)).unwrap();
    vman.create_vm(&VmSpec::new("empty", "tiny")).unwrap();
    let before = vman.recent_events(100).unwrap();
    let err = vman.start("empty").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("boot source"), "{err}");
    assert_eq!(vman.vm("empty").unwrap().state, VmState::Created);
    assert_eq!(vman.recent_events(100).unwrap(), before, "nothing recorded");
}
