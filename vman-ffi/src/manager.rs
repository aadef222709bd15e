//! `VmanManager`: the handle on a state directory, and its options.

use std::ffi::c_char;

use vman_core::{Manager, OpenOptions};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, new_handle};

/// A handle on one state directory. Thread-safe: every function taking a
/// `const VmanManager*` may be called from many threads at once.
#[derive(Debug)]
pub struct VmanManager {
    pub(crate) inner: Manager,
}

/// Options for `vman_manager_open`; create with `vman_open_options_new`.
/// Not thread-safe: one thread builds them.
///
/// The accelerator, network mode, binaries, QEMU user and serial log cap
/// are settings of the state directory (see `vman_settings`): an option
/// left unset takes the directory's value; a set one becomes the value of
/// a directory being made, and must equal an existing directory's
/// (otherwise `vman_manager_open` fails with VMAN_STATUS_SETTING_CONFLICT).
#[derive(Debug)]
pub struct VmanOpenOptions {
    inner: OpenOptions,
}

/// Creates options that ask for no setting, create a missing directory, and
/// wait 10000 ms for locks.
///
/// `out` must not be NULL. On success `*out` is the options, owned by the
/// caller (free them with `vman_open_options_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Thread-safe (it touches no shared state).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_new(out: *mut *mut VmanOpenOptions) -> VmanStatus {
    // SAFETY: `out` is NULL or writable, per this function's contract.
    unsafe { new_handle(out, || Ok(VmanOpenOptions { inner: OpenOptions::default() })) }
}

/// How long a write waits for another thread's or process's lock (default
/// 10000 ms; 1 to 3600000).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (out of range; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_busy_timeout_ms(options: *mut VmanOpenOptions, ms: u64) -> VmanStatus {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let options = unsafe { guard::handle_mut(options, "options") }?;
        options.inner.set_busy_timeout_ms(ms)?;
        Ok(())
    })
}

/// Asks for the accelerator setting: "auto" (a new directory's default: KVM
/// only if a probe proves it runs guests faster), "kvm" or "tcg".
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another word; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_accel(options: *mut VmanOpenOptions, accel: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(options, "options", accel, "accel", |o, v| {
            o.inner.set_accel(v.parse()?);
            Ok(())
        })
    }
}

/// Asks for the QEMU binary setting (a new directory's default
/// "qemu-system-x86_64", looked up in PATH unless absolute).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an empty path; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_qemu_binary(options: *mut VmanOpenOptions, path: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(options, "options", path, "path", |o, v| {
            o.inner.set_qemu_binary(v)?;
            Ok(())
        })
    }
}

/// Asks for the network mode setting: "bridged", "user" or "isolated";
/// "auto" asks for nothing in particular (a new directory then keeps
/// bridged with CAP_NET_ADMIN, else user).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (another word; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_network(options: *mut VmanOpenOptions, mode: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(options, "options", mode, "mode", |o, v| {
            o.inner.set_network(v.parse()?);
            Ok(())
        })
    }
}

/// Asks for the DHCP server binary setting of bridged networks (a new
/// directory's default "dnsmasq").
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an empty path; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_dnsmasq_binary(options: *mut VmanOpenOptions, path: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(options, "options", path, "path", |o, v| {
            o.inner.set_dnsmasq_binary(v)?;
            Ok(())
        })
    }
}

/// Asks for the QEMU user setting: who QEMU runs as when the embedding
/// process is root (a new directory's default: "vman-qemu" if that user
/// exists, else "nobody"; QEMU never runs as root unless this names root).
/// Ignored when the process is not root.
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (no such user; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_qemu_user(options: *mut VmanOpenOptions, user: *const c_char) -> VmanStatus {
    // SAFETY: per this function's contract.
    unsafe {
        guard::set_text(options, "options", user, "user", |o, v| {
            o.inner.set_qemu_user(v)?;
            Ok(())
        })
    }
}

/// Asks for the serial log cap setting: the size at which a VM's serial log
/// is rotated (a new directory's default 4 MiB; 4096 bytes to 1 TiB).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (out of range; the options are
/// unchanged), VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_serial_log_cap(options: *mut VmanOpenOptions, bytes: u64) -> VmanStatus {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let options = unsafe { guard::handle_mut(options, "options") }?;
        options.inner.set_serial_log_cap_bytes(bytes)?;
        Ok(())
    })
}

