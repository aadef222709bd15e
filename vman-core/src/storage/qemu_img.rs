//! qemu-img, run with an argument vector and a deadline. The one place that
//! knows its command line and its JSON.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::storage::model::DiskFormat;
use crate::sys::command::{self, RunError};

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
    let done = command::run(QEMU_IMG, args, timeout).map_err(|e| match e {
        RunError::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Error::Unsupported { what: "qemu-img is not installed (apt-get install qemu-utils)".into(), source: Some(Box::new(e)) }
        }
        RunError::Spawn(e) => Error::io("run", QEMU_IMG, e),
        RunError::Wait(e) => Error::io("wait for", QEMU_IMG, e),
        RunError::TimedOut(waited) => Error::Timeout {
            what: format!("qemu-img {}", args.first().map_or("", String::as_str)),
            waited_ms: waited.as_millis() as u64,
            source: None,
        },
    })?;
    if done.status.success() {
        return Ok(done.stdout);
    }
    let message = String::from_utf8_lossy(&done.stderr).lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
    Err(Error::Qemu { message: format!("qemu-img {}: {message}", args.first().map_or("", String::as_str)), source: None })
}

/// qemu-img's version line, e.g. `qemu-img version 10.0.2 (Debian …)`.
pub(crate) fn version() -> Result<String> {
    let out = run(&["--version".to_string()], Duration::from_secs(10))?;
    Ok(String::from_utf8_lossy(&out).lines().next().unwrap_or_default().trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        let ok = std::process::Command::new(QEMU_IMG).arg("--version").output().is_ok_and(|o| o.status.success());
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
