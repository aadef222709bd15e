//! QEMU processes: where their files live, how they are launched, and how a
//! pid is proven to be a given VM's QEMU before vman ever signals it.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
pub(crate) use crate::runtime::paths::RunPaths;
use crate::sys::proc;
pub(crate) use crate::sys::{Pidfd, Reaped};

/// Who QEMU runs as when vman itself is root: resolved once, at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's primary group, plus the group of
    /// `/dev/kvm` so an unprivileged QEMU can still use KVM.
    pub groups: Vec<libc::gid_t>,
}

impl Credentials {
    /// Looks `user` up in the password database.
    pub fn of_user(user: &str) -> Result<Credentials> {
        let entry = nix::unistd::User::from_name(user)
            .map_err(|e| Error::io("look up user", user, e.into()))?
            .ok_or_else(|| Error::invalid("QEMU user", format!("no user named {user:?} on this host")))?;
        let mut groups = vec![entry.gid.as_raw()];
        if let Ok(kvm) = fs::metadata("/dev/kvm").map(|m| std::os::unix::fs::MetadataExt::gid(&m))
            && kvm != 0
            && !groups.contains(&kvm)
        {
            groups.push(kvm);
        }
        Ok(Credentials { user: user.to_string(), uid: entry.uid.as_raw(), gid: entry.gid.as_raw(), groups })
    }
}

/// The device QEMU opens for KVM.
pub(crate) const KVM_DEVICE: &str = "/dev/kvm";

/// Whether QEMU, run as `qemu_user` (`None`: as this process), can open
/// `/dev/kvm` read-write. The device must open for this process; for
/// another user, its owner, group and mode decide as the kernel's check
/// does (ACLs aside), with the groups vman gives QEMU.
pub(crate) fn kvm_usable(qemu_user: Option<&Credentials>) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let device = fs::OpenOptions::new().read(true).write(true).open(KVM_DEVICE)?;
    let Some(creds) = qemu_user else { return Ok(()) };
    let meta = device.metadata()?;
    if may_read_write(meta.mode(), meta.uid(), meta.gid(), creds) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{KVM_DEVICE} has mode {:04o}, owner uid {}, group gid {}: QEMU's user {} may not open it read-write",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            creds.user
        ),
    ))
}

/// The kernel's permission check for read and write: the owner's bits for
/// the owner, else the group's for a member, else the others'.
fn may_read_write(mode: u32, owner: u32, group: u32, creds: &Credentials) -> bool {
    let bits = if creds.uid == owner {
        mode >> 6
    } else if creds.gid == group || creds.groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o6 == 0o6
}

/// The VM's QEMU lineage lock, `<state>/locks/<vm id>.qemu`.
///
/// The launching vman takes it (`flock`, exclusive) before it spawns QEMU
/// and hands the descriptor to QEMU, which inherits it across `exec` (and a
/// wrapper's `exec` too) and so holds the lock for exactly its lifetime; vman
/// then closes its own copy. An flock belongs to the open file description,
/// not to a process, and dies with the last descriptor: so, for a caller
/// holding the VM's operation lock (which every vman launch and reconcile
/// takes first), "held" means "a process of a launch for this VM is alive",
/// whatever the store or the pidfile say. That makes two QEMUs for one VM
/// impossible by construction: a second launch cannot take the lock.
#[derive(Debug)]
pub(crate) struct Lineage {
    fd: OwnedFd,
}