/// Whether `vman_manager_open` makes a missing state directory (default
/// true). When false, a path that holds no vman database fails with
/// VMAN_STATUS_NOT_FOUND and nothing is created.
///
/// Fails with VMAN_STATUS_NULL_PARAMETER.
///
/// Not thread-safe: no other thread may use `options` during the call.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_set_create(options: *mut VmanOpenOptions, create: bool) -> VmanStatus {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let options = unsafe { guard::handle_mut(options, "options") }?;
        options.inner.set_create(create);
        Ok(())
    })
}

/// Frees options; NULL is a no-op. No other thread may use `options` during
/// or after the call. Never fails (clears the last error).
///
/// # Safety
/// `options` must be NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_open_options_free(options: *mut VmanOpenOptions) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(options) })
}

/// Opens `state_dir` (created with mode 0700 if missing, unless the options
/// say not to) and its database, and adopts the VMs that are still running
/// there. `options` may be NULL for the defaults; it stays the caller's. A
/// new directory keeps the settings the options ask for (defaults for the
/// rest); an existing one keeps its own.
///
/// `out` must not be NULL. On success `*out` is the manager, owned by the
/// caller (free it with `vman_manager_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a state directory too long for
/// the socket paths under it; nothing is created),
/// VMAN_STATUS_SETTING_CONFLICT (the options ask for a setting the
/// directory keeps with another value; the message names both),
/// VMAN_STATUS_NOT_FOUND (no state directory there and the options say not
/// to create one), VMAN_STATUS_PERMISSION_DENIED (bridged networking
/// without CAP_NET_ADMIN, or a directory vman may not use),
/// VMAN_STATUS_TIMEOUT (another process holds the database),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Thread-safe (`options` is only read).
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_manager_open(
    state_dir: *const c_char,
    options: *const VmanOpenOptions,
    out: *mut *mut VmanManager,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let state_dir = guard::string(state_dir, "state_dir")?;
            let defaults = OpenOptions::default();
            let options = options.as_ref().map_or(&defaults, |o| &o.inner);
            Ok(VmanManager { inner: Manager::open(state_dir, options)? })
        })
    }
}

/// The default state directory: `$VMAN_STATE_DIR`, else `/var/lib/vman` for
/// root, else `$XDG_STATE_HOME/vman` or `~/.local/state/vman`.
///
/// `out` must not be NULL. On success `*out` is the path, owned by the
/// caller (free it with `vman_string_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (the path holds a NUL byte),
/// VMAN_STATUS_NULL_PARAMETER.
///
/// Thread-safe.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_default_state_dir(out: *mut *mut c_char) -> VmanStatus {
    guard::call(|| {
        guard::out_param(out, "out")?;
        let dir = vman_core::default_state_dir();
        let text = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
            .map_err(|_| Failure::new(VmanStatus::InvalidArgument, "Default state directory contains NUL"))?;
        // SAFETY: checked non-NULL above.
        unsafe { guard::write_out(out, text.into_raw()) };
        Ok(())
    })
}

/// Frees a string vman allocated for the caller (through a `char **out`);
/// NULL is a no-op. No other thread may use `text` during or after the
/// call. Never fails (clears the last error).
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
/// open event streams and consoles stay valid handles but answer
/// `VMAN_STATUS_CLOSED` from now on (a thread waiting in
/// `vman_event_stream_next` is woken with it) and their descriptors stay
/// open; free each as usual, before or after this call. Never fails (clears
/// the last error).
///
/// Not thread-safe: no other thread may use `manager` during or after the
/// call.
///
/// # Safety
/// `manager` must be NULL or a live handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_manager_free(manager: *mut VmanManager) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(manager) })
}
