//! The steps of disk operations that other domains share (VM create and
//! delete, the reconciler): making, recording and removing disk files.
//! Each records its intent before host work and its outcome after.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::storage::model::{Disk, DiskFormat, DiskState};
use crate::storage::qemu_img;
use crate::store::{self, NewDisk};

/// Where vman keeps the file of disk `id`.
pub(crate) fn disk_file(ctx: &Inner, id: i64, format: DiskFormat) -> PathBuf {
    ctx.state_dir().join("disks").join(format!("{id}.{}", format.as_str()))
}

/// Records a disk as `creating`, its file named after its id under
/// `disks/` (or `in_place`, a caller's file); returns the id and the file.
pub(crate) fn record_creating(ctx: &Inner, tx: &store::Tx<'_>, disk: NewDisk<'_>, in_place: Option<&Path>) -> Result<(i64, PathBuf)> {
    if let Some(file) = in_place
        && let Some(user) = store::file_user(tx, &file.to_string_lossy())?
    {
        return Err(Error::AlreadyExists { kind: "disk or image", field: "file", value: format!("{} (used by {user})", file.display()) });
    }
    let id = store::insert_disk(tx, &NewDisk { path: "", state: DiskState::Creating, ..disk }, store::now_ms())?;
    let file = in_place.map_or_else(|| disk_file(ctx, id, disk.format), Path::to_path_buf);
    store::set_disk_path(tx, id, &file.to_string_lossy())?;
    Ok((id, file))
}

/// A file's size the way a guest sees it, checked against the formats vman
/// handles: a probed image that names a backing file is refused, since
/// opening it would make vman (and QEMU) read whatever file it names.
pub(crate) fn inspect_source(
    what: &'static str,
    source: &Path,
    file: &std::fs::File,
    format: Option<DiskFormat>,
) -> Result<(DiskFormat, u64)> {
    // qemu-img reads the file vman opened and will copy (through our
    // descriptor), not the path again: a file swapped in between is not
    // the one checked.
    use std::os::fd::AsRawFd;
    let opened = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()));
    let info = qemu_img::info(&opened, format, false).map_err(|e| Error::InvalidArgument {
        what,
        reason: format!("{} is not a readable disk image", source.display()),
        source: Some(Box::new(e)),
    })?;
    let found: DiskFormat = info
        .format
        .parse()
        .map_err(|_| Error::invalid(what, format!("{} is a {} image; vman takes qcow2 and raw", source.display(), info.format)))?;
    if let Some(backing) = info.backing_file {
        return Err(Error::invalid(
            what,
            format!("{} has a backing file ({backing}); flatten it first (qemu-img convert)", source.display()),
        ));
    }
    // Its clusters would live in another file, which vman (as root) and
    // QEMU would then read and write: any file on the host.
    if let Some(data_file) = info.data_file {
        return Err(Error::invalid(
            what,
            format!("{} keeps its data in another file ({data_file}); convert it first (qemu-img convert)", source.display()),
        ));
    }
    if info.virtual_size == 0 || info.virtual_size % 512 != 0 {
        return Err(Error::invalid(
            what,
            format!("{} has a size of {} bytes (needs a positive multiple of 512)", source.display(), info.virtual_size),
        ));
    }
    Ok((found, info.virtual_size))
}

/// Removes a disk row whose file could not be made, and the partial file.
pub(crate) fn undo_create(ctx: &Inner, id: i64, file: Option<&Path>) {
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
    if let Err(e) = ctx.store().write(|tx| store::delete_disk_row(tx, id)) {
        log::warn!("cannot remove the record of disk {id} after a failed create (the reconciler will): {e}");
    }
}

/// The name of a VM's boot disk.
pub(crate) fn boot_disk_name(vm_name: &str) -> String {
    format!("{vm_name}.boot")
}

