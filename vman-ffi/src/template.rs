//! Size templates.

use std::ffi::{CString, c_char};

use vman_core::{Template, TemplateSpec};

use crate::error::VmanStatus;
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::{self, cstring};

/// A template record; read-only, safe to share between threads.
#[derive(Debug)]
pub struct VmanTemplate {
    inner: Template,
    name: CString,
    description: CString,
}

impl From<Template> for VmanTemplate {
    fn from(t: Template) -> Self {
        VmanTemplate { name: cstring(&t.name), description: cstring(&t.description), inner: t }
    }
}

/// A list of templates, owned by the caller; its items are borrowed from it.
#[derive(Debug)]
pub struct VmanTemplateList(Vec<VmanTemplate>);

/// Creates a size template. `description` may be NULL. On success `*out`
/// (if `out` is not NULL) owns the new record; free it with
/// `vman_template_free`.
///
/// # Safety
/// Pointers must be NULL or valid: `manager` a live handle, strings
/// NUL-terminated, `out` writable.
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
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name, description) = unsafe {
            (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::optional_string(description, "description")?)
        };
        let spec = TemplateSpec::new(name, vcpus, memory_mib, disk_gib).description(description.unwrap_or(""));
        let template = manager.inner.create_template(&spec)?;
        if !out.is_null() {
            // SAFETY: non-NULL and writable per this function's contract.
            unsafe { write_out(out, guard::into_handle(VmanTemplate::from(template))) };
        }
        Ok(())
    })
}

/// Looks a template up by name; `*out` is owned by the caller.
///
/// # Safety
/// As `vman_template_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_get(
    manager: *const VmanManager,
    name: *const c_char,
    out: *mut *mut VmanTemplate,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        out_param(out, "out")?;
        let template = manager.inner.template(name)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanTemplate::from(template))) };
        Ok(())
    })
}

/// All templates, by name; `*out` is owned by the caller.
///
/// # Safety
/// As `vman_template_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_list(manager: *const VmanManager, out: *mut *mut VmanTemplateList) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let list = manager.inner.templates()?.into_iter().map(VmanTemplate::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanTemplateList(list))) };
        Ok(())
    })
}

/// Deletes a template; `VMAN_STATUS_IN_USE` while a VM was made from it.
///
/// # Safety
/// As `vman_template_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        manager.inner.delete_template(name)?;
        Ok(())
    })
}

/// Number of templates in a list (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vman_template_list_len(list: *const VmanTemplateList) -> usize {
    record::number(list, |l| l.0.len())
}

/// Template `index` of a list, borrowed from the list; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_template_list_get(list: *const VmanTemplateList, index: usize) -> *const VmanTemplate {
    record::item(list, |l| l.0.get(index))
}

/// Frees a list and every item in it; NULL is a no-op.
///
/// # Safety
/// `list` must be NULL or a live list handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_list_free(list: *mut VmanTemplateList) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(list) })
}

/// Frees a template record; NULL is a no-op.
///
/// # Safety
/// `template` must be NULL or an owned record (not a list item), not used
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_template_free(template: *mut VmanTemplate) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(template) })
}

/// The template's numeric id (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vman_template_id(template: *const VmanTemplate) -> i64 {
    record::number(template, |t| t.inner.id)
}

/// The template's name, borrowed from the record (NULL for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vman_template_name(template: *const VmanTemplate) -> *const c_char {
    record::text(template, |t| &t.name)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_template_vcpus(template: *const VmanTemplate) -> u32 {
    record::number(template, |t| t.inner.vcpus)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_template_memory_mib(template: *const VmanTemplate) -> u64 {
    record::number(template, |t| t.inner.memory_mib)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_template_disk_gib(template: *const VmanTemplate) -> u64 {
    record::number(template, |t| t.inner.disk_gib)
}

/// The description, borrowed ("" when none was given; NULL for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vman_template_description(template: *const VmanTemplate) -> *const c_char {
    record::text(template, |t| &t.description)
}
