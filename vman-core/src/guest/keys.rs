//! The SSH key catalogue (the EC2 seed's key pairs, public half only):
//! import, get, list, delete. A VM is given keys by name when it is
//! created ([`VmSpec::ssh_key`](crate::VmSpec::ssh_key)) and keeps its own
//! copy, so deleting a key from the catalogue never changes a VM.
//!
//! The same key material may be imported under several names, as EC2
//! allows: a key's identity is its name, and refusing a second name would
//! only make the caller look for the first.

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::guest::ssh_key::{PublicKey, SshKey};
use crate::manager::Manager;
use crate::name::validate_name;
use crate::store;

impl Manager {
    /// Imports an OpenSSH public key line (`type base64 [comment]`, as in a
    /// `.pub` file) under `name`. Accepts ssh-ed25519, ecdsa-sha2-nistp256,
    /// -384 and -521, and ssh-rsa of 2048 to 16384 bits, checked down to the
    /// key's encoding; anything else (a DSA key, a private key, options, a
    /// truncated or malformed key) is [`crate::ErrorKind::InvalidArgument`]
    /// with the reason, and a taken name is
    /// [`crate::ErrorKind::AlreadyExists`]; nothing is recorded then.
    pub fn import_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey> {
        validate_name("SSH key name", name)?;
        let key = PublicKey::parse(public_key)?;
        self.inner.write(|w| {
            let key = store::insert_ssh_key(w.tx, name, &key, w.now)?;
            let details = json!({
                "key_type": key.key_type.as_str(), "bits": key.bits, "fingerprint_sha256": key.fingerprint_sha256,
            });
            w.record(ObjectKind::SshKey, &key.id.to_string(), &key.name, "created", details)?;
            Ok(key)
        })
    }

    /// The key named `name`.
    pub fn ssh_key(&self, name: &str) -> Result<SshKey> {
        self.inner.store().read(|tx| store::ssh_key_by_name(tx, name)?.ok_or_else(|| Error::not_found("SSH key", name)))
    }

    /// All keys of the catalogue, by name.
    pub fn ssh_keys(&self) -> Result<Vec<SshKey>> {
        self.inner.store().read(|tx| store::list_ssh_keys(tx))
    }

    /// Deletes a key from the catalogue. VMs that were given it keep their
    /// copy ([`Vm::ssh_keys`](crate::Vm::ssh_keys)).
    pub fn delete_ssh_key(&self, name: &str) -> Result<()> {
        self.inner.write(|w| {
            let key = store::delete_ssh_key(w.tx, name)?;
            w.record(ObjectKind::SshKey, &key.id.to_string(), &key.name, "deleted", json!({"fingerprint_sha256": key.fingerprint_sha256}))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{ErrorKind, Manager, OpenOptions, TemplateSpec, VmFilter, VmSpec};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEEHKILeIA5KIMgEOxa+GSMJKC0wYoXMrzyXxBvwHzw alice@example";

    fn rows(m: &Manager, table: &str) -> i64 {
        m.inner.store().read(|tx| Ok(tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn a_vm_keeps_its_copy_after_the_key_is_deleted_and_loses_it_with_the_vm() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manager::open(dir.path(), &OpenOptions::default()).unwrap();
        m.create_template(&TemplateSpec::new("small", 1, 512, 1)).unwrap();
        let key = m.import_ssh_key("alice", KEY).unwrap();
        let vm = m.create_vm(&VmSpec::new("web1", "small").ssh_key("alice")).unwrap();
        assert_eq!(vm.ssh_keys.len(), 1);
        assert_eq!(
            (vm.ssh_keys[0].public_key.as_str(), vm.ssh_keys[0].fingerprint_sha256.as_str()),
            (KEY, key.fingerprint_sha256.as_str())
        );

        m.delete_ssh_key("alice").unwrap();
        assert_eq!(m.vm("web1").unwrap().ssh_keys, vm.ssh_keys);
        assert_eq!(m.vms(&VmFilter::default()).unwrap()[0].ssh_keys, vm.ssh_keys);
        assert_eq!(rows(&m, "vm_ssh_keys"), 1);

        m.delete_vm("web1", false).unwrap();
        assert_eq!(rows(&m, "vm_ssh_keys"), 0);
        // The name is free again, and a new import is a new key.
        let again = m.import_ssh_key("alice", KEY).unwrap();
        assert!(again.id > key.id);
        assert_eq!(m.create_vm(&VmSpec::new("web2", "small").ssh_key("gone")).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(rows(&m, "vm_ssh_keys"), 0);
    }
}
