//! The state store: one SQLite database per state directory.
//!
//! All SQL of vman lives below this module, so the same scheme can later run
//! against a replicated database. Every mutation runs in one `BEGIN IMMEDIATE`
//! transaction: the write lock is taken up front, so a check-then-write (is the
//! name free? which address is next?) cannot race another thread or process,
//! and a crash leaves either all of it or none.

mod batches;
mod commit_watch;
mod disks;
mod events;
mod hostlinks;
mod ipam;
mod keys;
mod networks;
mod schema;
mod settings;
mod templates;
mod vms;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

pub(crate) use batches::{
    batch_by_id, batch_by_name, batch_members, batch_of_vm, insert_batch, list_batches, set_batch_state, set_vm_batch, unsettled_batches,
};
pub(crate) use commit_watch::CommitWatch;
pub(crate) use disks::{
    NewDisk, clones_of, delete_disk_row, delete_image_row, delete_snapshot_row, delete_snapshots_of, disk_by_id, disk_by_name,
    disks_in_states, disks_of_vm, file_user, finish_image, free_disk_slot, image_by_name, insert_disk, insert_image, insert_snapshot,
    list_disks, list_images, set_disk_path, set_disk_size, set_disk_state, set_image_deleting, set_image_path, set_snapshot_state,
    snapshot_by_name, snapshots_of, unsettled_images, unsettled_snapshots,
};
pub(crate) use events::{events_after, history_of, insert_event, newest_event_id, recent_events};
pub(crate) use hostlinks::{
    ForwardRow, HostLink, all_links, forget_link, leases_of, link, networks_of_vm, record_link, running_vms_on, set_forwards, taps_of,
};
pub(crate) use ipam::{allocate, allocations, release};
pub(crate) use keys::{copy_ssh_keys_to_vm, delete_ssh_key, insert_ssh_key, list_ssh_keys, ssh_key_by_name};
pub(crate) use networks::{delete_network, insert_network, list_networks, network_by_name};
pub(crate) use settings::{put_setting, setting, settings};
pub(crate) use templates::{delete_template, describe_users, insert_template, list_templates, template_by_name};
pub(crate) use vms::{
    ProcessFacts, all_vm_ids, insert_nic, insert_vm, list_vms, live_vm_id, mac_in_use, record_pid, set_cdrom, set_display_port, set_state,
    soft_delete_vm, vm_by_id, vm_by_name, vm_id_any, vms_with_process,
};

/// The database file inside a state directory.
pub const DB_FILE: &str = "vman.db";

/// How many prepared statements the connection keeps: more than all the
/// distinct statements of the store (about 150), so none is prepared twice.
const STATEMENT_CACHE: usize = 256;

pub(crate) struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
    /// Rung after every commit, so every [`CommitWatch`] on the directory
    /// reads the events table again.
    bell: commit_watch::Bell,
}

thread_local! {
    /// When the current thread's wait for another process's write lock ends.
    /// The busy handler runs on the thread that holds the connection, which
    /// is the thread that set this, so a plain thread-local is exact.
    static BUSY_DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Waits for another connection's lock in short steps until the deadline.
///
/// SQLite's own handler sleeps 1, 2, 5, 10 … 100 ms between tries; a process
/// writing in a loop re-takes the lock within microseconds of releasing it,
/// so a waiter polling that slowly almost never finds it free and starves.
/// Retrying every 100 µs lets every writer in on a contended store.
fn busy_wait(retries: i32) -> bool {
    let deadline = BUSY_DEADLINE.with(|d| d.get());
    if deadline.is_none_or(|d| Instant::now() >= d) {
        return false;
    }
    let step = if retries < 1000 { Duration::from_micros(100) } else { Duration::from_millis(1) };
    std::thread::sleep(step);
    true
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the database and brings its schema up to date.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Store> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        // The busy handler first: every later statement may meet another
        // process's lock, including the switch to WAL on a fresh file.
        conn.busy_handler(Some(busy_wait))?;
        set_busy_deadline(busy_timeout);
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Internal(format!("SQLite refused WAL mode (got {mode})")));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 16 MiB of page cache (SQLite's default is 2 MiB): a store with tens
        // of thousands of NICs keeps its indexes in memory, so allocation in a
        // nearly full /16 costs what it costs in an empty one.
        conn.pragma_update(None, "cache_size", -16_384)?;
        // rusqlite keeps 16 prepared statements by default; one VM create
        // alone uses more than that, so each call re-prepared most of them.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        let bell = commit_watch::Bell::open(dir_of(path))?;
        // A writer killed between its commit and its ring left subscribers
        // asleep; whoever opens the directory next wakes them.
        bell.ring();
        Ok(Store { conn: Mutex::new(conn), path: path.to_path_buf(), busy_timeout, bell })
    }

    /// A descriptor that becomes readable after any commit to this
    /// database, by any connection in any process (see [`CommitWatch`]).
    pub fn commit_watch(&self) -> Result<CommitWatch> {
        CommitWatch::new(dir_of(&self.path))
    }

    /// Runs `f` in an immediate (write-locked) transaction; commits on `Ok`.
    /// `f` must do no host work (no netlink, spawn, signal or wait): every
    /// writer of every process waits while it runs.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock();
        set_busy_deadline(self.busy_timeout);
        let tx = Tx::begin(&conn, "BEGIN IMMEDIATE")?;
        let out = f(&tx)?;
        tx.commit()?;
        // Only now is the commit visible to other connections.
        self.bell.ring();
        Ok(out)
    }

    /// Runs `f` in a read transaction, so it sees one consistent snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock();
        set_busy_deadline(self.busy_timeout);
        let tx = Tx::begin(&conn, "BEGIN DEFERRED")?;
        let out = f(&tx)?;
        // Ends the read snapshot (nothing was written).
        tx.commit()?;
        Ok(out)
    }
}

