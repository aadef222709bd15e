//! [`HostHealth`]: whether this host can run the state directory's VMs the
//! way its settings say, one [`HealthCheck`] per thing vman needs, each
//! saying what it found and, when something is wrong, how to fix it.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::net::mode::{NetworkMode, has_net_admin};
use crate::runtime::{Accel, find_in_sbin};
use crate::sys::command::{self, RunError};

/// How long a `--version` may take before the program counts as hung.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The health of the host for one state directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HostHealth {
    /// True when every required check passed.
    pub ok: bool,
    /// Every check, in a fixed order: `qemu`, `qemu_img`, `accel`,
    /// `bridge`, `dnsmasq`, `ovmf`, `state_dir`.
    pub checks: Vec<HealthCheck>,
}

/// One thing vman needs from the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HealthCheck {
    /// What was checked: `qemu` (the QEMU binary runs), `qemu_img`,
    /// `accel` (the accelerator the settings ask for), `bridge`
    /// (CAP_NET_ADMIN and `/dev/net/tun`), `dnsmasq`, `ovmf` (UEFI
    /// firmware) or `state_dir` (writable).
    pub name: &'static str,
    /// Whether it is usable.
    pub ok: bool,
    /// Whether the directory's settings and VMs need it: `bridge` and
    /// `dnsmasq` only in bridged mode, `ovmf` only with a UEFI VM or image.
    pub required: bool,
    /// What was found (a version, a path, the mode chosen), or why it is
    /// not usable.
    pub detail: String,
    /// How to fix it; `None` when it is usable.
    pub fix: Option<String>,
}

impl HealthCheck {
    fn pass(name: &'static str, required: bool, detail: impl Into<String>) -> HealthCheck {
        HealthCheck { name, ok: true, required, detail: detail.into(), fix: None }
    }

