//! Disks and base images.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::storage::model::{Disk, DiskFilter, DiskFormat, DiskState, Firmware, Image, MAX_DISKS, Snapshot};

const DISK_COLUMNS: &str = "d.id, d.name, d.format, d.size_bytes, d.path, d.owned, i.name, d.state, v.name, d.slot, \
                            d.delete_with_vm, d.last_error, d.created_at_ms, d.vm_id";
const DISK_FROM: &str = "disks d LEFT JOIN images i ON i.id = d.image_id LEFT JOIN vms v ON v.id = d.vm_id";

fn disk_from_row(row: &Row<'_>) -> rusqlite::Result<Disk> {
    let format: String = row.get(2)?;
    let state: String = row.get(7)?;
    let last_error: String = row.get(11)?;
    Ok(Disk {
        id: row.get(0)?,
        name: row.get(1)?,
        format: format.parse().map_err(|e| bad_column(2, e))?,
        size_bytes: row.get(3)?,
        path: row.get(4)?,
        owned: row.get(5)?,
        image: row.get(6)?,
        state: state.parse().map_err(|e| bad_column(7, e))?,
        vm: row.get(8)?,
        slot: row.get(9)?,
        delete_with_vm: row.get(10)?,
        last_error: (!last_error.is_empty()).then_some(last_error),
        created_at_ms: row.get(12)?,
        vm_id: row.get(13)?,
    })
}

fn bad_column(index: usize, e: Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
}

/// A new disk row; its path is set once its id is known ([`set_disk_path`]).
pub(crate) struct NewDisk<'a> {
    pub name: &'a str,
    pub format: DiskFormat,
    pub size_bytes: u64,
    pub path: &'a str,
    pub owned: bool,
    pub image_id: Option<i64>,
    pub state: DiskState,
    pub vm: Option<(&'a str, u32)>,
    pub delete_with_vm: bool,
}

pub(crate) fn insert_disk(tx: &Connection, disk: &NewDisk<'_>, now_ms: i64) -> Result<i64> {
    if disk_by_name(tx, disk.name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "disk", field: "name", value: disk.name.to_string() });
    }
    tx.execute(
        "INSERT INTO disks (name, format, size_bytes, path, owned, image_id, state, vm_id, slot, delete_with_vm, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            disk.name,
            disk.format.as_str(),
            disk.size_bytes,
            disk.path,
            disk.owned,
            disk.image_id,
            disk.state.as_str(),
            disk.vm.map(|(id, _)| id),
            disk.vm.map(|(_, slot)| slot),
            disk.delete_with_vm,
            now_ms
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn set_disk_path(tx: &Connection, id: i64, path: &str) -> Result<()> {
    tx.execute("UPDATE disks SET path = ?2 WHERE id = ?1", params![id, path])?;
    Ok(())
}

pub(crate) fn disk_by_name(conn: &Connection, name: &str) -> Result<Option<Disk>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {DISK_COLUMNS} FROM {DISK_FROM} WHERE d.name = ?1"))?
        .query_row([name], disk_from_row)
        .optional()?)
}

pub(crate) fn disk_by_id(conn: &Connection, id: i64) -> Result<Option<Disk>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {DISK_COLUMNS} FROM {DISK_FROM} WHERE d.id = ?1"))?
        .query_row([id], disk_from_row)
        .optional()?)
}

