//! The image catalogue (EC2's AMIs, OpenStack's Glance): base images that
//! VMs boot from through linked clones. A registered image's file is never
//! written again.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::storage::model::{Image, ImageSpec};
use crate::storage::ops::{copy_file, hash_file, inspect_source};
use crate::storage::path;
use crate::store;

fn image_file(ctx: &Inner, id: i64, format: crate::DiskFormat) -> PathBuf {
    ctx.state_dir().join("images").join(format!("{id}.{}", format.as_str()))
}

impl Manager {
    /// Registers a base image: its format and size are read, its SHA-256
    /// computed, and (unless used in place) its file copied in.
    pub fn register_image(&self, spec: &ImageSpec) -> Result<Image> {
        spec.validate()?;
        let ctx = &*self.inner;
        let (source, mut source_file) = path::open_source("image source", &spec.file.source)?;
        if !spec.file.copy {
            path::check_inside("image source", ctx.state_dir(), &source)?;
        }
        let (format, virtual_size) = inspect_source("image source", &source, &source_file, spec.file.format)?;
        let mut image = Image {
            id: 0,
            name: spec.file.name.clone(),
            os: spec.os.clone(),
            arch: spec.arch.clone(),
            description: spec.description.clone(),
            format,
            virtual_size,
            sha256: String::new(),
            firmware: spec.firmware,
            path: String::new(),
            owned: spec.file.copy,
            created_at_ms: store::now_ms(),
        };
        let (id, file) = ctx.store().write(|tx| {
            if !spec.file.copy
                && let Some(user) = store::file_user(tx, &source.to_string_lossy())?
            {
                return Err(Error::AlreadyExists {
                    kind: "disk or image",
                    field: "file",
                    value: format!("{} (used by {user})", source.display()),
                });
            }
            let id = store::insert_image(tx, &image)?;
            let file = if spec.file.copy { image_file(ctx, id, format) } else { source.clone() };
            store::set_image_path(tx, id, &file.to_string_lossy())?;
            Ok((id, file))
        })?;
        let taken = if spec.file.copy { copy_file(&mut source_file, &file) } else { hash_file(&mut source_file, &source) }
            .and_then(|sha| ctx.runtime().share_with_qemu(&file, false).map(|()| sha));
        let sha256 = match taken {
            Ok(sha) => sha,
            Err(e) => {
                if spec.file.copy {
                    let _ = std::fs::remove_file(&file);
                }
                let _ = ctx.store().write(|tx| store::delete_image_row(tx, id));
                return Err(e);
            }
        };
        image.id = id;
        image.path = file.to_string_lossy().into_owned();
        image.sha256 = sha256;
        ctx.write(|w| {
            store::finish_image(w.tx, id, &image.path, &image.sha256)?;
            let details = json!({"format": format.as_str(), "virtual_size": virtual_size, "sha256": image.sha256, "path": image.path});
            w.record(ObjectKind::Image, &id.to_string(), &image.name, "created", details)
        })?;
        Ok(image)
    }

    /// The image named `name`.
    pub fn image(&self, name: &str) -> Result<Image> {
        self.inner.store().read(|tx| store::image_by_name(tx, name)?.ok_or_else(|| Error::not_found("image", name)))
    }

    /// Every registered image, by name.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.inner.store().read(|tx| store::list_images(tx))
    }

    /// Removes an image from the catalogue (and its file, if it was copied
    /// in); refused with [`crate::ErrorKind::InUse`] while a disk is cloned
    /// from it.
    pub fn delete_image(&self, name: &str) -> Result<()> {
        let ctx = &*self.inner;
        let image = ctx.store().write(|tx| {
            let image = store::image_by_name(tx, name)?.ok_or_else(|| Error::not_found("image", name))?;
            let clones = store::clones_of(tx, image.id)?;
            if !clones.is_empty() {
                return Err(Error::InUse { kind: "Image", name: image.name, user: store::describe_users("disk", &clones) });
            }
            store::set_image_deleting(tx, image.id)?;
            Ok(image)
        })?;
        finish_delete(ctx, &image)
    }
}

/// Removes a `deleting` image's file (if copied in), then its record.
pub(crate) fn finish_delete(ctx: &Inner, image: &Image) -> Result<()> {
    if image.owned {
        match std::fs::remove_file(Path::new(&image.path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove image file", &image.path, e)),
        }
    }
    ctx.write(|w| {
        store::delete_image_row(w.tx, image.id)?;
        w.record(ObjectKind::Image, &image.id.to_string(), &image.name, "deleted", json!({"path": image.path}))
    })
}