    fn fail(name: &'static str, required: bool, detail: impl Into<String>, fix: impl Into<String>) -> HealthCheck {
        HealthCheck { name, ok: false, required, detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl HostHealth {
    pub(crate) fn new(checks: Vec<HealthCheck>) -> HostHealth {
        HostHealth { ok: checks.iter().all(|c| c.ok || !c.required), checks }
    }

    /// The check named `name`, if there is one.
    pub fn check(&self, name: &str) -> Option<&HealthCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The first line a program prints for `flag`, or why it could not say.
fn version_line(program: &Path, flag: &str) -> Result<String, String> {
    let shown = program.display();
    match command::run(program, &[flag], VERSION_TIMEOUT) {
        Ok(done) if done.status.success() => {
            let text = String::from_utf8_lossy(&done.stdout);
            Ok(text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no version printed").to_string())
        }
        Ok(done) => {
            let err = String::from_utf8_lossy(&done.stderr);
            let last = err.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("it printed nothing");
            Err(format!("{shown} {flag} failed ({}): {last}", done.status))
        }
        Err(RunError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(if program.components().count() == 1 { format!("no program {shown} in PATH") } else { format!("{shown} does not exist") })
        }
        Err(RunError::Spawn(e)) => Err(format!("cannot run {shown}: {e}")),
        Err(RunError::Wait(e)) => Err(format!("cannot wait for {shown}: {e}")),
        Err(RunError::TimedOut(after)) => Err(format!("{shown} {flag} did not finish within {} s", after.as_secs())),
    }
}

pub(crate) fn check_qemu(qemu: &Path) -> HealthCheck {
    match version_line(qemu, "-version") {
        Ok(version) => HealthCheck::pass("qemu", true, format!("{version} ({})", qemu.display())),
        Err(why) => HealthCheck::fail(
            "qemu",
            true,
            why,
            "install QEMU (Debian 12: apt-get install -t bookworm-backports qemu-system-x86), \
             or point the setting at it: vman settings set qemu_binary PATH",
        ),
    }
}

pub(crate) fn check_qemu_img() -> HealthCheck {
    match crate::storage::qemu_img::version() {
        Ok(version) => HealthCheck::pass("qemu_img", true, version),
        Err(e) => HealthCheck::fail("qemu_img", true, e.full_message(), "install qemu-utils (apt-get install qemu-utils)"),
    }
}

/// `resolved` is what `auto` resolves to here (the probe's cached answer);
/// `None` when the setting is not `auto`. `kvm` is whether QEMU, as the
/// user it runs as, can open `/dev/kvm`.
pub(crate) fn check_accel(setting: Accel, resolved: Option<Accel>, kvm: std::io::Result<()>) -> HealthCheck {
    match (setting, resolved) {
        (Accel::Tcg, _) => HealthCheck::pass("accel", true, "tcg, as set: software emulation, slow but needs nothing beyond QEMU"),
        (Accel::Kvm, _) => match kvm {
            Ok(()) => HealthCheck::pass("accel", true, "kvm, as set (taken without a probe): /dev/kvm opens for QEMU's user"),
            Err(e) => HealthCheck::fail(
                "accel",
                true,
                format!("kvm is set but QEMU cannot use /dev/kvm: {e}"),
                "load kvm_intel or kvm_amd and let QEMU's user open /dev/kvm (mode 0660, group kvm: vman gives QEMU that group), \
                 or set qemu_user to a user that may, or let vman choose: vman settings set accel auto",
            ),
        },
        (_, Some(Accel::Kvm)) => HealthCheck::pass("accel", true, "auto chose kvm: a probe this boot ran a guest under KVM"),
        (_, _) => {
            let why = match kvm {
                Ok(()) => "/dev/kvm opens, but a probe this boot found KVM does not run guests here (nested, without VMX?)".to_string(),
                Err(e) => format!("QEMU cannot use /dev/kvm ({e})"),
            };
            HealthCheck::pass("accel", true, format!("auto chose tcg: {why}; guests run emulated, slowly"))
        }
    }
}

pub(crate) fn check_bridge(network: NetworkMode) -> HealthCheck {
    let required = network == NetworkMode::Bridged;
    if !has_net_admin() {
        return HealthCheck::fail(
            "bridge",
            required,
            "this process lacks CAP_NET_ADMIN, which bridges and taps need",
            "run vman as root or with CAP_NET_ADMIN (e.g. systemd AmbientCapabilities=CAP_NET_ADMIN), \
             or use QEMU's user-mode NAT: vman settings set network user",
        );
    }
    match crate::net::linux::tun_usable() {
        Ok(()) => HealthCheck::pass("bridge", required, format!("CAP_NET_ADMIN and /dev/net/tun (network mode {})", network.as_str())),
        Err(e) => HealthCheck::fail("bridge", required, format!("/dev/net/tun: {e}"), "load the tun module (modprobe tun)"),
    }
}

pub(crate) fn check_dnsmasq(dnsmasq: &Path, network: NetworkMode) -> HealthCheck {
    let required = network == NetworkMode::Bridged;
    let dnsmasq = find_in_sbin(dnsmasq);
    match version_line(&dnsmasq, "--version") {
        Ok(version) => HealthCheck::pass("dnsmasq", required, format!("{version} ({})", dnsmasq.display())),
        Err(why) => HealthCheck::fail(
            "dnsmasq",
            required,
            why,
            "install dnsmasq-base (apt-get install dnsmasq-base), or point the setting at it: vman settings set dnsmasq_binary PATH",
        ),
    }
}

pub(crate) fn check_ovmf(required: bool) -> HealthCheck {
    use crate::storage::boot::{OVMF_CODE, OVMF_VARS};
    match [OVMF_CODE, OVMF_VARS].into_iter().find(|f| !Path::new(f).is_file()) {
        None => HealthCheck::pass("ovmf", required, format!("{OVMF_CODE} and {OVMF_VARS}")),
        Some(missing) => HealthCheck::fail(
            "ovmf",
            required,
            format!("{missing} is missing: UEFI VMs cannot start"),
            "install OVMF (apt-get install ovmf)",
        ),
    }
}

/// Writes, syncs and removes a small file in `dir`.
pub(crate) fn check_state_dir(dir: &Path, available_bytes: Option<u64>) -> HealthCheck {
    use std::io::Write;
    let probe = dir.join(format!(".health-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    let space = available_bytes.map(|b| format!(", {} MiB available", b >> 20)).unwrap_or_default();
    match written {
        Ok(()) => HealthCheck::pass("state_dir", true, format!("{}: writable{space}", dir.display())),
        Err(e) => HealthCheck::fail(
            "state_dir",
            true,
            format!("cannot write in {}: {e}{space}", dir.display()),
            "check the directory's owner and mode, and that its filesystem is neither read-only nor full",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_its_fix() {
        let check = check_qemu(Path::new("/nonexistent/qemu-system-x86_64"));
        assert!(!check.ok && check.required);
        assert!(check.detail.contains("/nonexistent/qemu-system-x86_64 does not exist"), "{check:?}");
        assert!(check.fix.as_deref().unwrap().contains("vman settings set qemu_binary"), "{check:?}");
        let check = check_dnsmasq(Path::new("no-such-dnsmasq"), NetworkMode::User);
        assert!(!check.ok && !check.required, "{check:?}");
        assert!(check.detail.contains("no program no-such-dnsmasq"), "{check:?}");
    }

    #[test]
    fn a_program_that_fails_says_how() {
        let check = check_qemu(Path::new("false"));
        assert!(!check.ok);
        assert!(check.detail.contains("false -version failed"), "{check:?}");
    }

    #[test]
    fn accel_reports_the_choice_and_fails_only_for_a_kvm_that_cannot_open() {
        let no_kvm = || Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(check_accel(Accel::Tcg, None, no_kvm()).ok);
        let kvm = check_accel(Accel::Kvm, None, no_kvm());
        assert!(!kvm.ok && kvm.fix.as_deref().unwrap().contains("accel"), "{kvm:?}");
        assert!(check_accel(Accel::Kvm, None, Ok(())).ok);
        let auto = check_accel(Accel::Auto, Some(Accel::Tcg), Ok(()));
        assert!(auto.ok && auto.detail.contains("does not run guests"), "{auto:?}");
        assert!(check_accel(Accel::Auto, Some(Accel::Kvm), Ok(())).detail.contains("kvm"));
    }

    #[test]
    fn only_required_failures_make_the_host_unhealthy() {
        let optional = HealthCheck::fail("dnsmasq", false, "x", "y");
        assert!(HostHealth::new(vec![optional.clone()]).ok);
        let required = HealthCheck { required: true, ..optional };
        assert!(!HostHealth::new(vec![required]).ok);
    }

    #[test]
    fn a_writable_directory_passes_and_a_missing_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let check = check_state_dir(dir.path(), Some(5 << 20));
        assert!(check.ok && check.detail.contains("5 MiB available"), "{check:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is gone");
        assert!(!check_state_dir(&dir.path().join("missing"), None).ok);
    }
}
