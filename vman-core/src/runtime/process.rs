//! QEMU processes: where their files live, how they are launched, and how a
//! pid is proven to be a given VM's QEMU before vman ever signals it.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};

/// The longest path a unix socket address holds (sun_path minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Files of one VM's QEMU, all under `<state>/run/<short id>/` (mode 0700).
#[derive(Debug, Clone)]
pub(crate) struct RunPaths {
    pub dir: PathBuf,
    pub pidfile: PathBuf,
    pub qmp: PathBuf,
    pub serial_sock: PathBuf,
    pub stderr: PathBuf,
}

impl RunPaths {
    /// The run directory name is the last 16 hex digits of the VM's UUID
    /// (its random part): short enough that socket paths fit in sun_path
    /// under a state directory of up to ~70 bytes.
    pub fn new(run_root: &Path, vm_id: &str) -> RunPaths {
        let hex: String = vm_id.chars().filter(char::is_ascii_hexdigit).collect();
        let short = &hex[hex.len().saturating_sub(16)..];
        let dir = run_root.join(short);
        RunPaths {
            pidfile: dir.join("qemu.pid"),
            qmp: dir.join("qmp.sock"),
            serial_sock: dir.join("serial.sock"),
            stderr: dir.join("qemu.stderr"),
            dir,
        }
    }

    /// Refuses a state directory too long for its VMs' socket paths to fit
    /// in sun_path, so `Manager::open` fails before creating anything
    /// rather than every start failing later.
    pub fn check_state_dir(state_dir: &Path) -> Result<()> {
        // Every VM's paths are as long: the run directory name always has
        // 16 hex digits.
        let sample = RunPaths::new(&state_dir.join("run"), "00000000-0000-0000-0000-000000000000");
        let longest = sample.longest_socket_path();
        if longest > MAX_SOCKET_PATH {
            let dir_len = state_dir.as_os_str().len();
            let room = (MAX_SOCKET_PATH + dir_len).saturating_sub(longest);
            return Err(Error::invalid(
                "state directory",
                format!("{} is {dir_len} bytes; unix socket paths under it fit only if it is at most {room}", state_dir.display()),
            ));
        }
        Ok(())
    }

    fn longest_socket_path(&self) -> usize {
        [&self.qmp, &self.serial_sock].iter().map(|sock| sock.as_os_str().len()).max().unwrap_or(0)
    }

    /// Creates the directory (0700) and checks the socket paths fit.
    pub fn prepare(&self) -> Result<()> {
        let longest = self.longest_socket_path();
        if longest > MAX_SOCKET_PATH {
            return Err(Error::invalid(
                "state directory",
                format!("its socket paths are {longest} bytes, over the {MAX_SOCKET_PATH}-byte limit of unix sockets; use a shorter state directory"),
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io("create run directory", &self.dir, e))?;
        // Leftovers of an earlier run would confuse the launch below.
        for stale in [&self.pidfile, &self.qmp, &self.serial_sock, &self.stderr] {
            match fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove stale run file", stale, e)),
            }
        }
        Ok(())
    }

    /// Makes the sockets owner-only. The directory is 0700 already; this
    /// keeps them private even if someone loosens it.
    pub fn restrict_sockets(&self) {
        for sock in [&self.qmp, &self.serial_sock] {
            let _ = fs::set_permissions(sock, fs::Permissions::from_mode(0o600));
        }
    }

    /// The pid QEMU wrote, if the pidfile exists and parses.
    pub fn read_pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }

    /// Removes the per-run files, keeping the serial log.
    pub fn clean(&self) {
        for f in [&self.pidfile, &self.qmp, &self.serial_sock, &self.stderr] {
            let _ = fs::remove_file(f);
        }
    }
}

