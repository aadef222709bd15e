//! Address allocation over the `free_ranges` extents.
//!
//! Each operation is a bounded number of primary-key or unique-index lookups
//! on `free_ranges`, whatever the number of addresses already handed out:
//! take the lowest extent's first address; take a fixed address by splitting
//! the extent that contains it; release by merging with the neighbours that
//! end just before or start just after. Callers run these inside the same
//! immediate transaction as the NIC row that owns the address, and
//! `nics(network_id, ip)` is UNIQUE, so an address can never be handed out
//! twice, across threads or processes. Plain SQL, no SQLite-only features.

use std::net::Ipv4Addr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::net::mac::MacAddr;
use crate::net::model::Network;
use crate::vm::model::Allocation;

/// Takes `wanted`, or the lowest free address when `None`.
pub(crate) fn allocate(tx: &Connection, network: &Network, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    match wanted {
        None => allocate_lowest(tx, network),
        Some(ip) => allocate_exact(tx, network, ip).map(|()| ip),
    }
}

fn allocate_lowest(tx: &Connection, network: &Network) -> Result<Ipv4Addr> {
    let lowest: Option<(u32, u32)> = tx
        .prepare_cached("SELECT first, last FROM free_ranges WHERE network_id = ?1 ORDER BY first LIMIT 1")?
        .query_row([network.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (first, last) = lowest.ok_or_else(|| Error::Exhausted { network: network.name.clone() })?;
    if first == last {
        tx.prepare_cached("DELETE FROM free_ranges WHERE network_id = ?1 AND first = ?2")?.execute(params![network.id, first])?;
    } else {
        tx.prepare_cached("UPDATE free_ranges SET first = ?3 WHERE network_id = ?1 AND first = ?2")?.execute(params![
            network.id,
            first,
            first + 1
        ])?;
    }
    Ok(Ipv4Addr::from(first))
}

fn allocate_exact(tx: &Connection, network: &Network, ip: Ipv4Addr) -> Result<()> {
    if let Some(reason) = network.unassignable_reason(ip) {
        return Err(Error::invalid("IP address", reason));
    }
    let wanted = u32::from(ip);
    let extent: Option<(u32, u32)> = tx
        .prepare_cached(
            "SELECT first, last FROM free_ranges WHERE network_id = ?1 AND first <= ?2
             ORDER BY first DESC LIMIT 1",
        )?
        .query_row(params![network.id, wanted], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (first, last) = match extent {
        Some((first, last)) if last >= wanted => (first, last),
        _ => {
            return Err(Error::AlreadyExists { kind: "allocation", field: "address", value: format!("{ip} on network {}", network.name) });
        }
    };
    // Carve `wanted` out of [first, last]: keep the left part under its key,
    // add the right part as a new extent.
    if first == wanted {
        tx.prepare_cached("DELETE FROM free_ranges WHERE network_id = ?1 AND first = ?2")?.execute(params![network.id, first])?;
    } else {
        tx.prepare_cached("UPDATE free_ranges SET last = ?3 WHERE network_id = ?1 AND first = ?2")?.execute(params![
            network.id,
            first,
            wanted - 1
        ])?;
    }
    if wanted < last {
        tx.prepare_cached("INSERT INTO free_ranges (network_id, first, last) VALUES (?1, ?2, ?3)")?.execute(params![
            network.id,
            wanted + 1,
            last
        ])?;
    }
    Ok(())
}

/// Returns `ip` to the free extents of `network_id`, merging neighbours.
pub(crate) fn release(tx: &Connection, network_id: i64, ip: Ipv4Addr) -> Result<()> {
    let ip = u32::from(ip);
    let left: Option<u32> = match ip.checked_sub(1) {
        Some(before) => tx
            .prepare_cached("SELECT first FROM free_ranges WHERE network_id = ?1 AND last = ?2")?
            .query_row(params![network_id, before], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let right: Option<u32> = match ip.checked_add(1) {
        Some(after) => tx
            .prepare_cached("SELECT last FROM free_ranges WHERE network_id = ?1 AND first = ?2")?
            .query_row(params![network_id, after], |r| r.get(0))
            .optional()?,
        None => None,
    };
    match (left, right) {
        (Some(left_first), Some(right_last)) => {
            tx.prepare_cached("DELETE FROM free_ranges WHERE network_id = ?1 AND first = ?2")?.execute(params![network_id, ip + 1])?;
            tx.prepare_cached("UPDATE free_ranges SET last = ?3 WHERE network_id = ?1 AND first = ?2")?
                .execute(params![network_id, left_first, right_last])?;
        }
        (Some(left_first), None) => {
            tx.prepare_cached("UPDATE free_ranges SET last = ?3 WHERE network_id = ?1 AND first = ?2")?
                .execute(params![network_id, left_first, ip])?;
        }
        (None, Some(_)) => {
            tx.prepare_cached("UPDATE free_ranges SET first = ?2 WHERE network_id = ?1 AND first = ?3")?.execute(params![
                network_id,
                ip,
                ip + 1
            ])?;
        }
        (None, None) => {
            tx.prepare_cached("INSERT INTO free_ranges (network_id, first, last) VALUES (?1, ?2, ?2)")?.execute(params![network_id, ip])?;
        }
    }
    Ok(())
}

/// Every address held on a network, in address order.
pub(crate) fn allocations(conn: &Connection, network: &Network) -> Result<Vec<Allocation>> {
    let mut stmt = conn.prepare(
        "SELECT n.ip, n.mac, n.vm_id, v.name, n.slot FROM nics n JOIN vms v ON v.id = n.vm_id
         WHERE n.network_id = ?1 ORDER BY n.ip",
    )?;
    let rows = stmt.query_map([network.id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    rows.map(|row| {
        let (ip, mac, vm_id, vm_name, nic_index) = row?;
        Ok(Allocation { network: network.name.clone(), ip: Ipv4Addr::from(ip), mac: mac.parse::<MacAddr>()?, vm_id, vm_name, nic_index })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::model::NetworkSpec;
    use crate::store::{Store, insert_network};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn store_with(spec: NetworkSpec) -> (tempfile::TempDir, Store, Network) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), Duration::from_secs(1)).unwrap();
        let net = store.write(|tx| insert_network(tx, &spec.plan().unwrap(), 0)).unwrap();
        (dir, store, net)
    }

    fn free_set(store: &Store, id: i64) -> BTreeSet<u32> {
        store
            .read(|tx| {
                let mut stmt = tx.prepare("SELECT first, last FROM free_ranges WHERE network_id = ?1")?;
                let ranges = stmt.query_map([id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))?;
                let mut set = BTreeSet::new();
                for r in ranges {
                    let (a, b) = r?;
                    set.extend(a..=b);
                }
                Ok(set)
            })
            .unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Auto,
        Exact(u8),
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Auto), any::<u8>().prop_map(Op::Exact), any::<usize>().prop_map(Op::Release)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Against a model set: never hands out the network, broadcast,
        /// gateway or a reserved address, never one twice, always the lowest
        /// free one, and the extents always equal the model's free set.
        #[test]
        fn allocator_matches_a_model(ops in proptest::collection::vec(op(), 1..120)) {
            let (_dir, store, net) = store_with(
                NetworkSpec::new("n", 7, "10.1.2.0/24").gateway("10.1.2.77").reserve("10.1.2.100-10.1.2.109"));
            let base = u32::from(net.cidr.network());
            let mut model: BTreeSet<u32> = (base + 1..base + 255).filter(|ip| {
                let a = Ipv4Addr::from(*ip);
                a != net.gateway && !net.reserved.iter().any(|r| r.contains(a))
            }).collect();
            let mut held: Vec<u32> = Vec::new();
            for op in ops {
                match op {
                    Op::Auto => {
                        let got = store.write(|tx| allocate(tx, &net, None));
                        match model.iter().next().copied() {
                            Some(lowest) => {
                                prop_assert_eq!(u32::from(got.unwrap()), lowest);
                                model.remove(&lowest);
                                held.push(lowest);
                            }
                            None => prop_assert_eq!(got.unwrap_err().kind(), crate::ErrorKind::Exhausted),
                        }
                    }
                    Op::Exact(host) => {
                        let ip = base + u32::from(host);
                        let got = store.write(|tx| allocate(tx, &net, Some(Ipv4Addr::from(ip))));
                        prop_assert_eq!(got.is_ok(), model.remove(&ip), "exact {}", Ipv4Addr::from(ip));
                        if got.is_ok() { held.push(ip); }
                    }
                    Op::Release(i) if !held.is_empty() => {
                        let ip = held.swap_remove(i % held.len());
                        store.write(|tx| release(tx, net.id, Ipv4Addr::from(ip))).unwrap();
                        model.insert(ip);
                    }
                    Op::Release(_) => {}
                }
                prop_assert_eq!(&free_set(&store, net.id), &model);
            }
        }
    }

    #[test]
    fn exact_requests_name_the_reason() {
        let (_dir, store, net) = store_with(NetworkSpec::new("n", 7, "10.0.0.0/29").reserve("10.0.0.6"));
        let try_ip = |s: &str| store.write(|tx| allocate(tx, &net, Some(s.parse().unwrap()))).unwrap_err().to_string();
        assert!(try_ip("10.0.0.0").contains("network address"));
        assert!(try_ip("10.0.0.7").contains("broadcast"));
        assert!(try_ip("10.0.0.1").contains("gateway"));
        assert!(try_ip("10.0.0.6").contains("reserved"));
        assert!(try_ip("10.0.1.3").contains("not inside"));
        store.write(|tx| allocate(tx, &net, Some("10.0.0.3".parse().unwrap()))).unwrap();
        let taken = store.write(|tx| allocate(tx, &net, Some("10.0.0.3".parse().unwrap()))).unwrap_err();
        assert_eq!(taken.kind(), crate::ErrorKind::AlreadyExists);
    }
}
