//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` opening is not proof that KVM works. On nested hosts without
//! VMX (these machines), QEMU starts and QMP reports KVM enabled, yet guest
//! code runs about 20× slower than under TCG emulation: SeaBIOS needs 1.8 s
//! instead of 0.08 s, and a Linux kernel never gets past its setup code.
//! So `auto` measures instead of trusting: it runs the same tiny guest (a
//! multiboot image that enters 64-bit long mode and writes to the debug
//! port) under TCG and then under KVM, and picks KVM only if KVM finishes
//! within twice TCG's time; a working KVM beats emulation easily. The answer
//! is cached per host boot (`/proc/sys/kernel/random/boot_id`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if a probe proves it runs guests here, else TCG.
    #[default]
    Auto,
    /// Hardware virtualization through `/dev/kvm`, taken as asked, without
    /// the probe.
    Kvm,
    /// Software emulation: slow, works everywhere.
    Tcg,
}

impl Accel {
    /// The accelerator's lower-case name, as serde writes it and (for `kvm`
    /// and `tcg`) QEMU's `-accel` takes it: `auto`, `kvm` or `tcg`.
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

/// Bumped whenever the probe changes what it proves.
const PROBE_VERSION: &str = "long-mode-v2";

/// The longest the probe waits for TCG (which normally needs ~0.1 s).
const TCG_DEADLINE: Duration = Duration::from_secs(5);

/// The probe guest, 166 bytes: a multiboot header (a.out kludge, loaded at
/// 1 MiB) and 32-bit code that builds an identity-mapped 2 MiB page, enables
/// PAE and EFER.LME and paging, far-jumps into a 64-bit code segment, and
/// there writes 'L' to port 0x402 and halts. Assembled from:
///
/// ```text
///   entry: cld; mov $0x101000,%edi; xor %eax,%eax; mov $3072,%ecx; rep stosl
///          movl $0x102003,0x101000; movl $0x103003,0x102000; movl $0x83,0x103000
///          mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4        # PAE
///          mov $0x101000,%eax; mov %eax,%cr3
///          mov $0xC0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr  # EFER.LME
///          mov %cr0,%eax; or $0x80000001,%eax; mov %eax,%cr0  # PG|PE
///          lgdt gdtr; ljmp $0x08,$long_mode
///   long_mode (64-bit): mov $0x402,%dx; mov $'L',%al; out %al,%dx; 1: hlt; jmp 1b
///   gdt: .quad 0, 0x00AF9A000000FFFF;  gdtr: .word 15; .long gdt
/// ```
const LONG_MODE_PROBE: [u8; 166] = [
    0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0xa6, 0x00,
    0x10, 0x00, 0xa6, 0x00, 0x10, 0x00, 0x20, 0x00, 0x10, 0x00, 0xfc, 0xbf, 0x00, 0x10, 0x10, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c, 0x00,
    0x00, 0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x10, 0x00, 0x03, 0x20, 0x10, 0x00, 0xc7, 0x05, 0x00, 0x20, 0x10, 0x00, 0x03, 0x30, 0x10,
    0x00, 0xc7, 0x05, 0x00, 0x30, 0x10, 0x00, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00,
    0x10, 0x10, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20,
    0xc0, 0x0d, 0x01, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0x0f, 0x01, 0x15, 0xa0, 0x00, 0x10, 0x00, 0xea, 0x85, 0x00, 0x10, 0x00, 0x08,
    0x00, 0x66, 0xba, 0x02, 0x04, 0xb0, 0x4c, 0xee, 0xf4, 0xeb, 0xfd, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, 0x0f, 0x00, 0x90, 0x00, 0x10, 0x00,
];

/// Resolves `auto` to `kvm` or `tcg`, probing once per boot and caching the
/// answer in `cache_file`.
pub(crate) fn resolve(requested: Accel, qemu: &Path, cache_file: &Path) -> Accel {
    if requested != Accel::Auto {
        return requested;
    }
    if let Some(accel) = cached(cache_file) {
        return accel;
    }
    let accel = if kvm_runs_guests(qemu, cache_file.parent().unwrap_or(Path::new("/tmp"))) { Accel::Kvm } else { Accel::Tcg };
    log::info!("acceleration probe chose {}", accel.as_str());
    let _ = fs::write(cache_file, format!("{} {}\n", cache_key(), accel.as_str()));
    accel
}

/// The cache's key: this boot and this probe, so a better probe is not
/// fooled by the answer an older one cached.
fn cache_key() -> String {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}/{PROBE_VERSION}", boot_id.trim())
}

