//! qemu-img, run with an argument vector and a deadline. The one place that
//! knows its command line and its JSON.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::storage::model::DiskFormat;
use crate::sys::pidfd::Pidfd;

const QEMU_IMG: &str = "qemu-img";

/// Metadata operations (create, info, resize, snapshots) touch headers
/// only; a minute means the host is in trouble.
pub(crate) const META_TIMEOUT: Duration = Duration::from_secs(60);

/// What `qemu-img info` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    pub format: String,
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    /// A qcow2's external data file: another file its clusters live in.
    pub data_file: Option<String>,
    pub snapshots: Vec<String>,
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(default)]
    snapshots: Vec<RawSnapshot>,
    #[serde(rename = "format-specific")]
    format_specific: Option<FormatSpecific>,
}

#[derive(Deserialize)]
struct FormatSpecific {
    #[serde(default)]
    data: Option<FormatData>,
}

#[derive(Deserialize)]
struct FormatData {
    #[serde(rename = "data-file")]
    data_file: Option<String>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    name: String,
}

/// Makes an empty image, or (with `backing`) a qcow2 overlay on a base image.
pub(crate) fn create(path: &Path, format: DiskFormat, size_bytes: u64, backing: Option<(&Path, DiskFormat)>) -> Result<()> {
    let mut args: Vec<String> = vec!["create".into(), "-q".into(), "-f".into(), format.as_str().into()];
    if let Some((base, base_format)) = backing {
        args.extend(["-F".into(), base_format.as_str().into(), "-b".into(), base.to_string_lossy().into_owned()]);
    }
    if format == DiskFormat::Raw {
        // Sparse: a raw disk costs the blocks the guest writes, like qcow2.
        args.extend(["-o".into(), "preallocation=off".into()]);
    }
    args.extend([path.to_string_lossy().into_owned(), size_bytes.to_string()]);
    run(&args, META_TIMEOUT).map(drop)
}

/// Reads a file's header. `format: None` probes it; `shared`: the file may
/// be open in a running QEMU (`-U`, read without taking its lock).
pub(crate) fn info(path: &Path, format: Option<DiskFormat>, shared: bool) -> Result<Info> {
    let mut args: Vec<String> = vec!["info".into(), "--output=json".into()];
    if let Some(format) = format {
        args.extend(["-f".into(), format.as_str().into()]);
    }
    if shared {
        args.push("-U".into());
    }
    args.push(path.to_string_lossy().into_owned());
    let out = run(&args, META_TIMEOUT)?;
    let raw: RawInfo = serde_json::from_slice(&out)
        .map_err(|e| Error::Qemu { message: "qemu-img info printed JSON vman cannot read".into(), source: Some(Box::new(e)) })?;
    Ok(Info {
        format: raw.format,
        virtual_size: raw.virtual_size,
        backing_file: raw.backing_filename,
        data_file: raw.format_specific.and_then(|f| f.data).and_then(|d| d.data_file),
        snapshots: raw.snapshots.into_iter().map(|s| s.name).collect(),
    })
}

/// Changes a stopped disk's size; `shrink` must be said to cut it.
pub(crate) fn resize(path: &Path, format: DiskFormat, size_bytes: u64, shrink: bool) -> Result<()> {
    let mut args: Vec<String> = vec!["resize".into(), "-q".into(), "-f".into(), format.as_str().into()];
    if shrink {
        args.push("--shrink".into());
    }
    args.extend([path.to_string_lossy().into_owned(), size_bytes.to_string()]);
    run(&args, META_TIMEOUT).map(drop)
}

/// What an internal-snapshot operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotOp {
    Create,
    Apply,
    Delete,
}

/// An internal snapshot operation on a stopped qcow2 file.
pub(crate) fn snapshot(path: &Path, op: SnapshotOp, tag: &str) -> Result<()> {
    let flag = match op {
        SnapshotOp::Create => "-c",
        SnapshotOp::Apply => "-a",
        SnapshotOp::Delete => "-d",
    };
    let args: Vec<String> =
        vec!["snapshot".into(), "-q".into(), "-f".into(), "qcow2".into(), flag.into(), tag.into(), path.to_string_lossy().into_owned()];
    run(&args, META_TIMEOUT).map(drop)
}

