//! Disks: create, import, list, resize and delete. Each change records its
//! intent, does the host work (qemu-img, a copy, an unlink) outside any
//! transaction, then records the outcome; the reconciler finishes or undoes
//! an intent a crash left behind.

use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::name::validate_name;
use crate::storage::model::{Disk, DiskFilter, DiskSpec, DiskState, ImportSpec, check_size};
use crate::storage::ops::{copy_file, finish_create, finish_delete, inspect_source, record_creating, undo_create};
use crate::storage::{path, qemu_img};
use crate::store::{self, NewDisk};

fn not_found(name: &str) -> Error {
    Error::not_found("disk", name)
}

impl Manager {
    /// Creates an empty disk under the state directory.
    pub fn create_disk(&self, spec: &DiskSpec) -> Result<Disk> {
        spec.validate()?;
        let ctx = &*self.inner;
        let disk = NewDisk {
            name: &spec.name,
            format: spec.format,
            size_bytes: spec.size_bytes,
            path: "",
            owned: true,
            image_id: None,
            state: DiskState::Creating,
            vm: None,
            delete_with_vm: false,
        };
        let (id, file) = ctx.store().write(|tx| record_creating(ctx, tx, disk, None))?;
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
        let (format, size) = inspect_source("disk source", &source, &source_file, spec.format)?;
        check_size(size)?;
        let disk = NewDisk {
            name: &spec.name,
            format,
            size_bytes: size,
            path: "",
            owned: spec.copy,
            image_id: None,
            state: DiskState::Creating,
            vm: None,
            delete_with_vm: false,
        };
        let (id, file) = ctx.store().write(|tx| record_creating(ctx, tx, disk, (!spec.copy).then_some(source.as_path())))?;
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
