//! Disks: create, import, list, resize, delete, attach and detach.

use std::ffi::{CString, c_char};

use vman_core::convert::millis_arg;
use vman_core::{Disk, DiskFilter, DiskFormat, DiskSpec, DiskState, ImportSpec};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, new_handle, optional_handle};
use crate::manager::VmanManager;
use crate::record::cstring;

/// Where a disk is in its life. Numbers are stable. Creating, attaching,
/// detaching and deleting are intents that an operation (or, after a crash,
/// `vman_reconcile`) settles.
// `repr(C)` for the reason given at `VmanStatus`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmanDiskState {
    #[default]
    Creating = 0,
    Available = 1,
    Attaching = 2,
    Attached = 3,
    Detaching = 4,
    Deleting = 5,
    Error = 6,
}

impl From<DiskState> for VmanDiskState {
    fn from(state: DiskState) -> Self {
        match state {
            DiskState::Creating => VmanDiskState::Creating,
            DiskState::Available => VmanDiskState::Available,
            DiskState::Attaching => VmanDiskState::Attaching,
            DiskState::Attached => VmanDiskState::Attached,
            DiskState::Detaching => VmanDiskState::Detaching,
            DiskState::Deleting => VmanDiskState::Deleting,
            DiskState::Error => VmanDiskState::Error,
        }
    }
}

record! {
    /// A disk record: a snapshot taken when it was read; immutable,
    /// thread-safe.
    pub struct VmanDisk(disk) from Disk;
    /// The store's id, never reused.
    fn vman_disk_id -> number<i64> = |d| d.id;
    fn vman_disk_name -> text = |d| &d.name;
    /// "qcow2" or "raw".
    fn vman_disk_format -> text = |d| d.format;
    /// The size the guest sees, in bytes.
    fn vman_disk_size_bytes -> number<u64> = |d| d.size_bytes;
    /// The file's absolute path.
    fn vman_disk_path -> text = |d| &d.path;
    /// Whether vman owns the file (made or copied in, removed with the disk)
    /// or uses the caller's file in place (never removed).
    fn vman_disk_owned -> number<bool> = |d| d.owned;
    /// For a linked clone (a VM's boot disk), the name of its base image;
    /// NULL otherwise.
    fn vman_disk_image -> optional_text = |d| d.image.as_ref();
    /// The state when the record was read (0 is VMAN_DISK_STATE_CREATING).
    fn vman_disk_state -> number<VmanDiskState> = |d| d.state.into();
    /// The name of the VM it is attached to; NULL if none.
    fn vman_disk_vm -> optional_text = |d| d.vm.as_ref();
    /// Its position on its VM, from 0 (the guest's device order follows
    /// it); -1 when it is attached to no VM.
    fn vman_disk_slot -> number<i64> = |d| d.slot.map_or(-1, i64::from);
    /// Whether it is deleted with its VM (a boot disk made with the VM).
    fn vman_disk_delete_with_vm -> number<bool> = |d| d.delete_with_vm;
    /// Why the last operation on it failed; NULL if none did.
    fn vman_disk_last_error -> optional_text = |d| d.last_error.as_ref();
    /// Unix time of the disk's creation in milliseconds.
    fn vman_disk_created_at_ms -> number<i64> = |d| d.created_at_ms;
    free vman_disk_free;
    list VmanDiskList(vman_disk_list_len, vman_disk_list_get, vman_disk_list_free);
}

/// A format argument: NULL for `default`, else "qcow2" or "raw".
fn format_arg(format: Option<&str>) -> Result<Option<DiskFormat>, Failure> {
    Ok(format.map(str::parse::<DiskFormat>).transpose()?)
}

/// Creates an empty disk of `size_bytes` bytes (at least one MiB, a
/// multiple of 512) under the state directory. `format` is "qcow2" or
/// "raw"; NULL means qcow2.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name, size or format),
/// VMAN_STATUS_ALREADY_EXISTS, VMAN_STATUS_QEMU (qemu-img failed),
/// VMAN_STATUS_UNSUPPORTED (qemu-img is not installed),
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO; nothing
/// is left behind.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_create(
    manager: *const VmanManager,
    name: *const c_char,
    size_bytes: u64,
    format: *const c_char,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name, format) =
                (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::optional_string(format, "format")?);
            let spec = DiskSpec { format: format_arg(format)?.unwrap_or_default(), ..DiskSpec::new(name, size_bytes) };
            Ok(manager.inner.create_disk(&spec)?.into())
        })
    }
}

/// Makes a disk of the image file at `source` (an absolute path to a
/// regular file, not a device node nor through a symlink). `format` is
/// "qcow2" or "raw"; NULL probes it (an image naming a backing file is then
/// refused). With `copy` the file is copied into the state directory;
/// without, it is used in place, which must be inside the state directory,
/// and vman never removes it.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name, path, format or
/// image, or a size out of range), VMAN_STATUS_ALREADY_EXISTS,
/// VMAN_STATUS_UNSUPPORTED (qemu-img is not installed),
/// VMAN_STATUS_TIMEOUT, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO; nothing
/// is left behind.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_import(
    manager: *const VmanManager,
    name: *const c_char,
    source: *const c_char,
    format: *const c_char,
    copy: bool,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name, source, format) = (
                guard::handle(manager, "manager")?,
                guard::string(name, "name")?,
                guard::string(source, "source")?,
                guard::optional_string(format, "format")?,
            );
            let spec = ImportSpec { format: format_arg(format)?, copy, ..ImportSpec::new(name, source) };
            Ok(manager.inner.import_disk(&spec)?.into())
        })
    }
}

