//! Where one VM's QEMU keeps its files: `<state>/run/<16 hex>/`.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::proc;

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
    /// The VNC server's socket when the VM's display is `vnc-unix`.
    pub vnc: PathBuf,
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
            vnc: dir.join("vnc.sock"),
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
                format!(
                    "its socket paths are {longest} bytes, over the {MAX_SOCKET_PATH}-byte limit of unix sockets; use a shorter state directory"
                ),
            ));
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|e| Error::io("create run directory", &self.dir, e))?;
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

    /// The pid QEMU wrote, if the pidfile exists and names a plausible pid
    /// (QEMU's user owns the file, so it is read with care).
    pub fn read_pid(&self) -> Option<u32> {
        proc::read_pidfile(&self.pidfile)
    }

    /// Removes the per-run files, keeping the serial log.
    pub fn clean(&self) {
        for f in [&self.pidfile, &self.qmp, &self.serial_sock, &self.stderr] {
            let _ = fs::remove_file(f);
        }
    }
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
}
