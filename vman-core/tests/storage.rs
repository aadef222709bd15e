//! Disks and images end to end: real qemu-img, a real SQLite file and,
//! for hot-plug, a real guest under TCG whose kernel reports the disks it
//! sees over the serial console.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Cleanup, READY, boot, open};
use vman_core::{DiskFilter, DiskFormat, DiskSpec, DiskState, ErrorKind, ImageSpec, ImportSpec, Manager, TemplateSpec, VmSpec};

const MIB: u64 = 1024 * 1024;
const BOOT_WAIT: Duration = Duration::from_secs(90);
const SHORT: Duration = Duration::from_secs(30);

/// Everything a caller can see of the store, to prove a refused call changed nothing.
fn snapshot_of(m: &Manager) -> String {
    format!("{:?}\n{:?}\n{:?}", m.disks(&DiskFilter::default()).unwrap(), m.images().unwrap(), m.recent_events(1000).unwrap().len())
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn state_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // QEMU runs as an unprivileged user: it must be able to enter the tree.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

#[test]
fn disks_are_created_listed_resized_and_deleted_with_their_files() {
    let dir = state_dir();
    let m = open(dir.path());
    let d = m.create_disk(&DiskSpec::new("data", 64 * MIB)).unwrap();
    assert_eq!((d.state, d.format, d.size_bytes, d.owned), (DiskState::Available, DiskFormat::Qcow2, 64 * MIB, true));
    assert!(
        Path::new(&d.path).starts_with(std::fs::canonicalize(dir.path()).unwrap().join("disks"))
            || d.path.starts_with(&*dir.path().to_string_lossy())
    );
    let raw = m.create_disk(&DiskSpec::new("scratch", 8 * MIB).format(DiskFormat::Raw)).unwrap();
    assert_eq!(std::fs::metadata(&raw.path).unwrap().len(), 8 * MIB);
    assert_eq!(m.disks(&DiskFilter::default()).unwrap().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["data", "scratch"]);

    let grown = m.resize_disk("data", 96 * MIB, false).unwrap();
    assert_eq!(grown.size_bytes, 96 * MIB);
    let info = std::process::Command::new("qemu-img").args(["info", "--output=json", &d.path]).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains(&format!("\"virtual-size\": {}", 96 * MIB)));

    // A shrink loses data: refused unless forced, and then done.
    let before = snapshot_of(&m);
    assert_eq!(m.resize_disk("data", 32 * MIB, false).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(snapshot_of(&m), before);
    assert_eq!(m.resize_disk("data", 32 * MIB, true).unwrap().size_bytes, 32 * MIB);

    m.delete_disk("data").unwrap();
    assert!(!Path::new(&d.path).exists());
    assert_eq!(m.disk("data").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn bad_disk_input_is_refused_and_changes_nothing() {
    let dir = state_dir();
    let m = open(dir.path());
    m.create_disk(&DiskSpec::new("taken", 8 * MIB)).unwrap();
    m.create_template(&TemplateSpec::new("t", 1, 64, 1)).unwrap();
    m.create_vm(&VmSpec::new("v", "t")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let img = outside.path().join("x.qcow2");
    assert!(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&img).arg("16M").status().unwrap().success());
    let link = outside.path().join("link.qcow2");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let vmdk = outside.path().join("x.vmdk");
    assert!(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "vmdk"]).arg(&vmdk).arg("16M").status().unwrap().success());
    let text = outside.path().join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    let with_backing = outside.path().join("overlay.qcow2");
    assert!(
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&img)
            .arg(&with_backing)
            .status()
            .unwrap()
            .success()
    );

    let disks_dir = dir.path().join("disks");
    let files = files_in(&disks_dir);
    let before = snapshot_of(&m);
    let cases: Vec<(&str, vman_core::Error)> = vec![
        ("zero size", m.create_disk(&DiskSpec::new("a", 0)).unwrap_err()),
        ("absurd size", m.create_disk(&DiskSpec::new("a", u64::MAX)).unwrap_err()),
        ("unaligned size", m.create_disk(&DiskSpec::new("a", MIB + 1)).unwrap_err()),
        ("bad name", m.create_disk(&DiskSpec::new("../x", MIB)).unwrap_err()),
        ("duplicate", m.create_disk(&DiskSpec::new("taken", MIB)).unwrap_err()),
        ("relative source", m.import_disk(&ImportSpec::new("a", "x.qcow2")).unwrap_err()),
        ("device node", m.import_disk(&ImportSpec::new("a", "/dev/zero")).unwrap_err()),
        ("symlink", m.import_disk(&ImportSpec::new("a", link.to_str().unwrap())).unwrap_err()),
        ("not an image", m.import_disk(&ImportSpec::new("a", text.to_str().unwrap()).format(DiskFormat::Qcow2)).unwrap_err()),
        ("unknown format", m.import_disk(&ImportSpec::new("a", vmdk.to_str().unwrap())).unwrap_err()),
        ("backing file", m.import_disk(&ImportSpec::new("a", with_backing.to_str().unwrap())).unwrap_err()),
        ("in place outside the state dir", m.import_disk(&ImportSpec::new("a", img.to_str().unwrap()).in_place()).unwrap_err()),
        (
            "image in place outside",
            m.register_image(&ImageSpec { file: ImportSpec::new("i", img.to_str().unwrap()).in_place(), ..ImageSpec::new("i", "") })
                .unwrap_err(),
        ),
        ("detach of a disk not attached", m.detach_disk("v", "taken", SHORT).unwrap_err()),
        ("shrink without force", m.resize_disk("taken", MIB, false).unwrap_err()),
        ("unknown VM", m.attach_disk("nope", "taken").unwrap_err()),
        ("unknown disk", m.attach_disk("v", "nope").unwrap_err()),
        ("unknown image", m.create_vm(&VmSpec::new("w", "t").image("nope")).unwrap_err()),
    ];
    let kinds: Vec<(&str, ErrorKind)> = cases.iter().map(|(what, e)| (*what, e.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("zero size", ErrorKind::InvalidArgument),
            ("absurd size", ErrorKind::InvalidArgument),
            ("unaligned size", ErrorKind::InvalidArgument),
            ("bad name", ErrorKind::InvalidArgument),
            ("duplicate", ErrorKind::AlreadyExists),
            ("relative source", ErrorKind::InvalidArgument),
            ("device node", ErrorKind::InvalidArgument),
            ("symlink", ErrorKind::InvalidArgument),
            ("not an image", ErrorKind::InvalidArgument),
            ("unknown format", ErrorKind::InvalidArgument),
            ("backing file", ErrorKind::InvalidArgument),
            ("in place outside the state dir", ErrorKind::InvalidArgument),
            ("image in place outside", ErrorKind::InvalidArgument),
            ("detach of a disk not attached", ErrorKind::InvalidState),
            ("shrink without force", ErrorKind::InvalidArgument),
            ("unknown VM", ErrorKind::NotFound),
            ("unknown disk", ErrorKind::NotFound),
            ("unknown image", ErrorKind::NotFound),
        ]
    );
    assert!(cases[7].1.full_message().contains("symlink"), "{}", cases[7].1.full_message());
    assert!(cases[9].1.full_message().contains("vmdk"), "{}", cases[9].1.full_message());
    assert!(cases[10].1.full_message().contains("backing file"), "{}", cases[10].1.full_message());
    assert_eq!(snapshot_of(&m), before);
    assert_eq!(files_in(&disks_dir), files);
    assert_eq!(m.vms(&Default::default()).unwrap().len(), 1);
}

