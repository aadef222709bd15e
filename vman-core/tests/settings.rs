//! The settings a state directory keeps for every process that opens it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::os::unix::fs::MetadataExt;

use vman_core::{Accel, DiskSpec, ErrorKind, Manager, NetworkMode, ObjectKind, OpenOptions, Settings, TemplateSpec, VmSpec, VmState};

fn setting_events(vman: &Manager) -> Vec<(String, String, serde_json::Value)> {
    let events = vman.recent_events(1000).unwrap();
    events.into_iter().filter(|e| e.object_kind == ObjectKind::Setting).map(|e| (e.object_name, e.action, e.details)).collect()
}

#[test]
fn a_new_directory_keeps_its_creators_settings_for_every_later_opener() {
    let dir = tempfile::tempdir().unwrap();
    let creator = OpenOptions { serial_log_cap_bytes: Some(65536), ..support::options() };
    let first = Manager::open(dir.path(), &creator).unwrap();
    let settings = first.settings().unwrap();
    assert_eq!(
        settings,
        Settings {
            network: NetworkMode::Isolated,
            accel: Accel::Tcg,
            qemu_binary: "qemu-system-x86_64".into(),
            dnsmasq_binary: "dnsmasq".into(),
            qemu_user: None,
            serial_log_cap_bytes: 65536,
        }
    );
    // Written without events: a new directory's history starts with its user's doings.
    assert_eq!(first.recent_events(100).unwrap(), vec![]);
    drop(first);

    // An opener that asks nothing gets the directory's, not the defaults.
    let plain = Manager::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(plain.settings().unwrap(), settings);
    // One that asks the same values (the tests' TCG) is fine; `auto` network asks nothing.
    let same = OpenOptions { network: Some(NetworkMode::Auto), ..creator.clone() };
    Manager::open(dir.path(), &same).unwrap();

    // One that asks another value is refused, naming the setting, both
    // values and the command that changes it; nothing changes.
    let before = plain.recent_events(1000).unwrap();
    for (asked, key, stored, requested) in [
        (OpenOptions { accel: Some(Accel::Kvm), ..OpenOptions::default() }, "accel", "tcg", "kvm"),
        (OpenOptions { network: Some(NetworkMode::User), ..OpenOptions::default() }, "network", "isolated", "user"),
        (OpenOptions { serial_log_cap_bytes: Some(4096), ..OpenOptions::default() }, "serial_log_cap_bytes", "65536", "4096"),
        (OpenOptions { qemu_binary: Some("/opt/qemu".into()), ..OpenOptions::default() }, "qemu_binary", "qemu-system-x86_64", "/opt/qemu"),
    ] {
        let err = Manager::open(dir.path(), &asked).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SettingConflict, "{err}");
        let text = err.to_string();
        assert!(text.contains(key) && text.contains(stored) && text.contains(requested), "{text}");
        assert!(text.contains(&format!("vman settings set {key} {requested}")), "{text}");
    }
    assert_eq!(plain.recent_events(1000).unwrap(), before);
    assert_eq!(plain.settings().unwrap(), settings);
}

#[test]
fn a_missing_directory_is_made_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("mistyped");
    let no_create = OpenOptions { create: false, ..support::options() };
    let err = Manager::open(&state, &no_create).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("mistyped"), "{err}");
    assert!(!state.exists());
    // A directory that exists but holds no vman database is no state directory.
    std::fs::create_dir(&state).unwrap();
    assert_eq!(Manager::open(&state, &no_create).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "nothing was created in it");
    // Made by default; then opened without `create`.
    drop(Manager::open(&state, &support::options()).unwrap());
    Manager::open(&state, &no_create).unwrap();
}

#[test]
fn a_directory_made_before_settings_gets_them_at_first_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Manager::open(dir.path(), &support::options()).unwrap());
    // As a vman before schema 6 left it: no settings at all.
    {
        let conn = rusqlite::Connection::open(dir.path().join("vman.db")).unwrap();
        conn.execute("DELETE FROM settings", []).unwrap();
        conn.execute("DELETE FROM events", []).unwrap();
    }
    let vman = Manager::open(dir.path(), &OpenOptions { accel: Some(Accel::Tcg), ..OpenOptions::default() }).unwrap();
    let settings = vman.settings().unwrap();
    assert_eq!(settings.accel, Accel::Tcg, "the first opener's request");
    assert_eq!(settings.serial_log_cap_bytes, vman_core::DEFAULT_SERIAL_LOG_CAP_BYTES, "defaults for the rest");
    assert_ne!(settings.network, NetworkMode::Auto, "auto is resolved when written");
    assert_eq!(setting_events(&vman), vec![]);
    // From now on they are the directory's.
    let err = Manager::open(dir.path(), &OpenOptions { accel: Some(Accel::Kvm), ..OpenOptions::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SettingConflict);
}

