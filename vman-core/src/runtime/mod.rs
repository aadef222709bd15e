//! Running VMs: QEMU processes, their supervision, and the per-VM lock.
//!
//! QEMU runs daemonized, so it outlives the embedding program; everything
//! needed to find it again lives under `<state>/run/<short vm id>/`.

mod accel;
pub(crate) mod argv;
pub(crate) mod paths;
pub(crate) mod process;
pub(crate) mod qmp;
pub(crate) mod watcher;

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use accel::Accel;
use nix::fcntl::{Flock, FlockArg};
use parking_lot::RwLock;

use crate::cancel::Cancel;
use crate::console::log::SerialLog;
use crate::error::{Error, Result};
use process::{Credentials, RunPaths};
use watcher::{Exit, Watcher};

/// How long an operation waits for another one on the same VM (a graceful
/// stop may legitimately take its whole timeout).
const VM_LOCK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct Runtime {
    /// What the directory's settings make of QEMU and dnsmasq; replaced as
    /// a whole when the settings change (see [`Runtime::configure`]), so an
    /// operation that took it sees one consistent set.
    values: RwLock<Arc<RuntimeValues>>,
    pub run_root: PathBuf,
    locks_dir: PathBuf,
    watcher: OnceLock<Watcher>,
}

/// The runtime's values from the directory's settings.
#[derive(Debug)]
pub(crate) struct RuntimeValues {
    config: RuntimeConfig,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The dnsmasq binary, resolved against PATH and the sbin directories.
    pub dnsmasq: PathBuf,
    accel: OnceLock<Accel>,
    pub serial_log_cap: u64,
    /// Who QEMU runs as; `None` when vman is not root (QEMU runs as vman).
    pub qemu_creds: Option<Credentials>,
}

impl RuntimeValues {
    fn new(config: &RuntimeConfig) -> Result<RuntimeValues> {
        Ok(RuntimeValues {
            qemu_creds: qemu_credentials(config.qemu_user.as_deref())?,
            qemu: config.qemu_binary.clone(),
            dnsmasq: find_in_sbin(&config.dnsmasq_binary),
            accel: OnceLock::new(),
            serial_log_cap: config.serial_log_cap_bytes,
            config: config.clone(),
        })
    }
}

/// The state directory's folders for files QEMU opens: disks, base images,
/// cloud-init seeds and UEFI variable stores.
pub(crate) const STORAGE_DIRS: [&str; 4] = ["disks", "images", "seeds", "nvram"];

/// The user QEMU runs as by default when vman is root, if it exists.
pub const DEFAULT_QEMU_USER: &str = "vman-qemu";

/// Refuses a QEMU user that does not exist here.
pub(crate) fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.contains(['/', '\0', ':']) {
        return Err(Error::invalid("QEMU user", format!("{user:?} is not a user name")));
    }
    Credentials::of_user(user).map(drop)
}

/// Resolves who QEMU runs as (see `Settings::qemu_user`).
fn qemu_credentials(requested: Option<&str>) -> Result<Option<Credentials>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let creds = match requested {
        Some(user) => Credentials::of_user(user)?,
        None => Credentials::of_user(DEFAULT_QEMU_USER).or_else(|_| Credentials::of_user("nobody"))?,
    };
    if creds.uid == 0 {
        log::warn!("QEMU will run as root (qemu_user = {:?})", creds.user);
        return Ok(None);
    }
    Ok(Some(creds))
}

/// Lets the QEMU user reach its run directory (to remove its pidfile and
/// sockets when it exits) and nothing else: the state and run directories
/// get its group with search-only permission (0710); everything in them
/// stays owner-only.
fn let_qemu_through(dirs: &[PathBuf], creds: &Credentials) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in dirs {
        nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(creds.gid)))
            .map_err(|e| Error::io("give the QEMU user's group access to", dir, e.into()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o710)).map_err(|e| Error::io("set permissions of", dir, e))?;
    }
    Ok(())
}

/// The directories the QEMU user passes through or opens files in.
fn qemu_dirs(state_dir: &Path, run_root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![state_dir.to_path_buf(), run_root.to_path_buf()];
    dirs.extend(STORAGE_DIRS.iter().map(|d| state_dir.join(d)));
    dirs
}

/// What the runtime is built from: plain values, checked by the caller
/// (the directory's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuntimeConfig {
    pub qemu_binary: PathBuf,
    pub dnsmasq_binary: PathBuf,
    pub accel: Accel,
    pub serial_log_cap_bytes: u64,
    pub qemu_user: Option<String>,
}

