//! Disks: create, import, list, resize and delete. Each change records its
//! intent, does the host work (qemu-img, a copy, an unlink) outside any
//! transaction, then records the outcome; the reconciler finishes or undoes
//! an intent a crash left behind.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::name::validate_name;
use crate::storage::model::{Disk, DiskFilter, DiskFormat, DiskSpec, DiskState, ImportSpec, check_size};
use crate::storage::{path, qemu_img};
use crate::store::{self, NewDisk};

/// Where vman keeps the file of disk `id`.
pub(crate) fn disk_file(ctx: &Inner, id: i64, format: DiskFormat) -> PathBuf {
    ctx.state_dir().join("disks").join(format!("{id}.{}", format.as_str()))
}

/// A file's size the way a guest sees it, checked against the formats vman
/// handles: a probed image that names a backing file is refused, since
/// opening it would make vman (and QEMU) read whatever file it names.
pub(crate) fn inspect_source(what: &'static str, source: &Path, format: Option<DiskFormat>) -> Result<(DiskFormat, u64)> {
    let info = qemu_img::info(source, format, false).map_err(|e| Error::InvalidArgument {
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
    if info.virtual_size == 0 || info.virtual_size % 512 != 0 {
        return Err(Error::invalid(
            what,
            format!("{} has a size of {} bytes (needs a positive multiple of 512)", source.display(), info.virtual_size),
        ));
    }
    Ok((found, info.virtual_size))
}

/// Removes a disk row whose file could not be made, and the partial file.
fn undo_create(ctx: &Inner, id: i64, file: Option<&Path>) {
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
    let id = store::insert_disk(
        tx,
        &NewDisk {
            name: &name,
            format: DiskFormat::Qcow2,
            size_bytes: size,
            path: "",
            owned: true,
            image_id: image.map(|i| i.id),
            state: DiskState::Creating,
            vm: Some((vm_id, 0)),
            delete_with_vm: true,
        },
        store::now_ms(),
    )?;
    store::set_disk_path(tx, id, &disk_file(ctx, id, DiskFormat::Qcow2).to_string_lossy())?;
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

fn disk_details(disk: &Disk) -> serde_json::Value {
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

fn not_found(name: &str) -> Error {
    Error::not_found("disk", name)
}

impl Manager {
    /// Creates an empty disk under the state directory.
    pub fn create_disk(&self, spec: &DiskSpec) -> Result<Disk> {
        spec.validate()?;
        let ctx = &*self.inner;
        let (id, file) = ctx.store().write(|tx| {
            let id = store::insert_disk(
                tx,
                &NewDisk {
                    name: &spec.name,
                    format: spec.format,
                    size_bytes: spec.size_bytes,
                    path: "",
                    owned: true,
                    image_id: None,
                    state: DiskState::Creating,
                    vm: None,
                    delete_with_vm: false,
                },
                store::now_ms(),
            )?;
            let file = disk_file(ctx, id, spec.format);
            store::set_disk_path(tx, id, &file.to_string_lossy())?;
            Ok((id, file))
        })?;
        let made = qemu_img::create(&file, spec.format, spec.size_bytes, None).and_then(|()| ctx.runtime().share_with_qemu(&file, true));
        if let Err(e) = made {
            undo_create(ctx, id, Some(&file));
            return Err(e);
        }
        finish_create(ctx, id, DiskState::Available, None)
    }

    /// Makes a disk of an existing image file: copied into the state
    /// directory, or (with [`ImportSpec::in_place`]) used where it is, which
    /// must be inside the state directory.
    pub fn import_disk(&self, spec: &ImportSpec) -> Result<Disk> {
        validate_name("disk name", &spec.name)?;
        let ctx = &*self.inner;
        let (source, mut source_file) = path::open_source("disk source", &spec.source)?;
        if !spec.copy {
            path::check_inside("disk source", ctx.state_dir(), &source)?;
        }
        let (format, size) = inspect_source("disk source", &source, spec.format)?;
        check_size(size)?;
        let (id, file) = ctx.store().write(|tx| {
            let id = store::insert_disk(
                tx,
                &NewDisk {
                    name: &spec.name,
                    format,
                    size_bytes: size,
                    path: "",
                    owned: spec.copy,
                    image_id: None,
                    state: DiskState::Creating,
                    vm: None,
                    delete_with_vm: false,
                },
                store::now_ms(),
            )?;
            let file = if spec.copy { disk_file(ctx, id, format) } else { source.clone() };
            store::set_disk_path(tx, id, &file.to_string_lossy())?;
            Ok((id, file))
        })?;
        let taken = if spec.copy { copy_file(&mut source_file, &file).map(drop) } else { Ok(()) }
            .and_then(|()| ctx.runtime().share_with_qemu(&file, true));
        if let Err(e) = taken {
            undo_create(ctx, id, spec.copy.then_some(file.as_path()));
            return Err(e);
        }
        finish_create(ctx, id, DiskState::Available, None)
    }

    /// The disk named `name`.
    pub fn disk(&self, name: &str) -> Result<Disk> {
        self.inner.store().read(|tx| store::disk_by_name(tx, name)?.ok_or_else(|| not_found(name)))
    }

    /// Disks matching `filter`, by name.
    pub fn disks(&self, filter: &DiskFilter) -> Result<Vec<Disk>> {
        if let Some(vm) = &filter.vm {
            self.inner.vm(vm)?;
        }
        self.inner.store().read(|tx| store::list_disks(tx, filter))
    }

    /// Deletes a disk that is not attached, and its file if vman owns it
    /// (a file used in place is left where it was).
    pub fn delete_disk(&self, name: &str) -> Result<()> {
        let ctx = &*self.inner;
        let disk = ctx.store().write(|tx| {
            let disk = store::disk_by_name(tx, name)?.ok_or_else(|| not_found(name))?;
            if !matches!(disk.state, DiskState::Available | DiskState::Error) || disk.vm_id.is_some() {
                return Err(Error::DiskState {
                    disk: disk.name,
                    state: disk.state,
                    vm: disk.vm,
                    action: "delete",
                    needs: "a disk attached to no VM (detach it first)",
                });
            }
            store::set_disk_state(tx, disk.id, disk.state, DiskState::Deleting, None, "")?;
            Ok(disk)
        })?;
        finish_delete(ctx, &disk)
    }

    /// Changes a disk's size. Growing is always allowed; shrinking cuts
    /// off the guest's data past the new end, so it needs `force`. A disk
    /// attached to a running VM is grown live (QMP `block_resize`), never
    /// shrunk.
    pub fn resize_disk(&self, name: &str, size_bytes: u64, force: bool) -> Result<Disk> {
        check_size(size_bytes)?;
        let ctx = &*self.inner;
        let disk = self.disk(name)?;
        // An attached disk changes only under its VM's lock: QEMU may have it open.
        let locked = match &disk.vm {
            Some(vm) => Some(crate::vm::lifecycle::lock_vm(ctx, vm)?),
            None => None,
        };
        let disk = ctx.store().read(|tx| store::disk_by_id(tx, disk.id)?.ok_or_else(|| not_found(name)))?;
        if !matches!(disk.state, DiskState::Available | DiskState::Attached) {
            return Err(Error::DiskState {
                disk: disk.name,
                state: disk.state,
                vm: disk.vm,
                action: "resize",
                needs: "an available or attached disk",
            });
        }
        if size_bytes < disk.size_bytes && !force {
            return Err(Error::invalid(
                "disk size",
                format!(
                    "{size_bytes} bytes is smaller than the disk's {} bytes; shrinking loses data past the new end, so it needs force",
                    disk.size_bytes
                ),
            ));
        }
        if size_bytes == disk.size_bytes {
            return Ok(disk);
        }
        let running = match &locked {
            Some((_, vm)) if vm.state.has_process() => Some(vm.clone()),
            _ => None,
        };
        match running {
            Some(vm) => {
                if size_bytes < disk.size_bytes {
                    return Err(Error::Unsupported {
                        what: format!(
                            "shrinking disk {:?} while VM {:?} runs (the guest's filesystem would be cut under it); stop the VM first",
                            disk.name, vm.name
                        ),
                        source: None,
                    });
                }
                crate::storage::hotplug::block_resize(ctx, &vm, &disk, size_bytes)?;
            }
            None => qemu_img::resize(Path::new(&disk.path), disk.format, size_bytes, size_bytes < disk.size_bytes)?,
        }
        ctx.write(|w| {
            store::set_disk_size(w.tx, disk.id, size_bytes)?;
            w.record(ObjectKind::Disk, &disk.id.to_string(), &disk.name, "resized", json!({"from": disk.size_bytes, "to": size_bytes}))?;
            store::disk_by_id(w.tx, disk.id)?.ok_or_else(|| not_found(name))
        })
    }
}

/// In a VM's delete transaction: its own disks (made with it) become
/// `deleting` and are returned; the others are detached and stay.
pub(crate) fn release_disks_of(tx: &store::Tx<'_>, vm: &crate::Vm) -> Result<Vec<Disk>> {
    let mut doomed = Vec::new();
    store::delete_snapshots_of(tx, &vm.id)?;
    for disk in store::disks_of_vm(tx, &vm.id)? {
        let to = if disk.delete_with_vm { DiskState::Deleting } else { DiskState::Available };
        store::set_disk_state(tx, disk.id, disk.state, to, None, "")?;
        if disk.delete_with_vm {
            doomed.push(Disk { state: DiskState::Deleting, vm: None, vm_id: None, slot: None, ..disk });
        }
    }
    Ok(doomed)
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
    use std::io::{Read, Write};
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(|e| Error::io("read", dest, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::io("write", dest, e))?;
    }
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
