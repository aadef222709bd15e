//! `VmanManager`: the handle on a state directory.

use std::ffi::c_char;

use vman_core::{Manager, OpenOptions};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, out_param, write_out};

/// A handle on one state directory. Thread-safe: every function taking a
/// `const VmanManager*` may be called from many threads at once.
#[derive(Debug)]
pub struct VmanManager {
    pub(crate) inner: Manager,
}

/// Options for `vman_manager_open`; create with `vman_open_options_new`.
#[derive(Debug)]
pub struct VmanOpenOptions {
    inner: OpenOptions,
}

/// Creates options holding the defaults. Free with `vman_open_options_free`.
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_new(out: *mut *mut VmanOpenOptions) -> VmanStatus {
    call(|| {
        out_param(out, "out")?;
        let options = guard::into_handle(VmanOpenOptions { inner: OpenOptions::default() });
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, options) };
        Ok(())
    })
}

/// How long a write waits for another thread's or process's lock (default
/// 10000 ms; 1 to 3600000). Out of range: VMAN_STATUS_INVALID_ARGUMENT and
/// the options are unchanged.
///
/// # Safety
/// `options` must be NULL or a live options handle not used concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_busy_timeout_ms(options: *mut VmanOpenOptions, ms: u64) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let options = unsafe { guard::handle_mut(options, "options") }?;
        options.inner.set_busy_timeout_ms(ms)?;
        Ok(())
    })
}

/// The accelerator: "auto" (default: KVM only if a probe proves it runs
/// guests), "kvm" or "tcg".
///
/// # Safety
/// `options` NULL or a live handle not used concurrently; `accel` NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_accel(options: *mut VmanOpenOptions, accel: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (options, accel) = unsafe { (guard::handle_mut(options, "options")?, guard::string(accel, "accel")?) };
        options.inner.accel = accel.parse()?;
        Ok(())
    })
}

/// The QEMU binary (default "qemu-system-x86_64", looked up in PATH unless
/// absolute). An empty path: VMAN_STATUS_INVALID_ARGUMENT, options unchanged.
///
/// # Safety
/// As `vman_open_options_set_accel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_qemu_binary(options: *mut VmanOpenOptions, path: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (options, path) = unsafe { (guard::handle_mut(options, "options")?, guard::string(path, "path")?) };
        options.inner.set_qemu_binary(path)?;
        Ok(())
    })
}

/// How NICs reach their networks: "auto" (default: bridged with
/// CAP_NET_ADMIN, else user), "bridged", "user" or "isolated".
///
/// # Safety
/// As `vman_open_options_set_accel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_network(options: *mut VmanOpenOptions, mode: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (options, mode) = unsafe { (guard::handle_mut(options, "options")?, guard::string(mode, "mode")?) };
        options.inner.network = mode.parse()?;
        Ok(())
    })
}

/// The DHCP server binary of bridged networks (default "dnsmasq"). An empty
/// path: VMAN_STATUS_INVALID_ARGUMENT, options unchanged.
///
/// # Safety
/// As `vman_open_options_set_accel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_dnsmasq_binary(options: *mut VmanOpenOptions, path: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (options, path) = unsafe { (guard::handle_mut(options, "options")?, guard::string(path, "path")?) };
        options.inner.set_dnsmasq_binary(path)?;
        Ok(())
    })
}

/// The user QEMU runs as when the embedding process is root (default:
/// "vman-qemu" if that user exists, else "nobody"; QEMU never runs as root
/// unless this names root). Ignored when the process is not root. A user
/// that does not exist: VMAN_STATUS_INVALID_ARGUMENT, options unchanged.
///
/// # Safety
/// As `vman_open_options_set_accel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_qemu_user(options: *mut VmanOpenOptions, user: *const c_char) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (options, user) = unsafe { (guard::handle_mut(options, "options")?, guard::string(user, "user")?) };
        options.inner.set_qemu_user(user)?;
        Ok(())
    })
}

/// The size at which a VM's serial log is rotated (default 4 MiB; 4096 bytes
/// to 1 TiB). Out of range: VMAN_STATUS_INVALID_ARGUMENT, options unchanged.
///
/// # Safety
/// `options` NULL or a live handle not used concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_serial_log_cap(options: *mut VmanOpenOptions, bytes: u64) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let options = unsafe { guard::handle_mut(options, "options") }?;
        options.inner.set_serial_log_cap_bytes(bytes)?;
        Ok(())
    })
}

/// Frees options; NULL is a no-op.
///
/// # Safety
/// `options` must be NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_free(options: *mut VmanOpenOptions) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(options) })
}

/// Opens `state_dir` (created with mode 0700 if missing) and its database,
/// and adopts the VMs that are still running there. A state directory too
/// long for unix socket paths under it is VMAN_STATUS_INVALID_ARGUMENT, and
/// nothing is created.
/// `options` may be NULL for the defaults. On success `*out` owns a manager
/// to free with `vman_manager_free`; on failure `*out` is untouched.
///
/// # Safety
/// `state_dir` must be NULL or a NUL-terminated string; `options` NULL or a
/// live options handle; `out` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_manager_open(
    state_dir: *const c_char,
    options: *const VmanOpenOptions,
    out: *mut *mut VmanManager,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let state_dir = unsafe { guard::string(state_dir, "state_dir") }?;
        out_param(out, "out")?;
        let defaults = OpenOptions::default();
        // SAFETY: per this function's contract, NULL or a live handle.
        let options = unsafe { options.as_ref() }.map_or(&defaults, |o| &o.inner);
        let manager = Manager::open(state_dir, options)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanManager { inner: manager })) };
        Ok(())
    })
}

/// The default state directory: `$VMAN_STATE_DIR`, else `/var/lib/vman` for
/// root, else `$XDG_STATE_HOME/vman` or `~/.local/state/vman`. `*out` is
/// owned by the caller; free it with `vman_string_free`.
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_default_state_dir(out: *mut *mut c_char) -> VmanStatus {
    call(|| {
        out_param(out, "out")?;
        let dir = vman_core::default_state_dir();
        let text = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
            .map_err(|_| Failure::new(VmanStatus::InvalidArgument, "Default state directory contains NUL"))?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, text.into_raw()) };
        Ok(())
    })
}

/// Frees a string vman allocated for the caller; NULL is a no-op.
///
/// # Safety
/// `text` must be NULL or a string returned through a `char **out` of vman,
/// not freed before and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_string_free(text: *mut c_char) {
    guard::get((), || {
        if !text.is_null() {
            // SAFETY: per this function's contract it came from CString::into_raw.
            drop(unsafe { std::ffi::CString::from_raw(text) })
        }
    })
}

/// Closes a manager; NULL is a no-op. Running VMs are not affected. Its
/// open event streams stay valid handles but answer `VMAN_STATUS_CLOSED`
/// from now on (a thread waiting in `vman_event_stream_next` is woken with
/// it) and their descriptors stay readable; free each with
/// `vman_event_stream_free` as usual, before or after this call.
///
/// # Safety
/// `manager` must be NULL or a live handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_manager_free(manager: *mut VmanManager) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(manager) })
}