impl Runtime {
    pub fn new(state_dir: &Path, options: &RuntimeConfig) -> Result<Runtime> {
        let run_root = state_dir.join("run");
        let locks_dir = state_dir.join("locks");
        for dir in [&run_root, &locks_dir] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        for dir in STORAGE_DIRS.iter().map(|d| state_dir.join(d)) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| Error::io("create", &dir, e))?;
        }
        let values = RuntimeValues::new(options)?;
        if let Some(creds) = &values.qemu_creds {
            let_qemu_through(&qemu_dirs(state_dir, &run_root), creds)?;
        }
        Ok(Runtime { values: RwLock::new(Arc::new(values)), run_root, locks_dir, watcher: OnceLock::new() })
    }

    /// The values in force now. Hold the `Arc` for the length of one
    /// operation rather than calling this again midway.
    pub fn values(&self) -> Arc<RuntimeValues> {
        self.values.read().clone()
    }

    /// Takes the directory's settings as they are now; true when QEMU's
    /// user changed (the directories were opened to its group; the caller
    /// hands it the files). The accelerator `auto` resolved to stays
    /// cached while the accelerator and the QEMU binary stay the same.
    pub fn configure(&self, state_dir: &Path, config: &RuntimeConfig) -> Result<bool> {
        let current = self.values();
        if current.config == *config {
            return Ok(false);
        }
        let values = RuntimeValues::new(config)?;
        if current.config.accel == config.accel
            && current.config.qemu_binary == config.qemu_binary
            && let Some(accel) = current.accel.get()
        {
            let _ = values.accel.set(*accel);
        }
        let new_user = values.qemu_creds != current.qemu_creds;
        if new_user && let Some(creds) = &values.qemu_creds {
            let_qemu_through(&qemu_dirs(state_dir, &self.run_root), creds)?;
        }
        *self.values.write() = Arc::new(values);
        Ok(new_user)
    }

    /// Gives the QEMU user's group to `file` if it has another (after the
    /// QEMU user changed); its mode stays. Nothing to do when vman is not
    /// root; a file that is gone is skipped.
    pub fn regroup_for_qemu(&self, file: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some(creds) = self.values().qemu_creds.clone() else { return Ok(()) };
        let meta = match fs::symlink_metadata(file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect", file, e)),
        };
        if !meta.is_file() || meta.gid() == creds.gid {
            return Ok(());
        }
        nix::unistd::chown(file, None, Some(nix::unistd::Gid::from_raw(creds.gid)))
            .map_err(|e| Error::io("give the QEMU user's group access to", file, e.into()))
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
        let values = self.values();
        *values.accel.get_or_init(|| self.auto_for_qemus_user(values.config.accel, &values.qemu, values.qemu_creds.as_ref()))
    }

    /// What `requested` resolves to with `qemu`: `auto` probes (once per
    /// host boot, through the cache any manager of this directory shares).
    pub fn resolve_accel(&self, requested: Accel, qemu: &Path) -> Accel {
        self.auto_for_qemus_user(requested, qemu, self.values().qemu_creds.as_ref())
    }

    /// `auto` resolved by the probe (which runs as vman), then demoted to
    /// TCG when QEMU's user may not open `/dev/kvm`.
    fn auto_for_qemus_user(&self, requested: Accel, qemu: &Path, qemu_user: Option<&Credentials>) -> Accel {
        let accel = accel::resolve(requested, qemu, &self.run_root.join("accel-probe"));
        if requested == Accel::Auto
            && accel == Accel::Kvm
            && let Err(e) = process::kvm_usable(qemu_user)
        {
            log::info!("auto chose tcg: {e}");
            return Accel::Tcg;
        }
        accel
    }

    /// Whether QEMU, as the user it runs as, can open `/dev/kvm`.
    pub fn kvm_usable(&self) -> std::io::Result<()> {
        process::kvm_usable(self.values().qemu_creds.as_ref())
    }

    pub fn paths(&self, vm_id: &str) -> RunPaths {
        RunPaths::new(&self.run_root, vm_id)
    }

    pub fn serial_log(&self, vm_id: &str) -> SerialLog {
        SerialLog::new(&self.paths(vm_id).dir, self.values().serial_log_cap)
    }

    /// Serializes operations on one VM across threads and processes. An
    /// `flock` dies with its process, so a crash can never leave a VM locked.
    pub fn lock_vm(&self, vm_id: &str, vm_name: &str) -> Result<Flock<File>> {
        self.lock_file(vm_id, &format!("VM {vm_name:?}"), FlockArg::LockExclusiveNonblock, None)
    }

    /// [`lock_vm`](Self::lock_vm) whose wait for another operation ends
    /// with `Cancelled` once `cancel` is.
    pub fn lock_vm_cancellable(&self, vm_id: &str, vm_name: &str, cancel: Option<&Cancel>) -> Result<Flock<File>> {
        self.lock_file(vm_id, &format!("VM {vm_name:?}"), FlockArg::LockExclusiveNonblock, cancel)
    }

    /// The directory's settings lock: shared while a start reads the
    /// settings and records `starting`, exclusive while a setting changes,
    /// so a change that needs no running VM cannot slip between the two.
    pub fn lock_settings(&self, exclusive: bool) -> Result<Flock<File>> {
        let arg = if exclusive { FlockArg::LockExclusiveNonblock } else { FlockArg::LockSharedNonblock };
        self.lock_file("settings", "the state directory's settings", arg, None)
    }

    fn lock_file(&self, file: &str, what: &str, arg: FlockArg, cancel: Option<&Cancel>) -> Result<Flock<File>> {
        let path = self.locks_dir.join(file);
        let deadline = Instant::now() + VM_LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            let file =
                File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock", &path, e))?;
            match Flock::lock(file, arg) {
                Ok(lock) => return Ok(lock),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    if !crate::cancel::sleep(pause, cancel) {
                        return Err(Error::Cancelled { what: format!("another operation on {what} to finish") });
                    }
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(Error::Timeout {
                        what: format!("another operation on {what} to finish"),
                        waited_ms: VM_LOCK_WAIT.as_millis() as u64,
                        source: None,
                    });
                }
                Err((_, errno)) => return Err(Error::io("lock", &path, errno.into())),
            }
        }
    }

    /// Serializes setting up one network's bridge and DHCP server.
    pub fn lock_network(&self, network_id: i64) -> Result<Flock<File>> {
        self.lock_file(&format!("net-{network_id}"), &format!("network {network_id}"), FlockArg::LockExclusiveNonblock, None)
    }

    /// The VM's lock if nobody holds it now; never waits.
    pub fn try_lock_vm(&self, vm_id: &str) -> Result<Flock<File>> {
        let path = self.locks_dir.join(vm_id);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| Error::io("lock", &path, errno.into()))
    }

    /// Where the VM's QEMU lineage lock lives (see [`process::Lineage`]).
    pub fn lineage_path(&self, vm_id: &str) -> PathBuf {
        self.locks_dir.join(format!("{vm_id}.qemu"))
    }

    /// Refuses a launch whose QEMU user could not reach the run directory:
    /// QEMU writes its pidfile there and removes it when it shuts down
    /// cleanly, which is how vman tells a clean exit from a kill. vman opens
    /// the state and run directories to that user's group itself; the
    /// directories above belong to the embedder, so they are only checked.
    pub fn check_qemu_can_reach(&self, state_dir: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let values = self.values();
        let Some(creds) = &values.qemu_creds else { return Ok(()) };
        let absolute = fs::canonicalize(state_dir).map_err(|e| Error::io("resolve", state_dir, e))?;
        for dir in absolute.ancestors().skip(1) {
            let meta = fs::metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
            let bit = if meta.uid() == creds.uid {
                0o100
            } else if creds.groups.contains(&meta.gid()) {
                0o010
            } else {
                0o001
            };
            if meta.mode() & bit == 0 {
                return Err(Error::PermissionDenied {
                    what: format!(
                        "QEMU runs as user {:?}, which cannot enter {} on the way to the state directory; \
                         make it searchable (chmod o+x) or choose another QEMU user",
                        creds.user,
                        dir.display()
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// Creates the VM's run directory for a launch, owned by the QEMU user
    /// when QEMU drops privileges (it writes its pidfile and serial log there).
    pub fn prepare_run_dir(&self, paths: &RunPaths) -> Result<()> {
        paths.prepare()?;
        if let Some(creds) = &self.values().qemu_creds {
            let (uid, gid) = (nix::unistd::Uid::from_raw(creds.uid), nix::unistd::Gid::from_raw(creds.gid));
            nix::unistd::chown(&paths.dir, Some(uid), Some(gid))
                .map_err(|e| Error::io("hand the run directory to the QEMU user:", &paths.dir, e.into()))?;
            // The serial log of an earlier run belongs to whoever made it.
            for log in [paths.dir.join("serial.log"), paths.dir.join("serial.log.1")] {
                let _ = nix::unistd::chown(&log, Some(uid), Some(gid));
            }
        }
        Ok(())
    }

    /// Lets QEMU open a disk, image or seed file that vman made or took in:
    /// its group becomes the QEMU user's, read-write (0660) or read-only
    /// (0640); nobody else gets anything.
    pub fn share_with_qemu(&self, file: &Path, writable: bool) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(creds) = &self.values().qemu_creds {
            nix::unistd::chown(file, None, Some(nix::unistd::Gid::from_raw(creds.gid)))
                .map_err(|e| Error::io("give the QEMU user's group access to", file, e.into()))?;
        }
        let mode = if writable { 0o660 } else { 0o640 };
        fs::set_permissions(file, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("set permissions of", file, e))
    }

    /// Removes a VM's run directory and lock files (after delete).
    pub fn forget_vm(&self, vm_id: &str) {
        let _ = fs::remove_dir_all(self.paths(vm_id).dir);
        let _ = fs::remove_file(self.locks_dir.join(vm_id));
        let _ = fs::remove_file(self.lineage_path(vm_id));
    }
}

/// Resolves a bare program name against PATH and then the sbin
/// directories, where Debian puts dnsmasq but a non-login PATH may not look.
pub(crate) fn find_in_sbin(program: &Path) -> PathBuf {
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