impl Lineage {
    /// Takes the lock, or `None` if a process of a launch still holds it.
    pub fn try_take(path: &Path) -> Result<Option<Lineage>> {
        let file =
            File::options().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io("open the QEMU lock", path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Lineage { fd: file.into() }));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(None) } else { Err(Error::io("lock", path, e)) }
    }

    /// Whether a process of a launch for this VM is alive (see the type).
    pub fn is_held(path: &Path) -> Result<bool> {
        // Taking it and closing the only descriptor releases it again.
        Ok(Lineage::try_take(path)?.is_none())
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What a new QEMU inherits: its listening QMP and serial sockets (made by
/// vman, so they exist, owner-only, before QEMU runs, and a client's
/// connect never races QEMU's startup), its boot files (opened by vman, so
/// an unprivileged QEMU needs no access to their directories), and the
/// lineage lock.
#[derive(Debug)]
pub(crate) struct Inherited {
    pub qmp: UnixListener,
    pub serial: UnixListener,
    pub kernel: Option<File>,
    pub initrd: Option<File>,
    /// The ISO in the CD-ROM drive: QEMU gets the open file (an fdset), so
    /// it needs no access to the caller's directories.
    pub cdrom: Option<File>,
    /// One open queue per tap NIC, by interface name.
    pub taps: Vec<(String, File)>,
    /// The caller's lineage lock, which QEMU inherits.
    pub lineage: RawFd,
}

impl Inherited {
    /// Makes the sockets and opens the boot files of one launch.
    pub fn prepare(
        paths: &RunPaths,
        boot: Option<&crate::vm::model::BootSpec>,
        cdrom: Option<&str>,
        nics: &[crate::runtime::argv::NicBackend],
        lineage: &Lineage,
    ) -> Result<Inherited> {
        let listen = |path: &Path| -> Result<UnixListener> {
            let listener = UnixListener::bind(path).map_err(|e| Error::io("make socket", path, e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| Error::io("restrict socket", path, e))?;
            Ok(listener)
        };
        let open = |what: &'static str, path: &str| -> Result<File> {
            File::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::invalid(what, format!("{path} does not exist")),
                _ => Error::io("open", path, e),
            })
        };
        Ok(Inherited {
            qmp: listen(&paths.qmp)?,
            serial: listen(&paths.serial_sock)?,
            kernel: boot.map(|b| open("kernel", &b.kernel)).transpose()?,
            initrd: boot.and_then(|b| b.initrd.as_deref()).map(|i| open("initrd", i)).transpose()?,
            cdrom: cdrom.map(|iso| crate::storage::path::open_source("CD-ROM image", iso).map(|(_, file)| file)).transpose()?,
            taps: nics
                .iter()
                .filter_map(|nic| match nic {
                    crate::runtime::argv::NicBackend::Tap { ifname } => Some(ifname),
                    _ => None,
                })
                .map(|ifname| Ok((ifname.clone(), crate::net::linux::open_tap(ifname)?)))
                .collect::<Result<_>>()?,
            lineage: lineage.as_raw_fd(),
        })
    }

    /// The descriptors QEMU's argument vector names.
    pub fn fds(&self) -> crate::runtime::argv::QemuFds {
        crate::runtime::argv::QemuFds {
            qmp: self.qmp.as_raw_fd(),
            serial: self.serial.as_raw_fd(),
            kernel: self.kernel.as_ref().map(AsRawFd::as_raw_fd),
            initrd: self.initrd.as_ref().map(AsRawFd::as_raw_fd),
            cdrom: self.cdrom.as_ref().map(AsRawFd::as_raw_fd),
            taps: self.taps.iter().map(|(name, file)| (name.clone(), file.as_raw_fd())).collect(),
        }
    }

    fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.qmp.as_raw_fd(), self.serial.as_raw_fd(), self.lineage];
        fds.extend(self.kernel.as_ref().map(AsRawFd::as_raw_fd));
        fds.extend(self.initrd.as_ref().map(AsRawFd::as_raw_fd));
        fds.extend(self.cdrom.as_ref().map(AsRawFd::as_raw_fd));
        fds.extend(self.taps.iter().map(|(_, file)| file.as_raw_fd()));
        fds
    }
}

/// Spawns QEMU in a session of its own (no terminal's Ctrl-C reaches it),
/// as `creds` if given, with the descriptors of `inherited` kept open across
/// `exec`. Returns at once with QEMU's pid: QEMU is vman's child until vman
/// exits (the watcher reaps it), then init's; it never depends on vman.
///
/// QEMU is not asked to `-daemonize`: its seccomp sandbox would then forbid
/// the fork and `setsid` it needs (`spawn=deny`, `elevateprivileges=deny`);
/// vman does both for it, the way libvirt does.
pub(crate) fn spawn(
    binary: &Path,
    argv: &[std::ffi::OsString],
    inherited: &Inherited,
    stderr: File,
    creds: Option<&Credentials>,
) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let keep = inherited.raw_fds();
    let ids = creds.map(|c| (c.uid, c.gid, c.groups.clone()));
    let mut command = Command::new(binary);
    command.args(argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls on values prepared before the
    // fork (no allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for fd in &keep {
                if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) < 0 || libc::setgid(*gid) < 0 || libc::setuid(*uid) < 0)
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Unsupported { what: format!("QEMU binary {}", binary.display()), source: Some(Box::new(e)) },
        _ => Error::io("run", binary, e),
    })?;
    // Not waited for here: the watcher reaps it through its pidfd.
    Ok(child.id())
}

