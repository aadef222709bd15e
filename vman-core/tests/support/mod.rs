//! Shared by the end-to-end tests: the test guest and a manager that runs
//! it under TCG (KVM cannot run guests on these machines).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use vman_core::{Accel, BootSpec, Manager, OpenOptions};

/// The guest's kernel and initrd, built once per machine by
/// tests/guest/build.sh into its cache. `None` (with the reason printed)
/// when QEMU or the guest cannot be had outside CI; under CI=true that is a
/// failure, not a skip.
pub fn guest() -> Option<&'static (PathBuf, PathBuf)> {
    static GUEST: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let found = GUEST.get_or_init(|| {
        let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
        if !qemu.is_ok_and(|o| o.status.success()) {
            return Err("qemu-system-x86_64 is not installed (run scripts/setup)".into());
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/build.sh");
        let out = Command::new(&script).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("guest build failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok((dir.join("vmlinuz"), dir.join("initrd.img")))
    });
    skip_or_fail(found)
}

/// The guest on bootable media, built once per machine by
/// tests/guest/disk.sh into its cache: boots through the firmware (no
/// `-kernel`) and prints `VMAN-BOOT disk bios|uefi` (`cdrom` for the ISO).
pub struct BootMedia {
    /// 64 MiB, MBR + FAT32: syslinux for SeaBIOS, systemd-boot for OVMF.
    pub raw: PathBuf,
    /// The same disk as qcow2 (a base image for linked clones).
    pub qcow2: PathBuf,
    /// isolinux (BIOS) and an El Torito EFI image (UEFI).
    pub iso: PathBuf,
}

/// OVMF's firmware (package ovmf), read-only pflash unit 0.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's empty variable store: each UEFI VM gets a writable copy (pflash unit 1).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The boot media; `None` (with the reason printed) outside CI when they
/// cannot be had, a failure under CI=true.
pub fn boot_media() -> Option<&'static BootMedia> {
    static MEDIA: OnceLock<Result<BootMedia, String>> = OnceLock::new();
    let found = MEDIA.get_or_init(|| {
        guest().ok_or("no test guest")?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/disk.sh");
        let out = Command::new(&script).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("boot media build failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(BootMedia { raw: dir.join("disk.raw"), qcow2: dir.join("disk.qcow2"), iso: dir.join("boot.iso") })
    });
    skip_or_fail(found)
}

fn skip_or_fail<T>(found: &'static Result<T, String>) -> Option<&'static T> {
    match found {
        Ok(found) => Some(found),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("{reason}"),
        Err(reason) => {
            eprintln!("skipping: {reason}");
            None
        }
    }
}

pub fn boot(extra_cmdline: &str) -> Option<BootSpec> {
    let (kernel, initrd) = guest()?;
    let cmdline = format!("console=ttyS0 quiet panic=-1 {extra_cmdline}");
    Some(BootSpec::kernel(kernel.to_string_lossy()).initrd(initrd.to_string_lossy()).cmdline(cmdline.trim_end()))
}

/// TCG, and isolated NICs: the host's interfaces are not these tests' to
/// touch (networking tests choose bridged mode inside a namespace of their own).
pub fn options() -> OpenOptions {
    OpenOptions { accel: Some(Accel::Tcg), network: Some(vman_core::NetworkMode::Isolated), ..OpenOptions::default() }
}

pub fn open(dir: &std::path::Path) -> Manager {
    Manager::open(dir, &options()).expect("open state dir")
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

pub const READY: &str = "^VMAN-GUEST-READY$";

/// Kills, on drop, every QEMU and dnsmasq that a state directory's pidfiles
/// name and whose command line mentions that directory. VMs outlive their
/// embedder by design, so a test that panics half-way would otherwise leave
/// them running; declare this right after the directory.
pub struct Cleanup(pub std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Every process launched for this directory names its run directory
        // on its command line (QEMU's pidfile; a wrapper's arguments).
        for pid in processes_mentioning(&format!("{}/run/", self.0.display())) {
            // SAFETY: kill(2) on a process proven to be this test's.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let Ok(entries) = std::fs::read_dir(self.0.join("run")) else { return };
        let dir = self.0.to_string_lossy().into_owned();
        for entry in entries.flatten() {
            for pidfile in ["qemu.pid", "dnsmasq.pid"] {
                let Some(pid) = std::fs::read_to_string(entry.path().join(pidfile)).ok().and_then(|p| p.trim().parse::<i32>().ok()) else {
                    continue;
                };
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&dir) {
                    // SAFETY: kill(2) on a process proven to be this test's.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Runs this test binary's `child_test` as an embedding process (with
/// `env_key` set to `dir`), reads the "STARTED <vm> <pid>" lines it prints
/// until "EMBEDDER-READY", and SIGKILLs it: no destructor, no cleanup runs.
/// Returns the QEMU pids it reported.
pub fn run_and_kill_embedder(child_test: &str, env_key: &str, dir: &std::path::Path) -> Vec<u32> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .env(env_key, dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn embedder");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut pids = Vec::new();
    loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).expect("read embedder") > 0, "embedder died early");
        if let Some(rest) = line.split("STARTED ").nth(1) {
            pids.push(rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("pid"));
        }
        if line.contains("EMBEDDER-READY") {
            break;
        }
    }
    child.kill().expect("SIGKILL the embedder");
    child.wait().expect("reap the embedder");
    pids
}

/// Pids of live processes whose command line contains `needle` (arguments
/// joined by spaces).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && alive(*pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle)
        })
        .collect()
}

/// Pids of the QEMU processes running a VM: `qemu-system…` with `-uuid <id>`.
pub fn qemus_of(vm_id: &str) -> Vec<u32> {
    processes_mentioning(&format!("-uuid {vm_id} "))
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(argv0).contains("qemu-system")
        })
        .collect()
}