/// The answer a probe of this boot cached in `cache_file`, if any.
pub(crate) fn cached(cache_file: &Path) -> Option<Accel> {
    let cached = fs::read_to_string(cache_file).ok()?;
    let (id, answer) = cached.trim().split_once(' ')?;
    if id != cache_key() {
        return None;
    }
    answer.parse().ok()
}

/// The probe itself; false on any doubt.
fn kvm_runs_guests(qemu: &Path, work_dir: &Path) -> bool {
    if fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let image = work_dir.join(format!("accel-probe-{}.bin", std::process::id()));
    if fs::write(&image, LONG_MODE_PROBE).is_err() {
        return false;
    }
    let verdict = (|| {
        let tcg = run_probe(qemu, "tcg", &image, work_dir, TCG_DEADLINE)?;
        let kvm = run_probe(qemu, "kvm", &image, work_dir, tcg * 2);
        log::info!("acceleration probe: tcg {tcg:?}, kvm {kvm:?}");
        kvm
    })();
    let _ = fs::remove_file(&image);
    verdict.is_some()
}

/// Runs the probe image under `accel`; the time until it wrote 'L' from
/// long mode, or `None` if it did not within `deadline`.
fn run_probe(qemu: &Path, accel: &str, image: &Path, work_dir: &Path, deadline: Duration) -> Option<Duration> {
    let debugcon = work_dir.join(format!("accel-probe-{}-{accel}.log", std::process::id()));
    let _ = fs::remove_file(&debugcon);
    let mut child = Command::new(qemu)
        .args(["-accel", accel, "-machine", "q35", "-m", "16", "-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-kernel")
        .arg(image)
        .arg("-chardev")
        .arg(format!("file,id=dbg,path={}", super::argv::opt_escape(&debugcon.to_string_lossy())))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let mut took = None;
    // A one-off wait of a fraction of a second at first use; reading a small
    // file every 5 ms is simpler than inotify here and costs nothing.
    while started.elapsed() < deadline {
        if fs::read(&debugcon).is_ok_and(|log| log.last() == Some(&b'L')) {
            took = Some(started.elapsed());
            break;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(&debugcon);
    took
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
        // The answer is cached with this boot's id, and read back as such.
        assert!(fs::read_to_string(&cache).unwrap().trim().ends_with(" tcg"));
        assert_eq!(cached(&cache), Some(Accel::Tcg));
        fs::write(&cache, "another-boot/long-mode-v2 kvm\n").unwrap();
        assert_eq!(cached(&cache), None, "another boot's answer is not this one's");
    }

    #[test]
    fn the_probe_guest_runs_64_bit_code_under_tcg() {
        if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "QEMU missing in CI");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("probe.bin");
        fs::write(&image, LONG_MODE_PROBE).unwrap();
        let took = run_probe(Path::new("qemu-system-x86_64"), "tcg", &image, dir.path(), TCG_DEADLINE);
        assert!(took.is_some(), "the probe guest reached long mode and wrote to the debug port");
    }

    #[test]
    fn parse_round_trips() {
        for a in [Accel::Auto, Accel::Kvm, Accel::Tcg] {
            assert_eq!(a.as_str().parse::<Accel>().unwrap(), a);
        }
        assert_eq!("hvf".parse::<Accel>().unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
