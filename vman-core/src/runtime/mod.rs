//! Running VMs: QEMU processes, their supervision, and the per-VM lock.
//!
//! QEMU runs daemonized, so it outlives the embedding program; everything
//! needed to find it again lives under `<state>/run/<short vm id>/`.

mod accel;
pub(crate) mod argv;
pub(crate) mod process;
pub(crate) mod watcher;

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use accel::Accel;
use nix::fcntl::{Flock, FlockArg};

use crate::console::SerialLog;
use crate::host_network::{NetworkMode, resolve_mode};
use crate::error::{Error, Result};
use crate::manager::OpenOptions;
use process::RunPaths;
use watcher::{Exit, Watcher};

/// How long an operation waits for another one on the same VM (a graceful
/// stop may legitimately take its whole timeout).
const VM_LOCK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct Runtime {
    pub qemu: PathBuf,
    pub dnsmasq: PathBuf,
    /// Resolved at open: never `Auto`.
    pub network_mode: NetworkMode,
    requested_accel: Accel,
    accel: OnceLock<Accel>,
    pub run_root: PathBuf,
    locks_dir: PathBuf,
    pub serial_log_cap: u64,
    watcher: OnceLock<Watcher>,
}

impl Runtime {
    pub fn new(state_dir: &Path, options: &OpenOptions) -> Result<Runtime> {
        let run_root = state_dir.join("run");
        let locks_dir = state_dir.join("locks");
        for dir in [&run_root, &locks_dir] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io("create", dir, e))?;
        }
        Ok(Runtime {
            qemu: options.qemu_binary.clone(),
            dnsmasq: find_in_sbin(&options.dnsmasq_binary),
            network_mode: resolve_mode(options.network)?,
            requested_accel: options.accel,
            accel: OnceLock::new(),
            run_root,
            locks_dir,
            serial_log_cap: options.serial_log_cap_bytes,
            watcher: OnceLock::new(),
        })
    }

    pub fn start_watcher(&self, on_exit: impl Fn(Exit) + Send + 'static) -> Result<()> {
        let watcher = Watcher::start(on_exit).map_err(|e| Error::io("start the watcher thread for", &self.run_root, e))?;
        let _ = self.watcher.set(watcher);
        Ok(())
    }

    pub fn watcher(&self) -> Result<&Watcher> {
        self.watcher.get().ok_or_else(|| Error::Internal("watcher not started".into()))
    }

    /// The accelerator to use, resolving `auto` once per manager (and once
    /// per host boot across managers, through a cache file).
    pub fn accel(&self) -> Accel {
        *self.accel.get_or_init(|| accel::resolve(self.requested_accel, &self.qemu, &self.run_root.join("accel-probe")))
    }

    pub fn paths(&self, vm_id: &str) -> RunPaths {
        RunPaths::new(&self.run_root, vm_id)
    }

    pub fn serial_log(&self, vm_id: &str) -> SerialLog {
        SerialLog::new(&self.paths(vm_id).dir, self.serial_log_cap)
    }

    /// Serializes operations on one VM across threads and processes. An
    /// `flock` dies with its process, so a crash can never leave a VM locked.
    pub fn lock_vm(&self, vm_id: &str, vm_name: &str) -> Result<Flock<File>> {
        self.lock_file(vm_id, &format!("VM {vm_name:?}"))
    }

    fn lock_file(&self, file: &str, what: &str) -> Result<Flock<File>> {
        let path = self.locks_dir.join(file);
        let deadline = Instant::now() + VM_LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock", &path, e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(Error::Timeout {
                        what: format!("another operation on {what} to finish"),
                        waited_ms: VM_LOCK_WAIT.as_millis() as u64,
                    });
                }
                Err((_, errno)) => return Err(Error::io("lock", &path, errno.into())),
            }
        }
    }

    /// Serializes setting up one network's bridge and DHCP server.
    pub fn lock_network(&self, network_id: i64) -> Result<Flock<File>> {
        self.lock_file(&format!("net-{network_id}"), &format!("network {network_id}"))
    }

    /// The VM's lock if nobody holds it now; never waits.
    pub fn try_lock_vm(&self, vm_id: &str) -> Result<Flock<File>> {
        let path = self.locks_dir.join(vm_id);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| Error::io("lock", &path, errno.into()))
    }

    /// Removes a VM's run directory and lock file (after delete).
    pub fn forget_vm(&self, vm_id: &str) {
        let _ = fs::remove_dir_all(self.paths(vm_id).dir);
        let _ = fs::remove_file(self.locks_dir.join(vm_id));
    }
}

/// Resolves a bare program name against PATH and then the sbin
/// directories, where Debian puts dnsmasq but a non-login PATH may not look.
fn find_in_sbin(program: &Path) -> PathBuf {
    if program.components().count() != 1 {
        return program.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}