/// Runs qemu-img; its stdout on success. Fails with its stderr as the
/// message, or with a timeout (the process is then killed).
fn run(args: &[String], timeout: Duration) -> Result<Vec<u8>> {
    log::debug!("qemu-img {}", args.join(" "));
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(QEMU_IMG);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // qemu-img dies with the embedder: its work is an intent's act, and the
    // reconciler settles the intent once the embedder is gone, which it must
    // not do while a qemu-img the embedder left still writes. SIGKILL comes
    // when the spawning thread ends, which waits for it below; a parent
    // that died before the prctl is caught by the getppid check.
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (prctl, getppid) on a value
    // copied before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Unsupported { what: "qemu-img is not installed (apt-get install qemu-utils)".into(), source: Some(Box::new(e)) }
        }
        _ => Error::io("run", QEMU_IMG, e),
    })?;
    // Both pipes are read by threads so a chatty qemu-img never blocks on a
    // full pipe while we wait for it.
    let mut stdout = child.stdout.take().map(|mut s| std::thread::spawn(move || read_all(&mut s)));
    let mut stderr = child.stderr.take().map(|mut s| std::thread::spawn(move || read_all(&mut s)));
    let started = Instant::now();
    let exited = match Pidfd::open(child.id()) {
        Ok(pidfd) => pidfd.wait(timeout).map_err(|e| Error::io("wait for", QEMU_IMG, e))?,
        // No pidfd (an old kernel, or valgrind): poll our own child.
        Err(_) => loop {
            match child.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => break false,
                Err(e) => return Err(Error::io("wait for", QEMU_IMG, e)),
            }
        },
    };
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Timeout {
            what: format!("qemu-img {}", args.first().map_or("", String::as_str)),
            waited_ms: started.elapsed().as_millis() as u64,
            source: None,
        });
    }
    let status = child.wait().map_err(|e| Error::io("wait for", QEMU_IMG, e))?;
    let out = stdout.take().and_then(|t| t.join().ok()).unwrap_or_default();
    let err = stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let message = String::from_utf8_lossy(&err).lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
    Err(Error::Qemu { message: format!("qemu-img {}: {message}", args.first().map_or("", String::as_str)), source: None })
}

fn read_all(r: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        let ok = Command::new(QEMU_IMG).arg("--version").output().is_ok_and(|o| o.status.success());
        if !ok {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "qemu-img must be installed under CI (scripts/setup)");
            eprintln!("skipping: qemu-img is not installed (run scripts/setup)");
        }
        ok
    }

    #[test]
    fn an_overlay_names_its_base_and_has_its_own_size() {
        if !have_qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let overlay = dir.path().join("overlay.qcow2");
        create(&base, DiskFormat::Qcow2, 64 << 20, None).unwrap();
        create(&overlay, DiskFormat::Qcow2, 128 << 20, Some((&base, DiskFormat::Qcow2))).unwrap();
        let info = info(&overlay, Some(DiskFormat::Qcow2), false).unwrap();
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.virtual_size, 128 << 20);
        assert_eq!(info.backing_file.as_deref(), Some(base.to_str().unwrap()));
    }

    #[test]
    fn resize_grows_and_refuses_to_shrink_unless_told() {
        if !have_qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.qcow2");
        create(&disk, DiskFormat::Qcow2, 64 << 20, None).unwrap();
        resize(&disk, DiskFormat::Qcow2, 96 << 20, false).unwrap();
        assert_eq!(info(&disk, None, false).unwrap().virtual_size, 96 << 20);
        let err = resize(&disk, DiskFormat::Qcow2, 32 << 20, false).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Qemu, "{err}");
        resize(&disk, DiskFormat::Qcow2, 32 << 20, true).unwrap();
        assert_eq!(info(&disk, None, false).unwrap().virtual_size, 32 << 20);
    }

    #[test]
    fn snapshots_are_listed_applied_and_deleted() {
        if !have_qemu_img() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.qcow2");
        create(&disk, DiskFormat::Qcow2, 1 << 20, None).unwrap();
        snapshot(&disk, SnapshotOp::Create, "one").unwrap();
        assert_eq!(info(&disk, None, false).unwrap().snapshots, vec!["one".to_string()]);
        snapshot(&disk, SnapshotOp::Apply, "one").unwrap();
        snapshot(&disk, SnapshotOp::Delete, "one").unwrap();
        assert!(info(&disk, None, false).unwrap().snapshots.is_empty());
        assert_eq!(snapshot(&disk, SnapshotOp::Apply, "none").unwrap_err().kind(), crate::ErrorKind::Qemu);
    }
}
