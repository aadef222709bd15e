//! Rows for the host interfaces vman makes and the ports it forwards.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// A host interface vman made (or is about to make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostLink {
    pub name: String,
    pub is_bridge: bool,
    pub network_id: i64,
    pub vm_id: Option<String>,
    pub slot: Option<u32>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostLink> {
    Ok(HostLink {
        name: r.get(0)?,
        is_bridge: r.get::<_, String>(1)? == "bridge",
        network_id: r.get(2)?,
        vm_id: r.get(3)?,
        slot: r.get(4)?,
    })
}

const COLUMNS: &str = "name, kind, network_id, vm_id, slot";

/// Records a link (idempotent: an existing row of that name is kept).
pub(crate) fn record_link(tx: &Connection, link: &HostLink, now_ms: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO host_links (name, kind, network_id, vm_id, slot, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![link.name, if link.is_bridge { "bridge" } else { "tap" }, link.network_id, link.vm_id, link.slot, now_ms])?;
    Ok(())
}

pub(crate) fn forget_link(tx: &Connection, name: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM host_links WHERE name = ?1")?.execute([name])?;
    Ok(())
}

pub(crate) fn link(conn: &Connection, name: &str) -> Result<Option<HostLink>> {
    Ok(conn.prepare_cached(&format!("SELECT {COLUMNS} FROM host_links WHERE name = ?1"))?.query_row([name], row).optional()?)
}

pub(crate) fn all_links(conn: &Connection) -> Result<Vec<HostLink>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM host_links ORDER BY kind DESC, name"))?;
    Ok(stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn taps_of(conn: &Connection, vm_id: &str) -> Result<Vec<HostLink>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM host_links WHERE vm_id = ?1 ORDER BY slot"))?;
    Ok(stmt.query_map([vm_id], row)?.collect::<rusqlite::Result<_>>()?)
}

/// How many VMs with a QEMU process have a NIC on the network.
pub(crate) fn running_vms_on(conn: &Connection, network_id: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT COUNT(DISTINCT v.id) FROM nics n JOIN vms v ON v.id = n.vm_id
             WHERE n.network_id = ?1 AND v.state IN {}",
            super::process_states_sql()
        ))?
        .query_row([network_id], |r| r.get(0))?)
}

/// Every (MAC, IP) allocated on the network: what its DHCP server serves.
pub(crate) fn leases_of(conn: &Connection, network_id: i64) -> Result<Vec<(String, u32)>> {
    let mut stmt = conn.prepare_cached("SELECT mac, ip FROM nics WHERE network_id = ?1 ORDER BY ip")?;
    Ok(stmt.query_map([network_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
}

/// A port forward of a VM's NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardRow {
    pub slot: u32,
    pub guest_port: u16,
    pub host_port: u16,
}

pub(crate) fn set_forwards(tx: &Connection, vm_id: &str, forwards: &[ForwardRow]) -> Result<()> {
    tx.prepare_cached("DELETE FROM port_forwards WHERE vm_id = ?1")?.execute([vm_id])?;
    let mut insert = tx.prepare_cached("INSERT INTO port_forwards (vm_id, slot, guest_port, host_port) VALUES (?1, ?2, ?3, ?4)")?;
    for f in forwards {
        insert.execute(params![vm_id, f.slot, f.guest_port, f.host_port])?;
    }
    Ok(())
}

/// The networks a VM has NICs on.
pub(crate) fn networks_of_vm(conn: &Connection, vm_id: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT network_id FROM nics WHERE vm_id = ?1")?;
    Ok(stmt.query_map([vm_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}
