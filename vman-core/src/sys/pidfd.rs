//! A pidfd: a handle on one process that cannot be confused by pid reuse,
//! for waiting (in `poll`), signalling and reaping. The one implementation
//! every part of vman uses (QEMU, dnsmasq, lineage holders).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How a child process ended, as `waitid` told its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// Not this process's child (adopted from another process), or still
    /// running: only the pidfile can tell how it ended.
    NotOurs,
    Exited(i32),
    Signaled(i32),
}

impl Reaped {
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Reaped::Exited(code) => Some(code),
            _ => None,
        }
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
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Reaps the process if it is this process's child and has exited, so
    /// no zombie is left behind, and says how it ended; `NotOurs` (and no
    /// effect) for anyone else's process or one still running.
    pub fn reap(&self) -> Reaped {
        // SAFETY: waitid with P_PIDFD on our valid fd, writing into a zeroed
        // siginfo we own; WNOHANG never blocks.
        let (rc, info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(libc::P_PIDFD, self.0.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG);
            (rc, info)
        };
        // SAFETY: after a successful waitid the SIGCHLD fields are set (a
        // zero pid means nothing had exited yet).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        match info.si_code {
            _ if rc != 0 || pid == 0 => Reaped::NotOurs,
            libc::CLD_EXITED => Reaped::Exited(status),
            _ => Reaped::Signaled(status),
        }
    }

    pub fn try_clone(&self) -> io::Result<Pidfd> {
        self.0.try_clone().map(Pidfd)
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn pidfd_sees_a_child_exit_and_never_signals_after() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let fd = Pidfd::open(child.id()).unwrap();
        assert!(fd.is_alive());
        fd.kill(libc::SIGKILL).unwrap();
        assert!(fd.wait(Duration::from_secs(5)).unwrap());
        assert_eq!(fd.reap(), Reaped::Signaled(libc::SIGKILL), "our child, reaped with its status");
        assert!(child.wait().is_err(), "already reaped");
        // Reaped: the pid may be reused, but the pidfd refuses to signal.
        assert_eq!(fd.kill(libc::SIGKILL).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }
}