#[test]
fn set_setting_checks_records_and_reaches_other_managers() {
    let dir = tempfile::tempdir().unwrap();
    let vman = support::open(dir.path());
    let other = Manager::open(dir.path(), &OpenOptions::default()).unwrap();
    let before = vman.recent_events(1000).unwrap();
    for (key, value, kind) in [
        ("acceleration", "tcg", ErrorKind::InvalidArgument),
        ("accel", "hvf", ErrorKind::InvalidArgument),
        ("network", "nat", ErrorKind::InvalidArgument),
        ("serial_log_cap_bytes", "12", ErrorKind::InvalidArgument),
        ("serial_log_cap_bytes", "lots", ErrorKind::InvalidArgument),
        ("qemu_binary", "", ErrorKind::InvalidArgument),
        ("qemu_user", "no-such-user-here", ErrorKind::InvalidArgument),
    ] {
        let err = vman.set_setting(key, value).unwrap_err();
        assert_eq!(err.kind(), kind, "{key}={value}: {err}");
    }
    assert_eq!(vman.recent_events(1000).unwrap(), before, "a refused change records nothing");

    let settings = vman.set_setting("serial_log_cap_bytes", "0131072").unwrap();
    assert_eq!(settings.serial_log_cap_bytes, 131072);
    assert_eq!(other.settings().unwrap(), settings, "another manager reads the same");
    let changed = setting_events(&vman).pop().unwrap();
    assert_eq!(changed, ("serial_log_cap_bytes".into(), "changed".into(), serde_json::json!({"from": "4194304", "to": "131072"})));
    // Setting what the directory keeps changes and records nothing.
    let count = vman.recent_events(1000).unwrap().len();
    assert_eq!(vman.set_setting("serial_log_cap_bytes", "131072").unwrap(), settings);
    assert_eq!(vman.recent_events(1000).unwrap().len(), count);
    // Every value reads back the way `set_setting` takes it.
    for (key, value) in settings.entries() {
        assert_eq!(vman.set_setting(key.as_str(), &value).unwrap(), settings, "{key}");
    }
    // A reopening asking for the old value is now a conflict.
    let old = OpenOptions { serial_log_cap_bytes: Some(vman_core::DEFAULT_SERIAL_LOG_CAP_BYTES), ..OpenOptions::default() };
    assert_eq!(Manager::open(dir.path(), &old).unwrap_err().kind(), ErrorKind::SettingConflict);
}

#[test]
fn network_mode_changes_only_while_no_vm_runs_and_the_next_start_uses_it() {
    let Some(spec_boot) = support::boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let vman = support::open(dir.path());
    // A manager opened before the change, as another process would be.
    let elsewhere = Manager::open(dir.path(), &OpenOptions::default()).unwrap();
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_network(&vman_core::NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").nic("lan").boot(spec_boot)).unwrap();
    vman.start("g1").unwrap();
    let before = vman.recent_events(1000).unwrap().len();
    let err = vman.set_setting("network", "user").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("g1") && err.to_string().contains("network"), "{err}");
    assert_eq!(vman.recent_events(1000).unwrap().len(), before);
    // The serial log cap applies from the next start: it may change now.
    vman.set_setting("serial_log_cap_bytes", "65536").unwrap();
    vman.force_stop("g1").unwrap();

    vman.set_setting("network", "user").unwrap();
    // The manager opened before the change starts the VM in user mode.
    let vm = elsewhere.start("g1").unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(vm.port_forwards.len(), 1, "user mode forwards the guest's SSH port: {vm:?}");
    elsewhere.force_stop("g1").unwrap();
}