pub(crate) fn list_disks(conn: &Connection, filter: &DiskFilter) -> Result<Vec<Disk>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DISK_COLUMNS} FROM {DISK_FROM}
         WHERE (?1 IS NULL OR (v.name = ?1 AND v.deleted_at_ms IS NULL)) AND (?2 IS NULL OR d.state = ?2)
         ORDER BY d.name"
    ))?;
    let rows = stmt.query_map(params![filter.vm, filter.state.map(DiskState::as_str)], disk_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A VM's disks in slot order: the order QEMU gets them in.
pub(crate) fn disks_of_vm(conn: &Connection, vm_id: &str) -> Result<Vec<Disk>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {DISK_COLUMNS} FROM {DISK_FROM} WHERE d.vm_id = ?1 ORDER BY d.slot"))?;
    let rows = stmt.query_map([vm_id], disk_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Disks in any of `states`: what the reconciler settles.
pub(crate) fn disks_in_states(conn: &Connection, states: &[DiskState]) -> Result<Vec<Disk>> {
    let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
    let mut stmt = conn.prepare(&format!("SELECT {DISK_COLUMNS} FROM {DISK_FROM} WHERE d.state IN ({list}) ORDER BY d.id"))?;
    let rows = stmt.query_map([], disk_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The lowest slot of a VM no disk holds, if any is left.
pub(crate) fn free_disk_slot(conn: &Connection, vm_id: &str) -> Result<Option<u32>> {
    let mut stmt = conn.prepare_cached("SELECT slot FROM disks WHERE vm_id = ?1 ORDER BY slot")?;
    let used: Vec<u32> = stmt.query_map([vm_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok((0..MAX_DISKS as u32).find(|s| !used.contains(s)))
}

/// Moves a disk from `from` to `to`, attaching it to `vm` (a VM id and slot)
/// or detaching it (`None`); fails if another writer moved it first.
pub(crate) fn set_disk_state(
    tx: &Connection,
    id: i64,
    from: DiskState,
    to: DiskState,
    vm: Option<(&str, u32)>,
    last_error: &str,
) -> Result<()> {
    let changed = tx.execute(
        // A disk leaving its VM becomes an ordinary disk: a boot disk moved
        // to another VM is not deleted with that one.
        "UPDATE disks SET state = ?3, vm_id = ?4, slot = ?5, last_error = ?6,
                          delete_with_vm = CASE WHEN ?4 IS NULL THEN 0 ELSE delete_with_vm END
         WHERE id = ?1 AND state = ?2",
        params![id, from.as_str(), to.as_str(), vm.map(|(v, _)| v), vm.map(|(_, s)| s), last_error],
    )?;
    if changed == 0 {
        let now = disk_by_id(tx, id)?.map_or("gone".to_string(), |d| d.state.to_string());
        return Err(Error::Internal(format!("disk {id} was expected {from} but is {now}")));
    }
    Ok(())
}

pub(crate) fn set_disk_size(tx: &Connection, id: i64, size_bytes: u64) -> Result<()> {
    tx.execute("UPDATE disks SET size_bytes = ?2 WHERE id = ?1", params![id, size_bytes])?;
    Ok(())
}

pub(crate) fn delete_disk_row(tx: &Connection, id: i64) -> Result<()> {
    tx.execute("DELETE FROM disks WHERE id = ?1", [id])?;
    Ok(())
}

// ----- images ------------------------------------------------------------

const IMAGE_COLUMNS: &str = "id, name, os, arch, description, format, virtual_size, sha256, firmware, path, owned, created_at_ms, state";

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<(Image, String)> {
    let format: String = row.get(5)?;
    let firmware: String = row.get(8)?;
    Ok((
        Image {
            id: row.get(0)?,
            name: row.get(1)?,
            os: row.get(2)?,
            arch: row.get(3)?,
            description: row.get(4)?,
            format: format.parse().map_err(|e| bad_column(5, e))?,
            virtual_size: row.get(6)?,
            sha256: row.get(7)?,
            firmware: firmware.parse::<Firmware>().map_err(|e| bad_column(8, e))?,
            path: row.get(9)?,
            owned: row.get(10)?,
            created_at_ms: row.get(11)?,
        },
        row.get(12)?,
    ))
}

/// An image row being imported: written before the copy and hash.
pub(crate) fn insert_image(tx: &Connection, image: &Image) -> Result<i64> {
    if image_any_state(tx, &image.name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "image", field: "name", value: image.name.clone() });
    }
    tx.execute(
        "INSERT INTO images (name, os, arch, description, format, virtual_size, sha256, firmware, path, owned, state, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'importing', ?11)",
        params![
            image.name,
            image.os,
            image.arch,
            image.description,
            image.format.as_str(),
            image.virtual_size,
            image.sha256,
            image.firmware.as_str(),
            image.path,
            image.owned,
            image.created_at_ms
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Completes an import: its file is in place and hashed.
pub(crate) fn finish_image(tx: &Connection, id: i64, path: &str, sha256: &str) -> Result<()> {
    tx.execute(
        "UPDATE images SET state = 'available', path = ?2, sha256 = ?3 WHERE id = ?1 AND state = 'importing'",
        params![id, path, sha256],
    )?;
    Ok(())
}

pub(crate) fn set_image_path(tx: &Connection, id: i64, path: &str) -> Result<()> {
    tx.execute("UPDATE images SET path = ?2 WHERE id = ?1", params![id, path])?;
    Ok(())
}

fn image_any_state(conn: &Connection, name: &str) -> Result<Option<(Image, String)>> {
    Ok(conn.prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1"))?.query_row([name], image_from_row).optional()?)
}

/// An available image by name.
pub(crate) fn image_by_name(conn: &Connection, name: &str) -> Result<Option<Image>> {
    Ok(image_any_state(conn, name)?.filter(|(_, state)| state == "available").map(|(image, _)| image))
}

pub(crate) fn list_images(conn: &Connection) -> Result<Vec<Image>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE state = 'available' ORDER BY name"))?;
    let rows = stmt.query_map([], image_from_row)?;
    Ok(rows.map(|r| r.map(|(image, _)| image)).collect::<rusqlite::Result<_>>()?)
}

/// Images left mid-import or mid-delete by a crash.
pub(crate) fn unsettled_images(conn: &Connection) -> Result<Vec<(Image, String)>> {
    let mut stmt = conn.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE state != 'available' ORDER BY id"))?;
    let rows = stmt.query_map([], image_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The names of the disks cloned from an image (which keep it from being deleted).
pub(crate) fn clones_of(conn: &Connection, image_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM disks WHERE image_id = ?1 ORDER BY name")?;
    let rows = stmt.query_map([image_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn set_image_deleting(tx: &Connection, id: i64) -> Result<()> {
    tx.execute("UPDATE images SET state = 'deleting' WHERE id = ?1", [id])?;
    Ok(())
}

pub(crate) fn delete_image_row(tx: &Connection, id: i64) -> Result<()> {
    tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
    Ok(())
}

// ----- snapshots ---------------------------------------------------------

const SNAPSHOT_COLUMNS: &str = "s.id, v.name, s.name, s.live, s.state, s.created_at_ms";

fn snapshot_from_row(row: &Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot { id: row.get(0)?, vm: row.get(1)?, name: row.get(2)?, live: row.get(3)?, state: row.get(4)?, created_at_ms: row.get(5)? })
}

/// A snapshot being taken (`creating`); a duplicate name on the VM is refused.
pub(crate) fn insert_snapshot(tx: &Connection, vm_id: &str, vm_name: &str, name: &str, live: bool, now_ms: i64) -> Result<i64> {
    if snapshot_by_name(tx, vm_id, name)?.is_some() {
        return Err(Error::SnapshotExists { snapshot: name.to_string(), vm: vm_name.to_string() });
    }
    tx.execute(
        "INSERT INTO snapshots (vm_id, name, live, state, created_at_ms) VALUES (?1, ?2, ?3, 'creating', ?4)",
        params![vm_id, name, live, now_ms],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn snapshot_by_name(conn: &Connection, vm_id: &str, name: &str) -> Result<Option<Snapshot>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s JOIN vms v ON v.id = s.vm_id WHERE s.vm_id = ?1 AND s.name = ?2"
        ))?
        .query_row(params![vm_id, name], snapshot_from_row)
        .optional()?)
}

pub(crate) fn snapshots_of(conn: &Connection, vm_id: &str) -> Result<Vec<Snapshot>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s JOIN vms v ON v.id = s.vm_id WHERE s.vm_id = ?1 ORDER BY s.id"
    ))?;
    let rows = stmt.query_map([vm_id], snapshot_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Snapshots a crash left mid-operation, with their VM's id.
pub(crate) fn unsettled_snapshots(conn: &Connection) -> Result<Vec<(Snapshot, String)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SNAPSHOT_COLUMNS}, s.vm_id FROM snapshots s JOIN vms v ON v.id = s.vm_id WHERE s.state IN ('creating', 'reverting', 'deleting') ORDER BY s.id"
    ))?;
    let rows = stmt.query_map([], |r| Ok((snapshot_from_row(r)?, r.get(6)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn set_snapshot_state(tx: &Connection, id: i64, state: &str) -> Result<()> {
    tx.execute("UPDATE snapshots SET state = ?2 WHERE id = ?1", params![id, state])?;
    Ok(())
}

pub(crate) fn delete_snapshot_row(tx: &Connection, id: i64) -> Result<()> {
    tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
    Ok(())
}

/// A deleted VM's snapshots go with its disks.
pub(crate) fn delete_snapshots_of(tx: &Connection, vm_id: &str) -> Result<()> {
    tx.execute("DELETE FROM snapshots WHERE vm_id = ?1", [vm_id])?;
    Ok(())
}

/// The disk or image (by name) whose file is `path`, if any.
pub(crate) fn file_user(conn: &Connection, path: &str) -> Result<Option<String>> {
    let disk: Option<String> = conn.query_row("SELECT name FROM disks WHERE path = ?1", [path], |r| r.get(0)).optional()?;
    if let Some(name) = disk {
        return Ok(Some(format!("disk {name}")));
    }
    let image: Option<String> = conn.query_row("SELECT name FROM images WHERE path = ?1", [path], |r| r.get(0)).optional()?;
    Ok(image.map(|name| format!("image {name}")))
}