/// Records (as `creating`, at slot 0, deleted with the VM) the boot disk
/// of a VM being created: a linked clone of `image` or a blank disk, of
/// the template's size.
pub(crate) fn record_boot_disk(
    ctx: &Inner,
    tx: &store::Tx<'_>,
    vm_id: &str,
    vm_name: &str,
    template: &crate::Template,
    image: Option<&crate::Image>,
) -> Result<Disk> {
    let size = template.disk_gib * crate::storage::model::GIB;
    if let Some(image) = image
        && image.virtual_size > size
    {
        return Err(Error::invalid(
            "template",
            format!(
                "template {:?} gives {} GiB of disk, less than image {:?} needs ({} bytes)",
                template.name, template.disk_gib, image.name, image.virtual_size
            ),
        ));
    }
    let name = boot_disk_name(vm_name);
    let disk = NewDisk {
        name: &name,
        format: DiskFormat::Qcow2,
        size_bytes: size,
        path: "",
        owned: true,
        image_id: image.map(|i| i.id),
        state: DiskState::Creating,
        vm: Some((vm_id, 0)),
        delete_with_vm: true,
    };
    let (id, _) = record_creating(ctx, tx, disk, None)?;
    store::disk_by_id(tx, id)?.ok_or_else(|| Error::Internal("boot disk vanished while created".into()))
}

/// Makes the file of a boot disk recorded `creating`: a qcow2 overlay on
/// its image, or blank. Idempotent, so the reconciler can finish it.
pub(crate) fn make_boot_disk(ctx: &Inner, disk: &Disk) -> Result<()> {
    let backing = match &disk.image {
        Some(name) => {
            let image = ctx.store().read(|tx| store::image_by_name(tx, name))?.ok_or_else(|| Error::not_found("image", name))?;
            Some((PathBuf::from(image.path), image.format))
        }
        None => None,
    };
    let file = Path::new(&disk.path);
    let _ = std::fs::remove_file(file); // a partial file from a crash
    qemu_img::create(file, disk.format, disk.size_bytes, backing.as_ref().map(|(p, f)| (p.as_path(), *f)))?;
    ctx.runtime().share_with_qemu(file, true)
}

/// Takes back a VM whose boot disk could not be made: the disk's file and
/// record, the VM's addresses and the VM itself.
pub(crate) fn undo_vm_create(ctx: &Inner, vm: &crate::Vm, disk: &Disk) {
    let _ = std::fs::remove_file(&disk.path);
    let undone = ctx.write(|w| {
        store::delete_disk_row(w.tx, disk.id)?;
        store::soft_delete_vm(w.tx, vm, w.now)?;
        w.record(ObjectKind::Vm, &vm.id, &vm.name, "deleted", json!({"reason": "its boot disk could not be made"}))
    });
    if let Err(e) = undone {
        log::warn!("cannot take back VM {:?} after its boot disk failed (the reconciler will): {e}", vm.name);
    }
}

pub(crate) fn disk_details(disk: &Disk) -> serde_json::Value {
    json!({"format": disk.format.as_str(), "size_bytes": disk.size_bytes, "path": disk.path, "image": disk.image, "vm": disk.vm})
}

/// Records a created disk (`creating` → `to`) and its event.
pub(crate) fn finish_create(ctx: &Inner, id: i64, to: DiskState, vm: Option<(&str, u32)>) -> Result<Disk> {
    ctx.write(|w| {
        store::set_disk_state(w.tx, id, DiskState::Creating, to, vm, "")?;
        let disk = store::disk_by_id(w.tx, id)?.ok_or_else(|| Error::Internal(format!("disk {id} vanished while created")))?;
        w.record(ObjectKind::Disk, &disk.id.to_string(), &disk.name, "created", disk_details(&disk))?;
        Ok(disk)
    })
}

