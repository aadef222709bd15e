//! Size templates.

use std::ffi::c_char;

use vman_core::{Template, TemplateSpec};

use crate::error::VmanStatus;
use crate::guard::{self, new_handle, optional_handle};
use crate::manager::VmanManager;

record! {
    /// A template record; immutable, thread-safe.
    pub struct VmanTemplate(template) from Template;
    /// The template's numeric id.
    fn vman_template_id -> number<i64> = |t| t.id;
    /// The template's name.
    fn vman_template_name -> text = |t| &t.name;
    fn vman_template_vcpus -> number<u32> = |t| t.vcpus;
    fn vman_template_memory_mib -> number<u64> = |t| t.memory_mib;
    fn vman_template_disk_gib -> number<u64> = |t| t.disk_gib;
    /// The description ("" when none was given).
    fn vman_template_description -> text = |t| &t.description;
    free vman_template_free;
    list VmanTemplateList(vman_template_list_len, vman_template_list_get, vman_template_list_free);
}

/// Creates a size template. `description` may be NULL (none).
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_template_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name or size),
/// VMAN_STATUS_ALREADY_EXISTS, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_create(
    manager: *const VmanManager,
    name: *const c_char,
    vcpus: u32,
    memory_mib: u64,
    disk_gib: u64,
    description: *const c_char,
    out: *mut *mut VmanTemplate,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name, description) =
                (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::optional_string(description, "description")?);
            let spec = TemplateSpec::new(name, vcpus, memory_mib, disk_gib).description(description.unwrap_or(""));
            Ok(manager.inner.create_template(&spec)?.into())
        })
    }
}

/// Looks a template up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_template_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanTemplate) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.template(name)?.into())
        })
    }
}

/// All templates, by name.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_template_list_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_list(manager: *const VmanManager, out: *mut *mut VmanTemplateList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.templates()?.into_iter().collect())) }
}

/// Deletes a template.
///
/// Fails with VMAN_STATUS_IN_USE (a VM was made from it),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_template(name)?)
    })
}
