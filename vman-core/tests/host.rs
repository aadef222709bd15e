//! Host stats and health, against a real QEMU running a real guest.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::READY;

const BOOT_WAIT: Duration = Duration::from_secs(90);
use vman_core::{DiskSpec, TemplateSpec, VmSpec, VmState};

#[test]
fn stats_show_what_a_running_guests_qemu_uses_and_what_a_stopped_vms_disks_take() {
    let Some(spec_boot) = support::boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = support::open(dir.path());
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_vm(&VmSpec::new("busy", "tiny").boot(spec_boot)).unwrap();
    vman.create_vm(&VmSpec::new("idle", "tiny")).unwrap();
    let disk = vman.create_disk(&DiskSpec::new("data", 64 << 20)).unwrap();
    vman.attach_disk("idle", "data").unwrap();
    let pid = vman.start("busy").unwrap().pid.unwrap();
    // A booted guest has used CPU time: its kernel ran under TCG.
    vman.wait_for_console("busy", READY, BOOT_WAIT).unwrap();

    let stats = vman.host_stats().unwrap();
    assert!(stats.cpu_count >= 1);
    assert!((0.0..=100.0).contains(&stats.cpu_busy_percent), "{stats:?}");
    assert!(stats.sample_ms >= vman_core::STATS_SAMPLE.as_millis() as u64, "{stats:?}");
    assert!(stats.load_1 >= 0.0 && stats.load_5 >= 0.0 && stats.load_15 >= 0.0);
    assert!(0 < stats.memory_available_bytes && stats.memory_available_bytes <= stats.memory_total_bytes, "{stats:?}");
    assert!(0 < stats.disk_available_bytes && stats.disk_available_bytes <= stats.disk_total_bytes, "{stats:?}");
    let names: Vec<&str> = stats.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["busy", "idle"]);

    let busy = &stats.vms[0];
    assert_eq!((busy.state, busy.pid), (VmState::Running, Some(pid)));
    assert!(busy.cpu_time_ms.unwrap() > 0, "a booted guest's QEMU used CPU: {busy:?}");
    assert!(busy.rss_bytes.unwrap() > 16 << 20, "QEMU with a booted guest holds more than 16 MiB: {busy:?}");
    assert!(busy.cpu_percent.unwrap() >= 0.0, "{busy:?}");

    let idle = &stats.vms[1];
    assert_eq!((idle.state, idle.pid, idle.cpu_time_ms, idle.rss_bytes, idle.cpu_percent), (VmState::Created, None, None, None, None));
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&disk.path).unwrap()) * 512;
    assert!(allocated > 0);
    assert_eq!(idle.disk_bytes, allocated, "its disk's allocated bytes, not its 64 MiB size");

    // Once stopped, the VM has no QEMU figures.
    vman.force_stop("busy").unwrap();
    let busy = vman.host_stats().unwrap().vms.into_iter().find(|v| v.name == "busy").unwrap();
    assert_eq!((busy.state, busy.pid, busy.rss_bytes), (VmState::Stopped, None, None));
}

#[test]
fn health_names_each_check_and_a_bogus_qemu_with_its_fix() {
    if support::guest().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vman = support::open(dir.path());
    let health = vman.host_health().unwrap();
    let names: Vec<&str> = health.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ["qemu", "qemu_img", "accel", "bridge", "dnsmasq", "ovmf", "state_dir"]);
    let qemu = health.check("qemu").unwrap();
    assert!(qemu.ok && qemu.detail.starts_with("QEMU emulator version"), "{qemu:?}");
    assert!(health.check("qemu_img").unwrap().ok, "{health:?}");
    let accel = health.check("accel").unwrap();
    assert!(accel.ok && accel.detail.starts_with("tcg"), "{accel:?}");
    assert!(health.check("state_dir").unwrap().ok);
    // Isolated NICs need neither bridges nor DHCP, and no VM uses UEFI.
    for optional in ["bridge", "dnsmasq", "ovmf"] {
        assert!(!health.check(optional).unwrap().required, "{optional}");
    }
    assert!(health.ok, "{health:#?}");
    for check in &health.checks {
        assert_eq!(check.fix.is_none(), check.ok, "{check:?}");
    }

    vman.set_setting("qemu_binary", "/nonexistent/bin/qemu-system-x86_64").unwrap();
    let health = vman.host_health().unwrap();
    assert!(!health.ok);
    let qemu = health.check("qemu").unwrap();
    assert!(!qemu.ok && qemu.required);
    assert!(qemu.detail.contains("/nonexistent/bin/qemu-system-x86_64 does not exist"), "{qemu:?}");
    assert!(qemu.fix.as_deref().unwrap().contains("vman settings set qemu_binary"), "{qemu:?}");
    assert!(health.check("qemu_img").unwrap().ok, "the other checks are unaffected");
}

/// Whether `nobody`, with its own group and `/dev/kvm`'s (the groups vman
/// gives QEMU), opens `/dev/kvm` read-write: asked of the kernel, in a
/// child that really runs as nobody.
fn nobody_opens_kvm() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/dev/kvm") else { return false };
    let gid = String::from_utf8(std::process::Command::new("id").args(["-g", "nobody"]).output().unwrap().stdout).unwrap();
    let groups = if meta.gid() == 0 { gid.trim().to_string() } else { format!("{},{}", gid.trim(), meta.gid()) };
    std::process::Command::new("setpriv")
        .args(["--reuid=nobody", &format!("--regid={}", gid.trim()), &format!("--groups={groups}"), "sh", "-c", ": <>/dev/kvm"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn health_judges_kvm_as_the_user_qemu_runs_as() {
    let dir = tempfile::tempdir().unwrap();
    let options = vman_core::OpenOptions { accel: Some(vman_core::Accel::Kvm), qemu_user: Some("nobody".into()), ..support::options() };
    let vman = vman_core::Manager::open(dir.path(), &options).unwrap();
    let accel = vman.host_health().unwrap().check("accel").unwrap().clone();
    let usable = nobody_opens_kvm();
    assert_eq!(accel.ok, usable, "nobody {} open /dev/kvm: {accel:?}", if usable { "can" } else { "cannot" });
    if !usable && std::path::Path::new("/dev/kvm").exists() {
        // vman (root) opens it; QEMU's user is the one refused, and named.
        assert!(accel.detail.contains("QEMU's user nobody may not open it"), "{accel:?}");
        assert!(accel.fix.as_deref().unwrap().contains("qemu_user"), "{accel:?}");
    }
}