#[test]
fn images_are_hashed_cloned_and_kept_while_a_clone_exists() {
    let dir = state_dir();
    let m = open(dir.path());
    let src = tempfile::tempdir().unwrap();
    let base = src.path().join("base.raw");
    std::fs::write(&base, vec![7u8; 4 * MIB as usize]).unwrap();
    let image = m.register_image(&ImageSpec { os: "test".into(), ..ImageSpec::new("base", base.to_str().unwrap()) }).unwrap();
    let sha = std::process::Command::new("sha256sum").arg(&base).output().unwrap();
    assert_eq!(image.sha256, String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap());
    assert_eq!((image.format, image.virtual_size, image.owned), (DiskFormat::Raw, 4 * MIB, true));
    let copied_sha = std::fs::read(&image.path).unwrap();
    assert_eq!(copied_sha.len(), 4 * MIB as usize);

    m.create_template(&TemplateSpec::new("t", 1, 64, 1)).unwrap();
    let vm = m.create_vm(&VmSpec::new("c1", "t").image("base")).unwrap();
    let disks = m.disks(&DiskFilter { vm: Some("c1".into()), ..Default::default() }).unwrap();
    assert_eq!(disks.len(), 1);
    let boot = &disks[0];
    assert_eq!((boot.state, boot.slot, boot.image.as_deref(), boot.size_bytes), (DiskState::Attached, Some(0), Some("base"), 1 << 30));
    let info = std::process::Command::new("qemu-img").args(["info", "--output=json", &boot.path]).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains(&format!("\"backing-filename\": \"{}\"", image.path)), "{info}");

    // The base is never written, and cannot go while its clone exists.
    let err = m.delete_image("base").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    assert!(err.full_message().contains("c1.boot"), "{}", err.full_message());
    // Deleting the VM deletes its boot disk; then the image can go.
    m.delete_vm(&vm.name, false).unwrap();
    assert!(!Path::new(&boot.path).exists());
    m.delete_image("base").unwrap();
    assert!(!Path::new(&image.path).exists());
}