/// Looks a disk up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanDisk) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.disk(name)?.into())
        })
    }
}

/// Disks, by name. `vm` (only the disks attached to that VM) and `state`
/// ("available", "attached", …) filter when not NULL.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_disk_list_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an unknown state),
/// VMAN_STATUS_NOT_FOUND (no such VM), VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_list(
    manager: *const VmanManager,
    vm: *const c_char,
    state: *const c_char,
    out: *mut *mut VmanDiskList,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, vm, state) =
                (guard::handle(manager, "manager")?, guard::optional_string(vm, "vm")?, guard::optional_string(state, "state")?);
            let filter = DiskFilter { vm: vm.map(str::to_string), state: state.map(str::parse::<DiskState>).transpose()? };
            Ok(manager.inner.disks(&filter)?.into_iter().collect())
        })
    }
}

/// Deletes a disk attached to no VM, and its file if vman owns it (a file
/// used in place stays).
///
/// Fails with VMAN_STATUS_INVALID_STATE (attached, or busy with another
/// operation), VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_disk(name)?)
    })
}

/// Resizes a disk to `size_bytes`. Growing is always allowed (live, through
/// QEMU, while its VM runs); shrinking loses the data past the new end, so
/// it needs `force`, and is refused while its VM runs.
///
/// `out` may be NULL; otherwise on success `*out` is the disk as it is
/// afterwards, owned by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a size out of range, or a
/// shrink without `force`), VMAN_STATUS_INVALID_STATE (busy with another
/// operation), VMAN_STATUS_UNSUPPORTED (a shrink while its VM runs),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU, VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_resize(
    manager: *const VmanManager,
    name: *const c_char,
    size_bytes: u64,
    force: bool,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.resize_disk(name, size_bytes, force)?.into())
        })
    }
}

/// Attaches an available disk to VM `vm` at its lowest free slot: to a VM
/// without QEMU it is part of its next start; into a running or paused one
/// it is hot-plugged (the guest sees a new virtio disk).
///
/// `out` may be NULL; otherwise on success `*out` is the disk as it is
/// afterwards, owned by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (the disk is not available, or the
/// VM is starting or stopping), VMAN_STATUS_INVALID_ARGUMENT (the VM has
/// all its disks), VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU (the hot-plug
/// failed; the disk stays available), VMAN_STATUS_TIMEOUT,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_attach(
    manager: *const VmanManager,
    vm: *const c_char,
    disk: *const c_char,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, disk) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(disk, "disk")?);
            Ok(manager.inner.attach_disk(vm, disk)?.into())
        })
    }
}

/// Detaches a disk from VM `vm`. From a running VM the guest is asked to
/// release it and given `timeout_ms` (VMAN_DEFAULT_DETACH_TIMEOUT_MS is
/// vman's usual wait); if it does not, the call fails with
/// VMAN_STATUS_TIMEOUT and the disk stays attached.
///
/// `out` may be NULL; otherwise on success `*out` is the disk as it is
/// afterwards, owned by the caller (free it with `vman_disk_free`).
///
/// Fails with VMAN_STATUS_INVALID_STATE (the disk is not attached to this
/// VM, or the VM is starting or stopping), VMAN_STATUS_TIMEOUT (the guest
/// did not release it), VMAN_STATUS_INVALID_ARGUMENT (a timeout beyond
/// range), VMAN_STATUS_NOT_FOUND, VMAN_STATUS_QEMU,
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once (calls on
/// one VM wait for each other).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_disk_detach(
    manager: *const VmanManager,
    vm: *const c_char,
    disk: *const c_char,
    timeout_ms: u64,
    out: *mut *mut VmanDisk,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, vm, disk) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?, guard::string(disk, "disk")?);
            let timeout = millis_arg("timeout", timeout_ms)?;
            Ok(manager.inner.detach_disk(vm, disk, timeout)?.into())
        })
    }
}

/// A static name for a disk state ("available"); "unknown" for a number
/// that is no state. Never NULL; static, never free it. Thread-safe; never
/// fails, and does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn vman_disk_state_name(state: u32) -> *const c_char {
    // The names are core's (DiskState::as_str), made C strings once; the
    // numbers follow DiskState::ALL, as VmanDiskState's do.
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| DiskState::ALL.iter().map(|s| cstring(s.as_str())).collect());
    names.get(state as usize).map_or(c"unknown".as_ptr(), |n| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_state_numbers_follow_cores_order() {
        for (i, state) in DiskState::ALL.into_iter().enumerate() {
            assert_eq!(VmanDiskState::from(state) as usize, i, "{state}");
            // SAFETY: a static, NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(vman_disk_state_name(i as u32)) };
            assert_eq!(name.to_str(), Ok(state.as_str()));
        }
        // SAFETY: as above.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(vman_disk_state_name(99)) }.to_str(), Ok("unknown"));
    }
}