/// Runs QEMU with `-daemonize`: the parent exits once the daemon is
/// initialized (its QMP socket listening), or with an error on stderr.
/// Returns the daemon's pid.
pub(crate) fn launch(binary: &Path, argv: &[std::ffi::OsString], paths: &RunPaths, timeout: Duration) -> Result<u32> {
    let stderr = File::create(&paths.stderr).map_err(|e| Error::io("create", &paths.stderr, e))?;
    let mut child = Command::new(binary)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Unsupported {
                what: format!("{} not found; install qemu-system-x86 (scripts/setup does)", binary.display()),
            },
            _ => Error::io("run", binary, e),
        })?;
    // The parent is our child: wait for it with a deadline, via its pidfd.
    let exited = Pidfd::open(child.id()).and_then(|fd| fd.wait(timeout)).unwrap_or(true);
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Timeout { what: "QEMU to initialize".into(), waited_ms: timeout.as_millis() as u64 });
    }
    let status = child.wait().map_err(|e| Error::io("wait for", binary, e))?;
    let message = fs::read_to_string(&paths.stderr).unwrap_or_default();
    if !status.success() {
        return Err(Error::Qemu { message: qemu_message(&message, status.code()) });
    }
    paths.read_pid().ok_or_else(|| Error::Qemu {
        message: format!("QEMU exited 0 but wrote no pidfile at {}", paths.pidfile.display()),
    })
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

/// A pidfd: a handle on one process that cannot be confused by pid reuse.
#[derive(Debug)]
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: u32) -> io::Result<Pidfd> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Waits until the process exits; true if it did within `timeout`.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self.wait(Duration::ZERO), Ok(false))
    }

    /// Signals exactly this process, never a successor that reused its pid.
    pub fn kill(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a NULL siginfo and flags 0 reads no
        // memory of ours; the fd is valid for the life of `self`.
        let rc = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    pub fn try_clone(&self) -> io::Result<Pidfd> {
        self.0.try_clone().map(Pidfd)
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The /proc check alone, for the one place with no pidfd (its open failed):
/// right after the spawn, before the pid could be reused.
pub(crate) fn is_qemu_of_pid(pid: u32, vm_id: &str) -> bool {
    cmdline_is_qemu_of(pid, vm_id)
}

fn cmdline_is_qemu_of(pid: u32, vm_id: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_qemu = args
        .first()
        .and_then(|a0| Path::new(std::str::from_utf8(a0).ok()?).file_name()?.to_str().map(|n| n.starts_with("qemu-system")))
        .unwrap_or(false);
    is_qemu && args.windows(2).any(|w| w[0] == b"-uuid" && w[1] == vm_id.as_bytes())
}

/// Whether `pid` is the QEMU of the VM with UUID `vm_id`: its command line
/// must run a qemu-system binary with `-uuid <vm_id>`. Checked after the
/// pidfd is open and re-checked alive after, so the answer is about the
/// process the pidfd holds.
pub(crate) fn is_qemu_of(pidfd: &Pidfd, pid: u32, vm_id: &str) -> bool {
    cmdline_is_qemu_of(pid, vm_id) && pidfd.is_alive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_uses_the_random_tail_of_the_uuid() {
        let p = RunPaths::new(Path::new("/s/run"), "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e");
        assert_eq!(p.dir, Path::new("/s/run/9d3e5f6a7b8c9d0e"));
    }

    #[test]
    fn over_long_socket_paths_are_refused_before_anything_is_made() {
        let root = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
        let p = RunPaths::new(&root, "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e");
        assert_eq!(p.prepare().unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        assert!(!root.exists());
    }

    #[test]
    fn pidfd_sees_a_child_exit_and_never_signals_after() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let fd = Pidfd::open(child.id()).unwrap();
        assert!(fd.is_alive());
        fd.kill(libc::SIGKILL).unwrap();
        assert!(fd.wait(Duration::from_secs(5)).unwrap());
        child.wait().unwrap();
        // Reaped: the pid may be reused, but the pidfd refuses to signal.
        assert_eq!(fd.kill(libc::SIGKILL).unwrap_err().raw_os_error(), Some(libc::ESRCH));
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
    fn qemu_errors_keep_the_last_lines() {
        assert_eq!(qemu_message("a\n\nqemu: could not load kernel '/x'\n", Some(1)), "a; qemu: could not load kernel '/x'");
        assert!(qemu_message("", Some(1)).contains("status 1"));
    }
}
