//! What `/proc` says about other processes: their command lines, the pid in
//! a pidfile, proof that a pid is a given program before it is signalled,
//! and who holds a file open. The one implementation QEMU's and dnsmasq's
//! supervision share.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use super::pidfd::Pidfd;

/// `/proc/<pid>/cmdline` as its arguments; `None` once the process is gone
/// (a zombie's is empty).
pub(crate) fn cmdline(pid: u32) -> Option<Vec<OsString>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(split_cmdline(&bytes))
}

/// NUL-terminated arguments, as `/proc/<pid>/cmdline` holds them.
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<OsString> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|a| OsString::from_vec(a.to_vec())).collect()
}

/// The pid a pidfile names. Such files may belong to an unprivileged
/// process (QEMU's user, dnsmasq's), so neither size nor content is
/// trusted: at most 32 bytes are read, and only a plausible pid is believed.
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.take(32).read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    (pid > 1 && pid <= i32::MAX as u32).then_some(pid)
}

/// A pidfd on `pid` if its command line satisfies `is_it`: checked once
/// cheaply, then again after the pidfd pins the process, which must still
/// be alive, so the answer is about the process the pidfd holds and never
/// about a successor that reused the pid. Returns the arguments seen.
pub(crate) fn prove(pid: u32, is_it: impl Fn(&[OsString]) -> bool) -> Option<(Pidfd, Vec<OsString>)> {
    if !is_it(&cmdline(pid)?) {
        return None;
    }
    let pidfd = Pidfd::open(pid).ok()?;
    let args = cmdline(pid)?;
    (is_it(&args) && pidfd.is_alive()).then_some((pidfd, args))
}

/// The processes (other than this one) holding `path` open, found through
/// `/proc/*/fd`. Scans every process, so it is for recovery, never a hot
/// path; re-check through a pidfd before acting on one.
pub(crate) fn holders(path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(file) = fs::metadata(path) else { return Vec::new() };
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| fs::metadata(fd.path()).is_ok_and(|m| m.dev() == file.dev() && m.ino() == file.ino()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfiles_are_not_trusted_beyond_a_small_plausible_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        for (content, want) in [("1234\n", Some(1234)), ("1", None), ("0", None), ("-5", None), ("99999999999", None), ("x", None)] {
            fs::write(&path, content).unwrap();
            assert_eq!(read_pidfile(&path), want, "{content:?}");
        }
        // A huge file is read no further than 32 bytes.
        fs::write(&path, format!("12{}", " ".repeat(1 << 20))).unwrap();
        assert_eq!(read_pidfile(&path), Some(12));
        assert_eq!(read_pidfile(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_process_is_proven_by_its_command_line_and_only_while_alive() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        // Until the child has exec'd, its command line is this test's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cmdline(pid).is_none_or(|a| a.first().is_none_or(|a0| a0 != "sleep")) {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::yield_now();
        }
        let is_sleep_abc = |args: &[OsString]| args.len() == 2 && args[0] == "sleep" && args[1] == "30";
        assert!(prove(pid, is_sleep_abc).is_some());
        assert!(prove(pid, |args: &[OsString]| args[0] == "qemu-system-x86_64").is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(prove(pid, is_sleep_abc).is_none(), "a dead process proves nothing");
    }

    #[test]
    fn holders_are_the_processes_with_the_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = File::create(&path).unwrap();
        // A child that inherits the descriptor holds it; this process is
        // never listed.
        let mut child = std::process::Command::new("sleep").arg("30").stdin(file).spawn().unwrap();
        assert_eq!(holders(&path), vec![child.id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(holders(&path).is_empty());
    }
}