/// What a VM's delete does to its disks: its own go, the others stay
/// (detached), and the VM's snapshot tags come off the ones that stay.
#[derive(Debug, Default)]
pub(crate) struct Released {
    pub doomed: Vec<Disk>,
    pub kept: Vec<Disk>,
    pub snapshot_tags: Vec<String>,
}

/// In a VM's delete transaction: its own disks (made with it) become
/// `deleting`; the others are detached (with an event each) and stay.
pub(crate) fn release_disks_of(w: &mut crate::context::Write<'_>, vm: &crate::Vm) -> Result<Released> {
    let mut released =
        Released { snapshot_tags: store::snapshots_of(w.tx, &vm.id)?.into_iter().map(|s| s.name).collect(), ..Released::default() };
    store::delete_snapshots_of(w.tx, &vm.id)?;
    for disk in store::disks_of_vm(w.tx, &vm.id)? {
        let to = if disk.delete_with_vm { DiskState::Deleting } else { DiskState::Available };
        store::set_disk_state(w.tx, disk.id, disk.state, to, None, "")?;
        let freed = Disk { state: to, vm: None, vm_id: None, slot: None, ..disk };
        if freed.delete_with_vm {
            released.doomed.push(freed);
        } else {
            let details = serde_json::json!({"vm": vm.name, "by": "the VM's delete"});
            w.record(ObjectKind::Disk, &freed.id.to_string(), &freed.name, "detached", details)?;
            released.kept.push(freed);
        }
    }
    Ok(released)
}

/// Removes a `deleting` disk's file (if vman owns it), then its record.
pub(crate) fn finish_delete(ctx: &Inner, disk: &Disk) -> Result<()> {
    if disk.owned {
        match std::fs::remove_file(&disk.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove disk file", &disk.path, e)),
        }
    }
    ctx.write(|w| {
        store::delete_disk_row(w.tx, disk.id)?;
        w.record(ObjectKind::Disk, &disk.id.to_string(), &disk.name, "deleted", json!({"path": disk.path, "file_removed": disk.owned}))
    })
}

/// Copies `source` to a new file `dest` (flushed to disk), returning the
/// file's SHA-256 as it was read.
pub(crate) fn copy_file(source: &mut std::fs::File, dest: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = source.read(&mut buf).map_err(|e| Error::io("read", dest, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        // Zeros are skipped, not written: a sparse image stays sparse.
        if buf[..n].iter().all(|&b| b == 0) {
            out.seek(SeekFrom::Current(n as i64)).map_err(|e| Error::io("write", dest, e))?;
        } else {
            out.write_all(&buf[..n]).map_err(|e| Error::io("write", dest, e))?;
        }
        length += n as u64;
    }
    out.set_len(length).map_err(|e| Error::io("write", dest, e))?;
    out.sync_all().map_err(|e| Error::io("flush", dest, e))?;
    Ok(hex(&hash.finalize()))
}

/// The SHA-256 of a file read from its start.
pub(crate) fn hash_file(source: &mut std::fs::File, path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The disks that hold a snapshot named `tag` (read without taking
/// QEMU's lock, so it works on a running VM's disks too).
pub(crate) fn disks_with_tag(disks: &[Disk], tag: &str) -> Result<Vec<Disk>> {
    let mut holding = Vec::new();
    for disk in disks {
        if qemu_img::info(Path::new(&disk.path), Some(disk.format), true)?.snapshots.iter().any(|s| s == tag) {
            holding.push(disk.clone());
        }
    }
    Ok(holding)
}

/// Removes a snapshot tag from each disk that has it (a crash may have
/// left it on some disks only).
pub(crate) fn remove_tags(disks: &[Disk], tag: &str) -> Result<()> {
    for disk in disks {
        let info = qemu_img::info(Path::new(&disk.path), Some(disk.format), true)?;
        if info.snapshots.iter().any(|s| s == tag) {
            qemu_img::snapshot(Path::new(&disk.path), qemu_img::SnapshotOp::Delete, tag)?;
        }
    }
    Ok(())
}
