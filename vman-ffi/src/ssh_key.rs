//! The SSH key catalogue, and a VM's own copies of its keys.

use std::ffi::c_char;

use vman_core::{SshKey, VmSshKey};

use crate::error::VmanStatus;
use crate::guard::{self, new_handle, optional_handle};
use crate::manager::VmanManager;

record! {
    /// An SSH public key of the catalogue; immutable, thread-safe.
    pub struct VmanSshKey(key) from SshKey;
    /// The key's numeric id.
    fn vman_ssh_key_id -> number<i64> = |k| k.id;
    /// The key's name.
    fn vman_ssh_key_name -> text = |k| &k.name;
    /// The key's type as on a key line: "ssh-ed25519", "ecdsa-sha2-nistp256",
    /// "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521" or "ssh-rsa".
    fn vman_ssh_key_type -> text = |k| k.key_type;
    /// The key's size as `ssh-keygen -l` prints it (256 for ed25519, the
    /// curve's for ECDSA, the modulus's for RSA).
    fn vman_ssh_key_bits -> number<u32> = |k| k.bits;
    /// The normalized key line ("type base64 comment"), for authorized_keys.
    fn vman_ssh_key_public_key -> text = |k| &k.public_key;
    /// The comment of the imported line ("" when it had none).
    fn vman_ssh_key_comment -> text = |k| &k.comment;
    /// "SHA256:…", as `ssh-keygen -l -E sha256` prints it.
    fn vman_ssh_key_fingerprint_sha256 -> text = |k| &k.fingerprint_sha256;
    /// "MD5:xx:xx:…", as `ssh-keygen -l -E md5` prints it.
    fn vman_ssh_key_fingerprint_md5 -> text = |k| &k.fingerprint_md5;
    /// Unix time of the import in milliseconds.
    fn vman_ssh_key_created_at_ms -> number<i64> = |k| k.created_at_ms;
    free vman_ssh_key_free;
    list VmanSshKeyList(vman_ssh_key_list_len, vman_ssh_key_list_get, vman_ssh_key_list_free);
}

record! {
    /// A VM's own copy of a key it was given, borrowed from the VM record;
    /// immutable, thread-safe. It outlives the key's deletion from the
    /// catalogue.
    pub struct VmanVmSshKey(key) from VmSshKey;
    /// The key's name in the catalogue when the VM was given it.
    fn vman_vm_ssh_key_name -> text = |k| &k.name;
    /// The normalized key line.
    fn vman_vm_ssh_key_public_key -> text = |k| &k.public_key;
    /// "SHA256:…", as `ssh-keygen -l -E sha256` prints it.
    fn vman_vm_ssh_key_fingerprint_sha256 -> text = |k| &k.fingerprint_sha256;
}

/// Imports an OpenSSH public key line (`type base64 [comment]`, as in a
/// .pub file) under `name`. Accepted: ssh-ed25519, ecdsa-sha2-nistp256,
/// -384 and -521, and ssh-rsa of 2048 to 16384 bits. The same key may be
/// imported under several names.
///
/// `out` may be NULL; otherwise on success `*out` is the new record, owned
/// by the caller (free it with `vman_ssh_key_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (a bad name; a malformed,
/// truncated, weak, DSA or private key, or options before the key: the
/// message says which), VMAN_STATUS_ALREADY_EXISTS (the name is taken),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_INVALID_UTF8,
/// VMAN_STATUS_DATABASE. Nothing is recorded on failure.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_ssh_key_import(
    manager: *const VmanManager,
    name: *const c_char,
    public_key: *const c_char,
    out: *mut *mut VmanSshKey,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        optional_handle(out, || {
            let (manager, name, public_key) =
                (guard::handle(manager, "manager")?, guard::string(name, "name")?, guard::string(public_key, "public_key")?);
            Ok(manager.inner.import_ssh_key(name, public_key)?.into())
        })
    }
}

/// Looks a key up by name.
///
/// `out` must not be NULL. On success `*out` is the record, owned by the
/// caller (free it with `vman_ssh_key_free`).
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_ssh_key_get(manager: *const VmanManager, name: *const c_char, out: *mut *mut VmanSshKey) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, name) = (guard::handle(manager, "manager")?, guard::string(name, "name")?);
            Ok(manager.inner.ssh_key(name)?.into())
        })
    }
}

/// All keys of the catalogue, by name.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_ssh_key_list_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_ssh_key_list(manager: *const VmanManager, out: *mut *mut VmanSshKeyList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.ssh_keys()?.into_iter().collect())) }
}

/// Deletes a key from the catalogue; VMs given it keep their copies.
///
/// Fails with VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_ssh_key_delete(manager: *const VmanManager, name: *const c_char) -> VmanStatus {
    guard::call(|| {
        // SAFETY: per this function's contract.
        let (manager, name) = unsafe { (guard::handle(manager, "manager")?, guard::string(name, "name")?) };
        Ok(manager.inner.delete_ssh_key(name)?)
    })
}
