//! The image catalogue: base images that VMs boot from through linked
//! clones.

use std::ffi::c_char;

use vman_core::{DiskFormat, Firmware, Image, ImageSpec};

use crate::error::VmanStatus;
use crate::guard::{self, call, new_handle, optional_handle};
use crate::manager::VmanManager;

/// An image registration being built; create with `vman_image_spec_new`.
/// Not thread-safe: one thread builds it.
#[derive(Debug)]
pub struct VmanImageSpec {
    inner: ImageSpec,
}

record! {
    /// A base image of the catalogue; immutable, thread-safe.
    pub struct VmanImage(image) from Image;
    /// The store's id, never reused.
    fn vman_image_id -> number<i64> = |i| i.id;
    fn vman_image_name -> text = |i| &i.name;
    /// The guest OS, free text ("" when none was given).
    fn vman_image_os -> text = |i| &i.os;
    /// The guest architecture, "x86_64".
    fn vman_image_arch -> text = |i| &i.arch;
    /// Free text for people ("" when none was given).
    fn vman_image_description -> text = |i| &i.description;
    /// "qcow2" or "raw".
    fn vman_image_format -> text = |i| i.format;
    /// The size the guest sees, in bytes.
    fn vman_image_virtual_size -> number<u64> = |i| i.virtual_size;
    /// SHA-256 of the file as registered, 64 lower-case hex digits.
    fn vman_image_sha256 -> text = |i| &i.sha256;
    /// The firmware VMs booted from it get: "bios" or "uefi".
    fn vman_image_firmware -> text = |i| i.firmware.as_str();
    /// The file's absolute path. vman never writes it.
    fn vman_image_path -> text = |i| &i.path;
    /// Whether it was copied in (removed with the image) or is used in
    /// place (never removed).
    fn vman_image_owned -> number<bool> = |i| i.owned;
    /// Unix time of its registration in milliseconds.
    fn vman_image_created_at_ms -> number<i64> = |i| i.created_at_ms;
    free vman_image_free;
    list VmanImageList(vman_image_list_len, vman_image_list_get, vman_image_list_free);
}

/// Starts an image registration: image `name` from the file at `source`
/// (an absolute path to a regular file, not a device node nor through a
/// symlink), copied in, its format probed, booted through BIOS, for
/// x86_64. Checked when it is registered.
///
/// `out` must not be NULL. On success `*out` is the spec, owned by the
/// caller (free it with `vman_image_spec_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Thread-safe (it touches no shared state).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_new(name: *const c_char, source: *const c_char, out: *mut *mut VmanImageSpec) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (name, source) = (guard::string(name, "name")?, guard::string(source, "source")?);
            Ok(VmanImageSpec { inner: ImageSpec::new(name, source) })
        })
    }
}

/// Sets the guest OS, free text ("debian-12"). Checked when the image is
/// registered.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_os(spec: *mut VmanImageSpec, os: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", os, "os", |s, v| {
            s.inner.os = v.into();
            Ok(())
        })
    }
}

/// Sets the guest architecture (only "x86_64" runs on this host). Checked
/// when the image is registered.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_arch(spec: *mut VmanImageSpec, arch: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", arch, "arch", |s, v| {
            s.inner.arch = v.into();
            Ok(())
        })
    }
}

/// Sets the description, free text for people. Checked when the image is
/// registered.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_description(spec: *mut VmanImageSpec, description: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", description, "description", |s, v| {
            s.inner.description = v.into();
            Ok(())
        })
    }
}

/// Sets the firmware VMs booted from the image need: "bios" or "uefi".
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another name; `spec` is then
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_firmware(spec: *mut VmanImageSpec, firmware: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", firmware, "firmware", |s, v| {
            s.inner.firmware = v.parse::<Firmware>()?;
            Ok(())
        })
    }
}

/// Says the file's format, "qcow2" or "raw", instead of probing it.
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another name; `spec` is then
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_format(spec: *mut VmanImageSpec, format: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(spec, "spec", format, "format", |s, v| {
            s.inner.file.format = Some(v.parse::<DiskFormat>()?);
            Ok(())
        })
    }
}

/// With `copy` (the default) the file is copied into the state directory;
/// without, it is used in place, which must be inside the state directory,
/// and vman never removes it. Checked when the image is registered.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `spec` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_set_copy(spec: *mut VmanImageSpec, copy: bool) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let spec = unsafe { guard::handle_mut(spec, "spec") }?;
        spec.inner.file.copy = copy;
        Ok(())
    })
}

/// Frees a spec; NULL is a no-op. No other thread may use `spec` during or
/// after the call. Never fails (clears the last error).
///
/// # Safety
/// `spec` NULL or a live spec, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_spec_free(spec: *mut VmanImageSpec) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(spec) })
}

/// Registers a base image from `spec`, which stays the caller's: its
/// format and size are read, its SHA-256 computed and (unless used in
/// place) its file copied in.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_image_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name, path, OS,
/// description, architecture or image), VMAN_STATUS_ALREADY_EXISTS,
/// VMAN_STATUS_UNSUPPORTED (qemu-img is not installed),
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO; nothing is left behind.
///
/// Thread-safe: `manager` may be used by other threads at once; `spec` is
/// only read.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_register(
    manager: *const VmanManager,
    spec: *const VmanImageSpec,
    out: *mut *mut VmanImage,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, spec) = (guard::handle(manager, "manager")?, guard::handle(spec, "spec")?);
            Ok(manager.inner.register_image(&spec.inner)?.into())
        })
    }
}

/// Looks an image up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_image_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanImage) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.image(name)?.into())
        })
    }
}

/// Every registered image, by name.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_image_list_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_list(manager: *const VmanManager, out: *mut *mut VmanImageList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.images()?.into_iter().collect())) }
}

/// Removes an image from the catalogue, and its file if it was copied in.
///
/// Fails with VMAN_STATUS_IN_USE (a disk is cloned from it),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_image_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_image(name)?)
    })
}
