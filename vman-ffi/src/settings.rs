//! `VmanSettings`: the settings a state directory keeps for every process
//! that opens it, and changing one.

use std::ffi::c_char;

use vman_core::Settings;

use crate::error::VmanStatus;
use crate::guard::{self, new_handle, optional_handle};
use crate::manager::VmanManager;

record! {
    /// The settings of a state directory, as read; immutable, thread-safe.
    pub struct VmanSettings(settings) from Settings;
    /// How NICs reach their networks: "bridged", "user" or "isolated".
    fn vman_settings_network -> text = |s| s.network.as_str();
    /// "auto", "kvm" or "tcg".
    fn vman_settings_accel -> text = |s| s.accel.as_str();
    /// The QEMU binary (a path, or a name looked up in PATH).
    fn vman_settings_qemu_binary -> text = |s| s.qemu_binary.display();
    /// The DHCP server of bridged networks (a path, or a name looked up in PATH).
    fn vman_settings_dnsmasq_binary -> text = |s| s.dnsmasq_binary.display();
    /// The user QEMU runs as when vman is root; NULL for the default
    /// ("vman-qemu" if that user exists, else "nobody").
    fn vman_settings_qemu_user -> optional_text = |s| s.qemu_user.as_ref();
    /// The size in bytes at which each VM's serial log is rotated.
    fn vman_settings_serial_log_cap_bytes -> number<u64> = |s| s.serial_log_cap_bytes;
    /// How many settings there are (for listing them generically with
    /// `vman_settings_key` and `vman_settings_value`).
    fn vman_settings_count -> number<usize> = |s| s.entries().len();
    /// The key of setting `index`, as `vman_set_setting` takes it: "network",
    /// "accel", "qemu_binary", "dnsmasq_binary", "qemu_user",
    /// "serial_log_cap_bytes".
    fn vman_settings_key -> text_at = |s| s.entries().into_iter().map(|(k, _)| k.as_str());
    /// The value of setting `index`, as `vman_set_setting` takes it ("" for
    /// the default QEMU user).
    fn vman_settings_value -> text_at = |s| s.entries().into_iter().map(|(_, v)| v);
    free vman_settings_free;
}

/// The settings of the manager's state directory, as it keeps them now.
///
/// `out` must not be NULL. On success `*out` is the settings, owned by the
/// caller (free them with `vman_settings_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_settings(manager: *const VmanManager, out: *mut *mut VmanSettings) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.settings()?.into())) }
}

/// Changes setting `key` of the state directory to `value`, for every
/// process that uses it ("network", "accel", "qemu_binary",
/// "dnsmasq_binary", "qemu_user" ("" for the default), or
/// "serial_log_cap_bytes" in decimal). "network" "auto" is resolved by
/// this process. "network", "dnsmasq_binary" and "qemu_user" change only
/// while no VM of the directory has a QEMU; the others apply from each VM's
/// next start. A change records a "setting" event; setting the value kept
/// already changes nothing.
///
/// `out` may be NULL; otherwise on success `*out` is the settings as they
/// are now, owned by the caller (free them with `vman_settings_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an unknown key or a bad value;
/// nothing changed), VMAN_STATUS_INVALID_STATE (a VM runs; the message
/// names it), VMAN_STATUS_PERMISSION_DENIED (bridged without
/// CAP_NET_ADMIN), VMAN_STATUS_TIMEOUT (another change held the settings
/// lock), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_set_setting(
    manager: *const VmanManager,
    key: *const c_char,
    value: *const c_char,
    out: *mut *mut VmanSettings,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, key, value) = (guard::handle(manager, "manager")?, guard::string(key, "key")?, guard::string(value, "value")?);
            Ok(manager.inner.set_setting(key, value)?.into())
        })
    }
}
