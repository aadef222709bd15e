//! Booting through the firmware, with no `-kernel`: SeaBIOS from a disk,
//! OVMF (UEFI) from a disk, two VMs from linked clones of one registered
//! image, and an ISO put before the disk in the boot order. The media are
//! built from Debian packages by tests/guest/disk.sh; the guest prints
//! `VMAN-BOOT <medium> <firmware>` first on its console.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::{Cleanup, READY, boot_media, open};
use vman_core::{DiskFilter, ErrorKind, Firmware, ImageSpec, Manager, TemplateSpec, VmSpec};

/// OVMF under TCG takes about twice SeaBIOS's time.
const BOOT_WAIT: Duration = Duration::from_secs(180);

fn booted_from(m: &Manager, vm: &str) -> String {
    m.wait_for_console(vm, READY, BOOT_WAIT).unwrap();
    let log = String::from_utf8_lossy(&m.console_tail(vm, 64 * 1024).unwrap()).into_owned();
    log.lines().rev().find_map(|l| l.trim().strip_prefix("VMAN-BOOT ")).unwrap_or_else(|| panic!("no VMAN-BOOT line in {log}")).to_string()
}

fn sha256(path: &str) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn vms_boot_from_disks_through_seabios_and_ovmf_and_an_iso_can_come_first() {
    let Some(media) = boot_media() else { return };
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    let image = m.register_image(&ImageSpec { os: "vman-test".into(), ..ImageSpec::new("base", media.qcow2.to_str().unwrap()) }).unwrap();

    // Two VMs on linked clones of one image, and one through UEFI; all
    // four guests boot at once (TCG shares the two cores).
    m.create_vm(&VmSpec::new("b1", "t").image("base")).unwrap();
    m.create_vm(&VmSpec::new("b2", "t").image("base")).unwrap();
    m.create_vm(&VmSpec { firmware: Some(Firmware::Uefi), ..VmSpec::new("u1", "t").image("base") }).unwrap();
    let iso = media.iso.to_str().unwrap();
    m.create_vm(&VmSpec { blank_disk: true, boot_from_cdrom: true, ..VmSpec::new("i1", "t").cdrom(iso) }).unwrap();
    for vm in ["b1", "b2", "u1", "i1"] {
        m.start(vm).unwrap();
    }
    assert_eq!(booted_from(&m, "b1"), "disk bios");
    assert_eq!(booted_from(&m, "b2"), "disk bios");
    assert_eq!(booted_from(&m, "u1"), "disk uefi");
    assert_eq!(booted_from(&m, "i1"), "cdrom bios");
    assert_eq!(m.vm("u1").unwrap().firmware, Firmware::Uefi);

    // Each clone is its own disk over the same base; the base is never written.
    let clones: Vec<_> =
        ["b1", "b2"].iter().map(|vm| m.disks(&DiskFilter { vm: Some(vm.to_string()), ..Default::default() }).unwrap()).collect();
    assert_ne!(clones[0][0].path, clones[1][0].path);
    assert_eq!(clones[0][0].image.as_deref(), Some("base"));
    for vm in ["b1", "b2", "u1", "i1"] {
        m.force_stop(vm).unwrap();
    }
    assert_eq!(sha256(&image.path), image.sha256, "the base image was written");

    // The image stays while any clone exists.
    let err = m.delete_image("base").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    for vm in ["b1", "b2", "u1"] {
        m.delete_vm(vm, false).unwrap();
    }
    m.delete_image("base").unwrap();
}