/// Reads `/sys/block/<dev>/size` in the guest over its console.
fn guest_disk_sectors(m: &Manager, vm: &str, dev: &str) -> Option<u64> {
    let mut console = m.console(vm).unwrap();
    console.write_all(format!("cat /sys/block/{dev}/size 2>/dev/null || echo NODISK\n").as_bytes(), SHORT).unwrap();
    let out = console.read_until(r"(?m)^(\d+|NODISK)\r?\n", SHORT).unwrap();
    let out = String::from_utf8_lossy(&out);
    let last = out.lines().map(str::trim).rfind(|l| !l.is_empty() && (l.chars().all(|c| c.is_ascii_digit()) || *l == "NODISK")).unwrap();
    last.parse().ok()
}

#[test]
fn a_disk_hot_plugged_into_a_running_guest_appears_and_goes() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    m.create_vm(&VmSpec::new("g", "t").boot(boot)).unwrap();
    m.create_disk(&DiskSpec::new("hot", 48 * MIB)).unwrap();
    m.start("g").unwrap();
    m.wait_for_console("g", READY, BOOT_WAIT).unwrap();
    assert_eq!(guest_disk_sectors(&m, "g", "vda"), None);

    let d = m.attach_disk("g", "hot").unwrap();
    assert_eq!((d.state, d.vm.as_deref(), d.slot), (DiskState::Attached, Some("g"), Some(0)));
    // The guest's kernel sees it once the PCIe hot-plug is handled.
    let mut seen = None;
    for _ in 0..60 {
        seen = guest_disk_sectors(&m, "g", "vda");
        if seen.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(seen, Some(48 * MIB / 512));
    // Grown live: the guest sees the new size at once; shrinking under it is refused.
    assert_eq!(m.resize_disk("hot", 64 * MIB, false).unwrap().size_bytes, 64 * MIB);
    assert_eq!(guest_disk_sectors(&m, "g", "vda"), Some(64 * MIB / 512));
    assert_eq!(m.resize_disk("hot", 32 * MIB, true).unwrap_err().kind(), ErrorKind::Unsupported);
    // Attached: it cannot be deleted.
    assert_eq!(m.delete_disk("hot").unwrap_err().kind(), ErrorKind::InvalidState);

    let d = m.detach_disk("g", "hot", SHORT).unwrap();
    assert_eq!((d.state, d.vm), (DiskState::Available, None));
    assert_eq!(guest_disk_sectors(&m, "g", "vda"), None);
    let report = m.reconcile().unwrap();
    assert!(report.drifts.is_empty(), "{report:?}");

    // A paused guest cannot release a device: the detach times out, the
    // disk stays attached, and once the guest runs and lets go, reconcile
    // records it detached.
    m.attach_disk("g", "hot").unwrap();
    for _ in 0..60 {
        if guest_disk_sectors(&m, "g", "vda").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    m.pause("g").unwrap();
    let err = m.detach_disk("g", "hot", Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.full_message().contains("did not"), "{}", err.full_message());
    assert_eq!(m.disk("hot").unwrap().state, DiskState::Attached);
    m.resume("g").unwrap();
    let mut released = false;
    for _ in 0..60 {
        m.reconcile().unwrap();
        if m.disk("hot").unwrap().state == DiskState::Available {
            released = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(released, "the guest released the disk after resuming, and reconcile saw it");
    m.force_stop("g").unwrap();
}

/// Runs a shell command in the guest and returns what it printed before
/// the `DONE` marker.
fn guest_run(m: &Manager, vm: &str, command: &str) -> String {
    let mut console = m.console(vm).unwrap();
    console.write_all(format!("{command}; echo; echo DONE-$((6*7))\n").as_bytes(), SHORT).unwrap();
    let out = console.read_until(r"(?m)^DONE-42\r?$", SHORT).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn write_mark(m: &Manager, vm: &str, mark: &str) {
    guest_run(m, vm, &format!("printf MARK-{mark} | dd of=/dev/vda conv=fsync 2>/dev/null"));
}

fn read_mark(m: &Manager, vm: &str) -> String {
    let out = guest_run(m, vm, "echo 3 > /proc/sys/vm/drop_caches; head -c 6 /dev/vda");
    let found = out.lines().map(str::trim).find_map(|l| l.strip_prefix("MARK-")).unwrap_or_else(|| panic!("no mark in {out:?}"));
    found.to_string()
}

#[test]
fn snapshot_revert_restores_written_data_offline_and_live() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    m.create_vm(&VmSpec::new("s", "t").boot(boot)).unwrap();
    m.create_disk(&DiskSpec::new("data", 16 * MIB)).unwrap();
    m.attach_disk("s", "data").unwrap();
    m.start("s").unwrap();
    m.wait_for_console("s", READY, BOOT_WAIT).unwrap();

    // Live: memory and disk together; the guest resumes as it was.
    write_mark(&m, "s", "A");
    let live = m.create_snapshot("s", "live1").unwrap();
    assert!(live.live);
    write_mark(&m, "s", "B");
    assert_eq!(read_mark(&m, "s"), "B");
    m.revert_snapshot("s", "live1").unwrap();
    assert_eq!(read_mark(&m, "s"), "A");
    // A duplicate name is refused, and changes nothing.
    let before = m.snapshots("s").unwrap();
    assert_eq!(m.create_snapshot("s", "live1").unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(m.create_snapshot("s", "1").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(m.snapshots("s").unwrap(), before);

    // Offline: the disks only.
    write_mark(&m, "s", "C");
    m.stop("s", SHORT).unwrap();
    let off = m.create_snapshot("s", "off1").unwrap();
    assert!(!off.live);
    m.start("s").unwrap();
    m.wait_for_console("s", READY, BOOT_WAIT).unwrap();
    assert_eq!(read_mark(&m, "s"), "C");
    write_mark(&m, "s", "D");
    // A disk-only snapshot cannot be applied under a running guest.
    assert_eq!(m.revert_snapshot("s", "off1").unwrap_err().kind(), ErrorKind::Unsupported);
    m.stop("s", SHORT).unwrap();
    m.revert_snapshot("s", "off1").unwrap();
    m.start("s").unwrap();
    m.wait_for_console("s", READY, BOOT_WAIT).unwrap();
    assert_eq!(read_mark(&m, "s"), "C");

    assert_eq!(m.snapshots("s").unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["live1", "off1"]);
    m.delete_snapshot("s", "live1").unwrap();
    m.force_stop("s").unwrap();
    m.delete_snapshot("s", "off1").unwrap();
    assert!(m.snapshots("s").unwrap().is_empty());
    let info = std::process::Command::new("qemu-img").args(["info", "--output=json", &m.disk("data").unwrap().path]).output().unwrap();
    assert!(!String::from_utf8_lossy(&info.stdout).contains("\"snapshots\""), "{}", String::from_utf8_lossy(&info.stdout));
}

#[test]
fn the_cdrom_changes_live_and_a_vm_with_nothing_to_boot_is_refused() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 128, 1)).unwrap();
    let empty = m.create_vm(&VmSpec::new("empty", "t")).unwrap();
    let err = m.start("empty").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.full_message().contains("boot source"), "{}", err.full_message());
    assert_eq!(m.vm("empty").unwrap().state, empty.state);

    let isos = tempfile::tempdir().unwrap();
    let iso = std::fs::canonicalize(isos.path()).unwrap().join("a.iso");
    std::fs::write(&iso, vec![0u8; 2048 * 16]).unwrap();
    // Private to vman's user: QEMU, running as another user, gets the open
    // file, not the path.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(isos.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&iso, std::fs::Permissions::from_mode(0o600)).unwrap();
    m.create_vm(&VmSpec::new("cd", "t").boot(boot)).unwrap();
    m.start("cd").unwrap();
    let vm = m.change_cdrom("cd", Some(iso.to_str().unwrap())).unwrap();
    assert_eq!(vm.cdrom.as_deref(), iso.to_str());
    let vm = m.change_cdrom("cd", None).unwrap();
    assert_eq!(vm.cdrom, None);
    assert_eq!(m.change_cdrom("cd", Some("/dev/zero")).unwrap_err().kind(), ErrorKind::InvalidArgument);
    m.change_cdrom("cd", Some(iso.to_str().unwrap())).unwrap();
    m.force_stop("cd").unwrap();
    // Next start: the ISO is in the drive from the start.
    m.start("cd").unwrap();
    assert_eq!(m.vm("cd").unwrap().cdrom.as_deref(), iso.to_str());
    m.force_stop("cd").unwrap();
}

#[test]
fn a_cloud_init_vm_starts_with_a_seed_holding_its_keys_and_addresses() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 128, 1)).unwrap();
    m.create_network(&vman_core::NetworkSpec::new("lan", 10, "10.9.0.0/24").dns("10.9.0.53")).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    assert!(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "op@host", "-f"]).arg(&key).status().unwrap().success()
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    m.import_ssh_key("op", &public).unwrap();
    let user_data = "#cloud-config\npackages: [htop]\n";
    let spec = VmSpec::new("ci", "t").boot(boot).nic("lan").ssh_key("op").cloud_init(Some(user_data.into()));
    let vm = m.create_vm(&spec).unwrap();
    // Bad user-data is refused at create, before anything is recorded.
    let bad = VmSpec::new("ci2", "t").cloud_init(Some("packages: [htop]\n".into()));
    assert_eq!(m.create_vm(&bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    m.start("ci").unwrap();
    let seed = dir.path().join("seeds").join(format!("{}.img", vm.id));
    let label = Command::new("blkid").args(["-p", "-o", "value", "-s", "LABEL"]).arg(&seed).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "cidata");
    let read = |file: &str| {
        let out = Command::new("mtype").args(["-i"]).arg(&seed).arg(format!("::{file}")).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(read("meta-data").contains(&vm.id));
    let user = read("user-data");
    assert!(user.starts_with("#cloud-config"), "{user}");
    assert!(user.contains(public.split_whitespace().nth(1).unwrap()), "{user}");
    assert!(user.contains("htop"), "{user}");
    let net = read("network-config");
    assert!(net.contains(&format!("{}/24", vm.nics[0].ip)), "{net}");
    assert!(net.contains(&vm.nics[0].mac.to_string()), "{net}");
    assert!(net.contains("10.9.0.53"), "{net}");
    m.force_stop("ci").unwrap();
    m.delete_vm("ci", false).unwrap();
    assert!(!seed.exists(), "the seed goes with its VM");
}

#[test]
fn a_vnc_display_answers_on_its_recorded_address_only_while_the_vm_runs() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 128, 1)).unwrap();
    let banner = |stream: &mut dyn std::io::Read| {
        let mut hello = [0u8; 12];
        stream.read_exact(&mut hello).unwrap();
        String::from_utf8_lossy(&hello).into_owned()
    };
    for (name, display) in [("tcp", vman_core::Display::VncTcp), ("unix", vman_core::Display::VncUnix)] {
        let vm = m.create_vm(&VmSpec { display, ..VmSpec::new(name, "t").boot(boot.clone()) }).unwrap();
        assert_eq!((vm.display, vm.display_address), (display, None));
        let vm = m.start(name).unwrap();
        let address = vm.display_address.clone().unwrap();
        let hello = match address.strip_prefix("unix:") {
            Some(path) => banner(&mut std::os::unix::net::UnixStream::connect(path).unwrap()),
            None => {
                assert!(address.starts_with("127.0.0.1:59"), "{address}");
                banner(&mut std::net::TcpStream::connect(&address).unwrap())
            }
        };
        assert!(hello.starts_with("RFB 003."), "{hello:?}");
        m.force_stop(name).unwrap();
        assert_eq!(m.vm(name).unwrap().display_address, None);
    }
    // Off by default: no address, and QEMU gets no display device.
    assert_eq!(m.create_vm(&VmSpec::new("none", "t").boot(boot)).unwrap().display_address, None);
}

