//! The SSH key catalogue (`ssh_keys`) and each VM's own copies of the keys
//! it was given (`vm_ssh_keys`).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::guest::ssh_key::{PublicKey, SshKey, SshKeyType, VmSshKey};

const COLUMNS: &str = "id, name, key_type, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, created_at_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SshKey> {
    let key_type: String = row.get(2)?;
    let key_type = SshKeyType::parse(&key_type).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, format!("unknown SSH key type {key_type:?}").into())
    })?;
    Ok(SshKey {
        id: row.get(0)?,
        name: row.get(1)?,
        key_type,
        bits: row.get(3)?,
        public_key: row.get(4)?,
        comment: row.get(5)?,
        fingerprint_sha256: row.get(6)?,
        fingerprint_md5: row.get(7)?,
        created_at_ms: row.get(8)?,
    })
}

/// Records a checked key under `name`, unique in the catalogue. The same
/// key material may be recorded under several names, as EC2 allows.
pub(crate) fn insert_ssh_key(tx: &Connection, name: &str, key: &PublicKey, now_ms: i64) -> Result<SshKey> {
    if ssh_key_by_name(tx, name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "SSH key", field: "name", value: name.to_string() });
    }
    let record = SshKey {
        id: 0,
        name: name.to_string(),
        key_type: key.key_type,
        bits: key.bits,
        public_key: key.line(),
        comment: key.comment.clone(),
        fingerprint_sha256: key.fingerprint_sha256(),
        fingerprint_md5: key.fingerprint_md5(),
        created_at_ms: now_ms,
    };
    tx.execute(
        "INSERT INTO ssh_keys (name, key_type, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            record.name,
            record.key_type.as_str(),
            record.bits,
            record.public_key,
            record.comment,
            record.fingerprint_sha256,
            record.fingerprint_md5,
            now_ms
        ],
    )?;
    Ok(SshKey { id: tx.last_insert_rowid(), ..record })
}

pub(crate) fn ssh_key_by_name(conn: &Connection, name: &str) -> Result<Option<SshKey>> {
    Ok(conn.prepare_cached(&format!("SELECT {COLUMNS} FROM ssh_keys WHERE name = ?1"))?.query_row([name], from_row).optional()?)
}

/// The catalogue, by name.
pub(crate) fn list_ssh_keys(conn: &Connection) -> Result<Vec<SshKey>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM ssh_keys ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes a key from the catalogue; VMs keep their copies of it.
pub(crate) fn delete_ssh_key(tx: &Connection, name: &str) -> Result<SshKey> {
    let key = ssh_key_by_name(tx, name)?.ok_or_else(|| Error::not_found("SSH key", name))?;
    tx.execute("DELETE FROM ssh_keys WHERE id = ?1", [key.id])?;
    Ok(key)
}

/// Gives a VM its own copy of each named key, in order: `NotFound` for a
/// name not in the catalogue (the caller's transaction then records
/// nothing).
pub(crate) fn copy_ssh_keys_to_vm(tx: &Connection, vm_id: &str, names: &[String]) -> Result<()> {
    for (position, name) in names.iter().enumerate() {
        let key = ssh_key_by_name(tx, name)?.ok_or_else(|| Error::not_found("SSH key", name))?;
        tx.prepare_cached("INSERT INTO vm_ssh_keys (vm_id, position, name, public_key) VALUES (?1, ?2, ?3, ?4)")?.execute(params![
            vm_id,
            position as i64,
            key.name,
            key.public_key
        ])?;
    }
    Ok(())
}

/// A VM's copy of a key as read from `vm_ssh_keys`.
pub(super) fn vm_ssh_key(vm_id: &str, name: String, public_key: String) -> Result<VmSshKey> {
    // The line was checked and normalized on import; the VM's copy
    // carries no fingerprint column, so it is computed again.
    let key = PublicKey::parse(&public_key)
        .map_err(|e| Error::Internal(format!("SSH key {name:?} of VM {vm_id} is unreadable in the store: {}", e.full_message())))?;
    Ok(VmSshKey { fingerprint_sha256: key.fingerprint_sha256(), name, public_key })
}

/// Removes a VM's copies of its keys (the VM is being deleted).
pub(crate) fn forget_vm_ssh_keys(tx: &Connection, vm_id: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM vm_ssh_keys WHERE vm_id = ?1")?.execute([vm_id])?;
    Ok(())
}
