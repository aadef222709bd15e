//! Running a helper program to completion with a deadline: an argument
//! vector, no shell, both pipes drained, a pidfd to wait on. qemu-img and
//! the host health checks use it.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::pidfd::Pidfd;

/// A program that ran to its end.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a program did not run to its end.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started (`NotFound`: no such program).
    Spawn(io::Error),
    /// Waiting for it failed.
    Wait(io::Error),
    /// It outlived the deadline and was killed.
    TimedOut(Duration),
}

/// Runs `program` with `args`, stdin from /dev/null, and waits at most
/// `timeout` for it to exit (it is killed after that).
pub(crate) fn run(program: impl AsRef<OsStr>, args: &[impl AsRef<OsStr>], timeout: Duration) -> Result<Finished, RunError> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // The program dies with the embedder: qemu-img's work is an intent's
    // act, and the reconciler settles the intent once the embedder is gone,
    // which it must not do while a qemu-img the embedder left still writes.
    // SIGKILL comes when the spawning thread ends, which waits for it below;
    // a parent that died before the prctl is caught by the getppid check.
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (prctl, getppid) on a value
    // copied before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    // Both pipes are read by threads so a chatty program never blocks on a
    // full pipe while we wait for it.
    let mut stdout = child.stdout.take().map(|mut s| std::thread::spawn(move || read_all(&mut s)));
    let mut stderr = child.stderr.take().map(|mut s| std::thread::spawn(move || read_all(&mut s)));
    let started = Instant::now();
    let exited = match Pidfd::open(child.id()) {
        Ok(pidfd) => pidfd.wait(timeout).map_err(RunError::Wait)?,
        // No pidfd (an old kernel, or valgrind): poll our own child.
        Err(_) => loop {
            match child.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => break false,
                Err(e) => return Err(RunError::Wait(e)),
            }
        },
    };
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return Err(RunError::TimedOut(started.elapsed()));
    }
    let status = child.wait().map_err(RunError::Wait)?;
    let stdout = stdout.take().and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(Finished { status, stdout, stderr })
}

fn read_all(r: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_status_and_deadline() {
        let done = run("sh", &["-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(10)).unwrap();
        assert_eq!((done.status.code(), done.stdout.as_slice(), done.stderr.as_slice()), (Some(3), &b"out\n"[..], &b"err\n"[..]));
        assert!(matches!(run("sleep", &["10"], Duration::from_millis(50)), Err(RunError::TimedOut(_))));
        let missing = run("/nonexistent/program", &[] as &[&str], Duration::from_secs(1));
        assert!(matches!(missing, Err(RunError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound));
    }
}