#[test]
fn disks_attached_to_a_stopped_vm_boot_in_slot_order() {
    let Some(boot) = boot("") else { return };
    let dir = state_dir();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 128, 1)).unwrap();
    m.create_vm(&VmSpec::new("o", "t").boot(boot)).unwrap();
    // Made in one order, attached in another: the slot decides.
    for (name, mib) in [("third", 24), ("first", 8), ("second", 16)] {
        m.create_disk(&DiskSpec::new(name, mib * MIB)).unwrap();
    }
    for name in ["first", "second", "third"] {
        m.attach_disk("o", name).unwrap();
    }
    let slots: Vec<(String, Option<u32>)> =
        m.disks(&DiskFilter { vm: Some("o".into()), ..Default::default() }).unwrap().into_iter().map(|d| (d.name, d.slot)).collect();
    assert_eq!(slots, [("first".to_string(), Some(0)), ("second".to_string(), Some(1)), ("third".to_string(), Some(2))]);
    let seen = |m: &Manager| {
        m.start("o").unwrap();
        m.wait_for_console("o", READY, BOOT_WAIT).unwrap();
        let console = String::from_utf8_lossy(&m.console_tail("o", 64 * 1024).unwrap()).into_owned();
        m.force_stop("o").unwrap();
        // This run's lines only: the log keeps earlier runs before them.
        let run = console.rsplit("VMAN-DISK vda").next().map(|rest| format!("VMAN-DISK vda{rest}")).unwrap_or_default();
        run.lines().filter(|l| l.starts_with("VMAN-DISK")).map(|l| l.trim().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(seen(&m), ["VMAN-DISK vda 16384", "VMAN-DISK vdb 32768", "VMAN-DISK vdc 49152"]);
    // A detached slot is the next one taken; the others keep their names.
    m.detach_disk("o", "first", SHORT).unwrap();
    m.create_disk(&DiskSpec::new("fourth", 4 * MIB)).unwrap();
    assert_eq!(m.attach_disk("o", "fourth").unwrap().slot, Some(0));
    let after = seen(&m);
    assert_eq!(after.last().map(String::as_str), Some("VMAN-DISK vdc 49152"), "{after:?}");
    assert_eq!(after.first().map(String::as_str), Some("VMAN-DISK vda 8192"), "{after:?}");
}

#[test]
fn files_are_never_shared_between_disks_images_and_foreign_data_files() {
    let dir = state_dir();
    let m = open(dir.path());
    let outside = tempfile::tempdir().unwrap();
    // A qcow2 whose clusters live in another file (which vman would write).
    let victim = outside.path().join("victim");
    std::fs::write(&victim, vec![1u8; 2 * MIB as usize]).unwrap();
    let df = outside.path().join("df.qcow2");
    let o = format!("data_file={},data_file_raw=on", victim.display());
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-o", &o]).arg(&df).arg("2M").status().unwrap().success());
    let err = m.import_disk(&ImportSpec::new("df", df.to_str().unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.full_message().contains("another file"), "{}", err.full_message());
    assert_eq!(m.register_image(&ImageSpec::new("df", df.to_str().unwrap())).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // vman's own files cannot be used in place, and a caller's file only once.
    let base = outside.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("8M").status().unwrap().success());
    let image = m.register_image(&ImageSpec::new("base", base.to_str().unwrap())).unwrap();
    assert_eq!(m.import_disk(&ImportSpec::new("evil", &image.path).in_place()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mine = std::fs::canonicalize(dir.path()).unwrap().join("mine.qcow2");
    std::fs::copy(&base, &mine).unwrap();
    m.import_disk(&ImportSpec::new("mine", mine.to_str().unwrap()).in_place()).unwrap();
    assert_eq!(m.import_disk(&ImportSpec::new("mine2", mine.to_str().unwrap()).in_place()).unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        m.register_image(&ImageSpec { file: ImportSpec::new("img2", mine.to_str().unwrap()).in_place(), ..ImageSpec::new("img2", "") })
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );

    // A sparse raw file stays sparse when copied in.
    let sparse = outside.path().join("sparse.raw");
    std::fs::File::create(&sparse).unwrap().set_len(64 * MIB).unwrap();
    let d = m.import_disk(&ImportSpec::new("sparse", sparse.to_str().unwrap())).unwrap();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&d.path).unwrap();
    assert_eq!(meta.len(), 64 * MIB);
    assert!(meta.blocks() * 512 < MIB, "{} bytes allocated", meta.blocks() * 512);
}

#[test]
fn a_boot_disk_moved_to_another_vm_is_not_deleted_with_it_and_snapshots_never_outlive_their_vm() {
    let dir = state_dir();
    let m = open(dir.path());
    m.create_template(&TemplateSpec::new("t", 1, 64, 1)).unwrap();
    m.create_vm(&VmSpec { blank_disk: true, ..VmSpec::new("a", "t") }).unwrap();
    m.create_vm(&VmSpec::new("b", "t")).unwrap();
    let boot = m.detach_disk("a", "a.boot", SHORT).unwrap();
    assert!(!boot.delete_with_vm, "a detached boot disk is an ordinary disk");
    m.attach_disk("b", "a.boot").unwrap();
    m.delete_vm("b", false).unwrap();
    assert_eq!(m.disk("a.boot").unwrap().state, DiskState::Available);
    assert!(Path::new(&boot.path).exists());

    // b's snapshot tag goes with b; a later snapshot of that name is new.
    m.create_vm(&VmSpec::new("c", "t")).unwrap();
    m.create_disk(&DiskSpec::new("data", 8 * MIB)).unwrap();
    m.attach_disk("c", "data").unwrap();
    m.create_snapshot("c", "clean").unwrap();
    let tags = |path: &str| {
        String::from_utf8_lossy(&Command::new("qemu-img").args(["snapshot", "-l", path]).output().unwrap().stdout).into_owned()
    };
    let data = m.disk("data").unwrap();
    assert!(tags(&data.path).contains("clean"));
    m.delete_vm("c", false).unwrap();
    assert!(!tags(&data.path).contains("clean"), "{}", tags(&data.path));
    // A tag vman did not record for this VM is refused, not taken as its own.
    assert!(Command::new("qemu-img").args(["snapshot", "-c", "stale", &data.path]).status().unwrap().success());
    m.create_vm(&VmSpec::new("d", "t")).unwrap();
    m.attach_disk("d", "data").unwrap();
    let stray = m.create_snapshot("d", "stale").unwrap_err();
    assert_eq!(stray.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        stray.to_string(),
        r#"Disk "data" holds a snapshot tagged "stale" that is not one of this VM's; remove it with qemu-img snapshot -d"#
    );
    assert!(m.snapshots("d").unwrap().is_empty());

    // A revert refuses, before touching anything, when a disk came later.
    m.create_snapshot("d", "s1").unwrap();
    // A second one of the same name is this VM's own, not a stray tag.
    let again = m.create_snapshot("d", "s1").unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    assert_eq!(again.to_string(), r#"Snapshot "s1" of VM "d" already exists"#);
    m.create_disk(&DiskSpec::new("later", 8 * MIB)).unwrap();
    m.attach_disk("d", "later").unwrap();
    let err = m.revert_snapshot("d", "s1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(m.snapshots("d").unwrap()[0].state, "ready");
}
