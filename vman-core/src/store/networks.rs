use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::net::model::{AddrRange, Network, NetworkPlan};

pub(crate) fn insert_network(tx: &Connection, plan: &NetworkPlan, now_ms: i64) -> Result<Network> {
    if network_by_name(tx, &plan.name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "network", field: "name", value: plan.name.clone() });
    }
    let vlan_owner: Option<String> = tx.query_row("SELECT name FROM networks WHERE vlan = ?1", [plan.vlan], |r| r.get(0)).optional()?;
    if let Some(owner) = vlan_owner {
        return Err(Error::AlreadyExists { kind: "network", field: "VLAN id", value: format!("{} (network {owner})", plan.vlan) });
    }
    // Under the write lock (the caller's immediate transaction), so two
    // overlapping creates racing in two processes cannot both pass.
    let first = u32::from(plan.cidr.network());
    let last = u32::from(plan.cidr.broadcast());
    let overlapping: Option<(String, u32, u8)> = tx
        .query_row(
            "SELECT name, network_addr, prefix_len FROM networks
             WHERE network_addr <= ?2 AND network_addr + ((1 << (32 - prefix_len)) - 1) >= ?1
             ORDER BY network_addr LIMIT 1",
            params![first, last],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((other, addr, prefix)) = overlapping {
        return Err(Error::Overlap { cidr: plan.cidr.to_string(), other, other_cidr: format!("{}/{prefix}", Ipv4Addr::from(addr)) });
    }
    let dns = serde_json::to_string(&plan.dns.iter().map(|ip| ip.to_string()).collect::<Vec<_>>())
        .map_err(|e| Error::Internal(format!("cannot encode DNS list: {e}")))?;
    tx.execute(
        "INSERT INTO networks (name, vlan, network_addr, prefix_len, gateway, dns, created_at_ms, uplink)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            plan.name,
            plan.vlan,
            u32::from(plan.cidr.network()),
            plan.cidr.prefix_len(),
            u32::from(plan.gateway),
            dns,
            now_ms,
            plan.uplink.as_deref().unwrap_or("")
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut reserved = tx.prepare("INSERT INTO network_reserved (network_id, first, last) VALUES (?1, ?2, ?3)")?;
    for r in &plan.reserved {
        reserved.execute(params![id, u32::from(r.first), u32::from(r.last)])?;
    }
    let mut free = tx.prepare("INSERT INTO free_ranges (network_id, first, last) VALUES (?1, ?2, ?3)")?;
    for r in &plan.free {
        free.execute(params![id, u32::from(r.first), u32::from(r.last)])?;
    }
    Ok(Network {
        id,
        name: plan.name.clone(),
        vlan: plan.vlan,
        cidr: plan.cidr,
        gateway: plan.gateway,
        reserved: plan.reserved.clone(),
        dns: plan.dns.clone(),
        uplink: plan.uplink.clone(),
        created_at_ms: now_ms,
    })
}

struct NetworkRow {
    id: i64,
    name: String,
    vlan: u16,
    network_addr: u32,
    prefix_len: u8,
    gateway: u32,
    dns: String,
    created_at_ms: i64,
    uplink: String,
}

const COLUMNS: &str = "id, name, vlan, network_addr, prefix_len, gateway, dns, created_at_ms, uplink";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow {
        id: r.get(0)?,
        name: r.get(1)?,
        vlan: r.get(2)?,
        network_addr: r.get(3)?,
        prefix_len: r.get(4)?,
        gateway: r.get(5)?,
        dns: r.get(6)?,
        created_at_ms: r.get(7)?,
        uplink: r.get(8)?,
    })
}

fn complete(conn: &Connection, n: NetworkRow) -> Result<Network> {
    let cidr = Ipv4Net::new(Ipv4Addr::from(n.network_addr), n.prefix_len)
        .map_err(|_| Error::Internal(format!("stored prefix /{} of network {} is invalid", n.prefix_len, n.name)))?;
    let dns_text: Vec<String> =
        serde_json::from_str(&n.dns).map_err(|e| Error::Internal(format!("stored DNS list of network {} is invalid: {e}", n.name)))?;
    let dns = dns_text
        .iter()
        .map(|s| s.parse::<Ipv4Addr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("stored DNS server of network {} is invalid: {e}", n.name)))?;
    let mut stmt = conn.prepare_cached("SELECT first, last FROM network_reserved WHERE network_id = ?1 ORDER BY first")?;
    let reserved = stmt.query_map([n.id], |r| Ok(AddrRange::from_u32(r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(Network {
        id: n.id,
        name: n.name,
        vlan: n.vlan,
        cidr,
        gateway: Ipv4Addr::from(n.gateway),
        reserved,
        dns,
        uplink: (!n.uplink.is_empty()).then_some(n.uplink),
        created_at_ms: n.created_at_ms,
    })
}

pub(crate) fn network_by_name(conn: &Connection, name: &str) -> Result<Option<Network>> {
    let found = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM networks WHERE name = ?1"))?.query_row([name], row).optional()?;
    found.map(|n| complete(conn, n)).transpose()
}

pub(crate) fn list_networks(conn: &Connection) -> Result<Vec<Network>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM networks ORDER BY vlan"))?;
    let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|n| complete(conn, n)).collect()
}

/// Deletes a network that holds no allocation; returns what was deleted.
pub(crate) fn delete_network(tx: &Connection, name: &str) -> Result<Network> {
    let network = network_by_name(tx, name)?.ok_or_else(|| Error::not_found("network", name))?;
    let holders: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT v.name FROM nics n JOIN vms v ON v.id = n.vm_id
             WHERE n.network_id = ?1 ORDER BY v.name LIMIT 4",
        )?;
        stmt.query_map([network.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    if !holders.is_empty() {
        return Err(Error::InUse {
            kind: "Network",
            name: name.to_string(),
            user: format!("addresses held by {}", super::templates::describe_users("VM", &holders)),
        });
    }
    tx.execute("DELETE FROM networks WHERE id = ?1", [network.id])?;
    Ok(network)
}
