//! Batches of VMs and which VMs belong to them (`vms.batch_id`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::batch::model::Batch;
use crate::batch::state::BatchState;
use crate::error::{Error, Result};

const COLUMNS: &str = "id, name, pattern, count, state, created_at_ms";

fn complete(conn: &Connection, row: (i64, String, String, u32, String, i64)) -> Result<Batch> {
    let (id, name, pattern, count, state, created_at_ms) = row;
    let vms = batch_members(conn, id)?.into_iter().map(|(_, name)| name).collect();
    Ok(Batch { id, name, pattern, count, state: state.parse()?, vms, created_at_ms })
}

fn query(conn: &Connection, filter: &str, args: impl rusqlite::Params) -> Result<Vec<Batch>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM batches WHERE {filter}"))?;
    let rows = stmt
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|row| complete(conn, row)).collect()
}

/// Records a batch in `creating`; its name must be free among live batches.
pub(crate) fn insert_batch(tx: &Connection, name: &str, pattern: &str, count: u32, now_ms: i64) -> Result<i64> {
    if batch_by_name(tx, name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "batch", field: "name", value: name.to_string() });
    }
    tx.execute(
        "INSERT INTO batches (name, pattern, count, state, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, pattern, count, BatchState::Creating.as_str(), now_ms],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The live batch named `name`.
pub(crate) fn batch_by_name(conn: &Connection, name: &str) -> Result<Option<Batch>> {
    Ok(query(conn, "name = ?1 AND deleted_at_ms IS NULL", [name])?.pop())
}

/// A batch by id, live or deleted.
pub(crate) fn batch_by_id(conn: &Connection, id: i64) -> Result<Option<Batch>> {
    Ok(query(conn, "id = ?1", [id])?.pop())
}

/// Live batches, by name.
pub(crate) fn list_batches(conn: &Connection) -> Result<Vec<Batch>> {
    query(conn, "deleted_at_ms IS NULL ORDER BY name", [])
}

/// Batches a process was changing (and may have died changing).
pub(crate) fn unsettled_batches(conn: &Connection) -> Result<Vec<Batch>> {
    let intents: Vec<&str> = BatchState::ALL.into_iter().filter(|s| s.is_intent()).map(BatchState::as_str).collect();
    let placeholders = (1..=intents.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    query(conn, &format!("state IN ({placeholders}) ORDER BY id"), rusqlite::params_from_iter(intents))
}

/// Moves a batch from `from` to `to`; `false` if it was no longer in
/// `from` (another process settled it first). `deleted` frees its name.
pub(crate) fn set_batch_state(tx: &Connection, id: i64, from: BatchState, to: BatchState, now_ms: i64) -> Result<bool> {
    let deleted_at = (to == BatchState::Deleted).then_some(now_ms);
    let changed = tx.prepare_cached("UPDATE batches SET state = ?3, deleted_at_ms = ?4 WHERE id = ?1 AND state = ?2")?.execute(params![
        id,
        from.as_str(),
        to.as_str(),
        deleted_at
    ])?;
    Ok(changed == 1)
}

/// Makes a VM (recorded in the same transaction) a member of a batch.
pub(crate) fn set_vm_batch(tx: &Connection, vm_id: &str, batch_id: i64) -> Result<()> {
    tx.prepare_cached("UPDATE vms SET batch_id = ?2 WHERE id = ?1")?.execute(params![vm_id, batch_id])?;
    Ok(())
}

/// A batch's live VMs, `(id, name)`, in the order they were recorded.
pub(crate) fn batch_members(conn: &Connection, batch_id: i64) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM vms WHERE batch_id = ?1 AND deleted_at_ms IS NULL ORDER BY rowid")?;
    let rows = stmt.query_map([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The batch a VM (live or deleted) was made in, if any.
pub(crate) fn batch_of_vm(conn: &Connection, vm_id: &str) -> Result<Option<i64>> {
    Ok(conn.prepare_cached("SELECT batch_id FROM vms WHERE id = ?1")?.query_row([vm_id], |r| r.get(0)).optional()?.flatten())
}
