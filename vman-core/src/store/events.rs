use rusqlite::{Connection, params};

use crate::error::{Error, Result};
use crate::event::{Actor, Event, NewEvent, ObjectKind};

pub(crate) fn insert_event(tx: &Connection, actor: &Actor, at_ms: i64, event: NewEvent<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (at_ms, object_kind, object_id, object_name, action, details, os_user, pid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        at_ms,
        event.object_kind.as_str(),
        event.object_id,
        event.object_name,
        event.action,
        event.details.to_string(),
        actor.os_user,
        actor.pid
    ])?;
    Ok(())
}

const COLUMNS: &str = "id, at_ms, object_kind, object_id, object_name, action, details, os_user, pid";

fn collect(stmt: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> Result<Vec<Event>> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, u32>(8)?,
        ))
    })?;
    rows.map(|row| {
        let (id, at_ms, kind, object_id, object_name, action, details, os_user, pid) = row?;
        Ok(Event {
            id,
            at_ms,
            object_kind: ObjectKind::parse(&kind).ok_or_else(|| Error::Internal(format!("event {id} has unknown object kind {kind:?}")))?,
            object_id,
            object_name,
            action,
            details: serde_json::from_str(&details).map_err(|e| Error::Internal(format!("event {id} has invalid details: {e}")))?,
            os_user,
            pid,
        })
    })
    .collect()
}

/// The newest `limit` events about one object, oldest first.
pub(crate) fn history_of(conn: &Connection, kind: ObjectKind, object_id: &str, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM events WHERE object_kind = ?1 AND object_id = ?2
         ORDER BY id DESC LIMIT ?3) ORDER BY id"
    ))?;
    collect(&mut stmt, params![kind.as_str(), object_id, limit])
}

/// The newest `limit` events across the store, oldest first.
pub(crate) fn recent_events(conn: &Connection, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM (SELECT {COLUMNS} FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id"))?;
    collect(&mut stmt, params![limit])
}

/// Up to `limit` events with an id above `after_id`, in id (commit) order.
pub(crate) fn events_after(conn: &Connection, after_id: i64, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
    collect(&mut stmt, params![after_id, limit])
}

/// The id of the newest committed event, 0 if there is none.
pub(crate) fn newest_event_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?)
}