/// A transaction of the store, the only handle callers outside `store/`
/// get: they pass it to the store's functions and never see the database
/// engine behind it, so the same scheme can later run on another one.
///
/// BEGIN and COMMIT are prepared once and kept, like every statement of the
/// store (rusqlite's `Transaction` parses them again at each call, which
/// was a fifth of the cost of reading one VM). Dropped without
/// [`Tx::commit`] (an error or a panic in the caller), it rolls back.
pub(crate) struct Tx<'c>(&'c Connection);

impl<'c> Tx<'c> {
    fn begin(conn: &'c Connection, begin: &str) -> Result<Tx<'c>> {
        conn.prepare_cached(begin)?.execute([])?;
        Ok(Tx(conn))
    }

    fn commit(self) -> Result<()> {
        // On failure `self` drops here and rolls back.
        self.0.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.0.is_autocommit() {
            return; // committed (or SQLite already rolled back)
        }
        if let Err(e) = self.0.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([])) {
            log::warn!("rolling back a state database transaction failed: {e}");
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Database(crate::error::DatabaseError::new(e))
    }
}

/// Applies each pending migration in its own immediate transaction. The
/// version is re-read under the write lock, so processes opening a fresh
/// directory at the same moment apply each migration exactly once.
fn migrate(conn: &mut Connection) -> Result<()> {
    for (index, sql) in schema::MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if current > schema::MIGRATIONS.len() as i64 {
            return Err(Error::Unsupported {
                what: format!("state database schema version {current} is newer than this vman ({})", schema::MIGRATIONS.len()),
                source: None,
            });
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("state database migrated to version {version}");
    }
    Ok(())
}

/// The directory holding the database file (and its WAL, shm and bell).
fn dir_of(db: &Path) -> &Path {
    db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn set_busy_deadline(timeout: Duration) {
    BUSY_DEADLINE.with(|d| d.set(Instant::now().checked_add(timeout)));
}

/// `('starting','running',…)`: the states in which a VM has a QEMU, as an
/// SQL list, derived from the state machine so SQL cannot drift from it.
pub(crate) fn process_states_sql() -> &'static str {
    static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let states: Vec<String> =
            crate::VmState::ALL.into_iter().filter(|s| s.has_process()).map(|s| format!("'{}'", s.as_str())).collect();
        format!("({})", states.join(","))
    })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// True when SQLite refused a write because of a UNIQUE/PK constraint.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        drop(Store::open(&path, Duration::from_secs(1)).unwrap());
        let store = Store::open(&path, Duration::from_secs(1)).unwrap();
        let version: i64 = store.read(|tx| Ok(tx.pragma_query_value(None, "user_version", |r| r.get(0))?)).unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
        let fk: i64 = store.read(|tx| Ok(tx.pragma_query_value(None, "foreign_keys", |r| r.get(0))?)).unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn the_sql_list_of_states_with_a_process_follows_the_state_machine() {
        assert_eq!(process_states_sql(), "('starting','running','paused','stopping')");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        drop(Store::open(&path, Duration::from_secs(1)).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
    }
}
