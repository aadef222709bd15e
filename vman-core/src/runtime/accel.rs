//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` opening is not proof that KVM works: on nested hosts without
//! VMX, QEMU starts, QMP reports KVM enabled, and the guest spins forever in
//! the firmware. So `auto` proves KVM with a real probe: boot an empty
//! machine under KVM and require SeaBIOS to reach its boot handoff
//! ("Booting from …" on the debug console) within a deadline. A working KVM
//! gets there in ~50 ms, TCG in ~130 ms; the broken nested KVM never does.
//! The answer is cached per host boot (`/proc/sys/kernel/random/boot_id`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if a probe proves it runs guests here, else TCG.
    #[default]
    Auto,
    Kvm,
    /// Software emulation: slow, works everywhere.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl FromStr for Accel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Accel> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(Error::invalid("accelerator", format!("{s:?} is not one of auto, kvm, tcg"))),
        }
    }
}

/// How long the probe gives SeaBIOS under KVM (≈40× what a working KVM needs).
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// Resolves `auto` to `kvm` or `tcg`, probing once per boot and caching the
/// answer in `cache_file`.
pub(crate) fn resolve(requested: Accel, qemu: &Path, cache_file: &Path) -> Accel {
    if requested != Accel::Auto {
        return requested;
    }
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot_id = boot_id.trim();
    if let Ok(cached) = fs::read_to_string(cache_file) {
        if let Some((id, answer)) = cached.trim().split_once(' ') {
            if id == boot_id && let Ok(accel) = answer.parse::<Accel>() {
                return accel;
            }
        }
    }
    let accel = if kvm_runs_guests(qemu, cache_file.parent().unwrap_or(Path::new("/tmp"))) { Accel::Kvm } else { Accel::Tcg };
    log::info!("acceleration probe chose {}", accel.as_str());
    let _ = fs::write(cache_file, format!("{boot_id} {}\n", accel.as_str()));
    accel
}

/// The probe itself; false on any doubt.
fn kvm_runs_guests(qemu: &Path, work_dir: &Path) -> bool {
    if fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let debugcon = work_dir.join(format!("kvm-probe-{}.log", std::process::id()));
    let _ = fs::remove_file(&debugcon);
    let child = Command::new(qemu)
        .args(["-accel", "kvm", "-machine", "q35", "-m", "16", "-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-chardev")
        .arg(format!("file,id=dbg,path={}", super::argv::opt_escape(&debugcon.to_string_lossy())))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + PROBE_DEADLINE;
    let mut works = false;
    // A one-off wait of at most two seconds at first use; reading a small
    // file every 10 ms is simpler than inotify here and costs nothing.
    while Instant::now() < deadline {
        if fs::read(&debugcon).is_ok_and(|log| log.windows(12).any(|w| w == b"Booting from")) {
            works = true;
            break;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(&debugcon);
    works
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_are_not_probed() {
        let cache = Path::new("/nonexistent/cache");
        assert_eq!(resolve(Accel::Tcg, Path::new("/nonexistent/qemu"), cache), Accel::Tcg);
        assert_eq!(resolve(Accel::Kvm, Path::new("/nonexistent/qemu"), cache), Accel::Kvm);
    }

    #[test]
    fn auto_without_a_usable_qemu_falls_back_to_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("accel");
        assert_eq!(resolve(Accel::Auto, Path::new("/nonexistent/qemu"), &cache), Accel::Tcg);
        // The answer is cached with this boot's id.
        assert!(fs::read_to_string(&cache).unwrap().trim().ends_with(" tcg"));
    }

    #[test]
    fn parse_round_trips() {
        for a in [Accel::Auto, Accel::Kvm, Accel::Tcg] {
            assert_eq!(a.as_str().parse::<Accel>().unwrap(), a);
        }
        assert_eq!("hvf".parse::<Accel>().unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