#[test]
fn a_new_qemu_user_gets_the_files_qemu_opens_even_after_a_crash() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: only root runs QEMU as another user");
        return;
    }
    if std::process::Command::new("qemu-img").arg("--version").output().is_err() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "qemu-img missing in CI");
        return;
    }
    let gid_of = |user: &str| nix::unistd::User::from_name(user).unwrap().unwrap().gid.as_raw();
    let dir = tempfile::tempdir().unwrap();
    let vman = Manager::open(dir.path(), &OpenOptions { qemu_user: Some("nobody".into()), ..support::options() }).unwrap();
    let disk = vman.create_disk(&DiskSpec::new("data", 1 << 20)).unwrap();
    assert_eq!(std::fs::metadata(&disk.path).unwrap().gid(), gid_of("nobody"));
    vman.set_setting("qemu_user", "daemon").unwrap();
    assert_eq!(std::fs::metadata(&disk.path).unwrap().gid(), gid_of("daemon"), "handed to the new user's group");
    assert_eq!(std::fs::metadata(&disk.path).unwrap().mode() & 0o777, 0o660, "its mode stays");
    drop(vman);
    // A change whose process died right after recording it: the next
    // opener finishes it.
    {
        let conn = rusqlite::Connection::open(dir.path().join("vman.db")).unwrap();
        conn.execute("UPDATE settings SET value = 'nobody' WHERE key = 'qemu_user'", []).unwrap();
    }
    let vman = support::open(dir.path());
    assert_eq!(vman.settings().unwrap().qemu_user.as_deref(), Some("nobody"));
    assert_eq!(std::fs::metadata(&disk.path).unwrap().gid(), gid_of("nobody"));
}

/// The child half of the test below: runs (under `setpriv`, without
/// CAP_NET_ADMIN) only when the parent names the directory.
#[test]
fn unprivileged_child_of_a_bridged_directory() {
    let Some(dir) = std::env::var_os("VMAN_TEST_UNPRIVILEGED_DIR") else { return };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    assert_eq!(u64::from_str_radix(eff, 16).unwrap() & (1 << 12), 0, "the child must lack CAP_NET_ADMIN: {eff}");

    // Opening, reading, health and settings work as they would for root.
    let vman = Manager::open(&dir, &OpenOptions::default()).unwrap();
    assert_eq!(vman.settings().unwrap().network, NetworkMode::Bridged);
    assert_eq!(vman.vms(&Default::default()).unwrap().len(), 1);
    let health = vman.host_health().unwrap();
    let bridge = health.check("bridge").unwrap();
    assert!(!bridge.ok && bridge.required, "{bridge:?}");

    // Plugging a NIC into a bridge is what needs the privilege: refused
    // before anything is recorded, naming the remedies.
    let before = vman.recent_events(1000).unwrap();
    let err = vman.start("g1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(text.contains("root") && text.contains("CAP_NET_ADMIN") && text.contains("vman settings set network user"), "{text}");
    assert!(!text.contains("open with network mode"), "no advice that loops: {text}");
    assert_eq!(vman.vm("g1").unwrap().state, VmState::Created);
    assert_eq!(vman.recent_events(1000).unwrap(), before, "a refused start records nothing");
    // Making a directory bridged needs it too…
    let err = vman.set_setting("network", "isolated").and_then(|_| vman.set_setting("network", "bridged")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(vman.settings().unwrap().network, NetworkMode::Isolated);
    // …and so does a new directory asking for it.
    let fresh = tempfile::tempdir().unwrap();
    let bridged = OpenOptions { network: Some(NetworkMode::Bridged), ..OpenOptions::default() };
    assert_eq!(Manager::open(fresh.path(), &bridged).unwrap_err().kind(), ErrorKind::PermissionDenied);
    // The advice works without the privilege: leaving bridged needs none.
    assert_eq!(vman.set_setting("network", "user").unwrap().network, NetworkMode::User);
    println!("UNPRIVILEGED-CHILD-OK");
}

#[test]
fn a_bridged_directory_opens_without_cap_net_admin_and_only_plugging_nics_is_refused() {
    let Some(boot) = support::boot("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    let bridged = OpenOptions { network: Some(NetworkMode::Bridged), ..support::options() };
    let vman = Manager::open(dir.path(), &bridged).unwrap();
    vman.create_template(&TemplateSpec::new("tiny", 1, 192, 1)).unwrap();
    vman.create_network(&vman_core::NetworkSpec::new("lan", 3170, "10.117.0.0/24")).unwrap();
    vman.create_vm(&VmSpec::new("g1", "tiny").nic("lan").boot(boot)).unwrap();
    drop(vman);
    // This test binary again, as root without CAP_NET_ADMIN: the kernel
    // gives root's exec only the capabilities of its bounding set.
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-net_admin", "--inh-caps", "-net_admin"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unprivileged_child_of_a_bridged_directory", "--nocapture", "--test-threads=1"])
        .env("VMAN_TEST_UNPRIVILEGED_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("UNPRIVILEGED-CHILD-OK"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