/// QEMU's stderr of this run, as an error: its own words, or how it ended.
pub(crate) fn qemu_failure(
    paths: &RunPaths,
    fds: &crate::runtime::argv::QemuFds,
    boot: Option<&crate::vm::model::BootSpec>,
    status: Option<i32>,
) -> Error {
    let mut text = fs::read_to_string(&paths.stderr).unwrap_or_default();
    // QEMU names the boot files by the descriptors vman gave it; say which.
    if let (Some(fd), Some(b)) = (fds.kernel, boot) {
        text = text.replace(&crate::runtime::argv::fd_path(fd), &b.kernel);
    }
    if let (Some(fd), Some(initrd)) = (fds.initrd, boot.and_then(|b| b.initrd.as_deref())) {
        text = text.replace(&crate::runtime::argv::fd_path(fd), initrd);
    }
    let message = qemu_message(&text, status);
    // QEMU tells why only in words; they are read here, once, into a type,
    // so callers decide on the type (a start retries a taken port).
    if text.contains("Could not set up host forwarding rule") || text.contains("host forwarding") {
        return Error::HostPortTaken { message };
    }
    Error::Qemu { message, source: None }
}

/// QEMU's own words, trimmed to the lines that matter.
fn qemu_message(stderr: &str, code: Option<i32>) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let text = lines.iter().rev().take(5).rev().copied().collect::<Vec<_>>().join("; ");
    match (text.is_empty(), code) {
        (true, Some(c)) => format!("QEMU exited with status {c} and said nothing"),
        (true, None) => "QEMU was killed by a signal".to_string(),
        (false, _) => text,
    }
}

/// Whether `args` run a qemu-system binary with `-uuid <vm_id>`.
fn is_qemu_args(args: &[std::ffi::OsString], vm_id: &str) -> bool {
    let is_qemu = args.first().and_then(|a0| Path::new(a0).file_name()?.to_str().map(|n| n.starts_with("qemu-system"))).unwrap_or(false);
    is_qemu && args.windows(2).any(|w| w[0] == "-uuid" && w[1] == vm_id)
}

/// Whether the process `pidfd` holds (pid `pid`) is the QEMU of the VM with
/// UUID `vm_id`: its command line must run a qemu-system binary with
/// `-uuid <vm_id>`, read while the pidfd pins it.
pub(crate) fn is_qemu_of(pidfd: &Pidfd, pid: u32, vm_id: &str) -> bool {
    proc::cmdline(pid).is_some_and(|args| is_qemu_args(&args, vm_id)) && pidfd.is_alive()
}

/// A pidfd on `pid` if it is the QEMU of VM `vm_id`.
pub(crate) fn prove_qemu(pid: u32, vm_id: &str) -> Option<Pidfd> {
    proc::prove(pid, |args| is_qemu_args(args, vm_id)).map(|(pidfd, _)| pidfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_access_is_judged_as_qemus_user() {
        let nobody = Credentials { user: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534, 993] };
        assert!(!may_read_write(0o600, 0, 0, &nobody), "root's alone");
        assert!(may_read_write(0o660, 0, 993, &nobody), "the kvm group vman gives QEMU");
        assert!(!may_read_write(0o660, 0, 994, &nobody), "another group");
        assert!(may_read_write(0o666, 0, 0, &nobody));
        assert!(!may_read_write(0o066, 65534, 993, &nobody), "the owner's bits, even when the group's would do");
        assert!(!may_read_write(0o640, 0, 993, &nobody), "read alone is not enough");
    }

    #[test]
    fn a_process_that_is_not_qemu_is_never_taken_for_one() {
        let mut child = Command::new("sleep").args(["5", "-uuid", "abc"]).spawn().unwrap();
        let fd = Pidfd::open(child.id()).unwrap();
        assert!(!is_qemu_of(&fd, child.id(), "abc"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_taken_forwarded_port_is_its_own_error_and_other_failures_are_qemus() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path(), "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e");
        fs::create_dir_all(&paths.dir).unwrap();
        let fds = crate::runtime::argv::QemuFds { qmp: 5, serial: 6, kernel: Some(7), initrd: None, cdrom: None, taps: Vec::new() };
        let boot = crate::vm::model::BootSpec::kernel("/boot/vmlinuz");
        fs::write(
            &paths.stderr,
            "qemu-system-x86_64: -netdev user,id=net0: Could not set up host forwarding rule 'tcp:127.0.0.1:2222-:22'\n",
        )
        .unwrap();
        assert!(matches!(qemu_failure(&paths, &fds, Some(&boot), Some(1)), Error::HostPortTaken { .. }));
        // QEMU's words name the kernel by the descriptor; the error names the file.
        fs::write(&paths.stderr, "qemu-system-x86_64: could not load kernel '/proc/self/fd/7'\n").unwrap();
        let err = qemu_failure(&paths, &fds, Some(&boot), Some(1));
        assert!(matches!(&err, Error::Qemu { message, .. } if message.contains("'/boot/vmlinuz'")), "{err}");
    }

    #[test]
    fn qemu_errors_keep_the_last_lines() {
        assert_eq!(qemu_message("a\n\nqemu: could not load kernel '/x'\n", Some(1)), "a; qemu: could not load kernel '/x'");
        assert!(qemu_message("", Some(1)).contains("status 1"));
    }
}
