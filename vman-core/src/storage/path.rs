//! Files callers name are checked, never trusted: an absolute path to a
//! regular file, reached through no symlink, and where vman is to use it in
//! place, inside the state directory.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Opens a caller's file for reading: absolute, no NUL, no symlink on the
/// way (the resolved path must be the path given), a regular file (not a
/// device node, FIFO or directory).
pub(crate) fn open_source(what: &'static str, path: &str) -> Result<(PathBuf, File)> {
    let given = Path::new(path);
    if !given.is_absolute() || path.contains('\0') {
        return Err(Error::invalid(what, format!("{path:?} must be an absolute path")));
    }
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK).open(given).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => Error::invalid(what, format!("{path} is a symlink; give the file it points to")),
                _ => Error::invalid_because(what, format!("{path} cannot be opened"), e),
            },
        )?;
    let meta = file.metadata().map_err(|e| Error::invalid_because(what, format!("{path} cannot be inspected"), e))?;
    if !meta.is_file() {
        return Err(Error::invalid(what, format!("{path} is not a regular file (a device node, FIFO or directory is never used)")));
    }
    let resolved = std::fs::canonicalize(given).map_err(|e| Error::invalid_because(what, format!("{path} cannot be resolved"), e))?;
    if resolved != given {
        return Err(Error::invalid(what, format!("{path} goes through a symlink (it is {}); give the real path", resolved.display())));
    }
    Ok((resolved, file))
}

/// Checks that a file used in place lies inside the state directory: the
/// operator's own place for vman's files, so vman never comes to depend on
/// (or hand QEMU) a file elsewhere on the host.
pub(crate) fn check_inside(what: &'static str, state_dir: &Path, resolved: &Path) -> Result<()> {
    let root = std::fs::canonicalize(state_dir).map_err(|e| Error::io("resolve", state_dir, e))?;
    // vman's own files are never a caller's: a disk used in place must not
    // be another disk's file, a base image, a seed or the database.
    let owned = crate::runtime::STORAGE_DIRS.iter().chain(&["run", "locks"]).any(|dir| resolved.starts_with(root.join(dir)));
    let database = resolved.parent() == Some(root.as_path())
        && resolved.file_name().is_some_and(|n| n.to_string_lossy().starts_with(crate::store::DB_FILE));
    if owned || database {
        return Err(Error::invalid(what, format!("{} is one of vman's own files; give a file of yours", resolved.display())));
    }
    if resolved.starts_with(&root) && resolved != root {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        format!(
            "{} is outside the state directory {}; copy it in, or move it under the state directory to use it in place",
            resolved.display(),
            root.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn only_real_regular_files_by_absolute_path_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.img");
        std::fs::write(&file, b"x").unwrap();
        let real = std::fs::canonicalize(&file).unwrap();
        assert!(open_source("source", real.to_str().unwrap()).is_ok());

        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let linked_dir = dir.path().join("via");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        for bad in
            ["relative.img", "/dev/null", "/tmp", &format!("{}/link.img", dir.path().display()), &format!("{}/f.img", linked_dir.display())]
        {
            let err = open_source("source", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
        }
    }

    #[test]
    fn in_place_files_must_be_under_the_state_directory() {
        let state = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(state.path()).unwrap();
        assert!(check_inside("source", state.path(), &root.join("import/a.img")).is_ok());
        assert_eq!(check_inside("source", state.path(), Path::new("/etc/passwd")).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(check_inside("source", state.path(), &root).unwrap_err().kind(), ErrorKind::InvalidArgument);
        for own in ["images/1.qcow2", "disks/2.qcow2", "seeds/x.img", "vman.db", "vman.db-wal"] {
            assert_eq!(check_inside("source", state.path(), &root.join(own)).unwrap_err().kind(), ErrorKind::InvalidArgument, "{own}");
        }
    }
}
