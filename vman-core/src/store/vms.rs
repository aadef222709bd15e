use std::net::Ipv4Addr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::net::mac::MacAddr;
use crate::storage::model::Firmware;
use crate::template::Template;
use crate::vm::model::{BootSpec, Display, Nic, PortForward, Vm, VmFilter, VmSpec};
use crate::vm::state::VmState;

const COLUMNS: &str = "v.id, v.name, COALESCE(t.name, ''), v.vcpus, v.memory_mib, v.disk_gib, v.state, \
                       v.created_at_ms, v.updated_at_ms, v.kernel, v.initrd, v.cmdline, v.pid, v.accel, v.last_error, \
                       v.firmware, v.cdrom, v.boot_order, v.display, v.display_port, v.cloud_init, v.user_data";
const FROM: &str = "vms v LEFT JOIN templates t ON t.id = v.template_id";

pub(crate) fn insert_vm(tx: &Connection, id: &str, spec: &VmSpec, firmware: Firmware, template: &Template, now_ms: i64) -> Result<()> {
    let (name, boot) = (&spec.name, spec.boot.as_ref());
    if live_vm_id(tx, name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "VM", field: "name", value: name.to_string() });
    }
    let (kernel, initrd, cmdline) = match boot {
        Some(b) => (b.kernel.as_str(), b.initrd.as_deref().unwrap_or(""), b.cmdline.as_str()),
        None => ("", "", ""),
    };
    tx.execute(
        "INSERT INTO vms (id, name, template_id, vcpus, memory_mib, disk_gib, state, created_at_ms, updated_at_ms,
                          kernel, initrd, cmdline, firmware, cdrom, boot_order, display, cloud_init, user_data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created', ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            id,
            name,
            template.id,
            template.vcpus,
            template.memory_mib,
            template.disk_gib,
            now_ms,
            kernel,
            initrd,
            cmdline,
            firmware.as_str(),
            spec.cdrom.as_deref().unwrap_or(""),
            if spec.boot_from_cdrom { "cdrom" } else { "disk" },
            spec.display.as_str(),
            spec.cloud_init,
            spec.user_data.as_deref().unwrap_or("")
        ],
    )?;
    Ok(())
}

pub(crate) fn mac_in_use(tx: &Connection, mac: MacAddr) -> Result<bool> {
    Ok(tx.prepare_cached("SELECT 1 FROM nics WHERE mac = ?1")?.query_row([mac.to_string()], |_| Ok(())).optional()?.is_some())
}

pub(crate) fn insert_nic(tx: &Connection, vm_id: &str, slot: u32, network_id: i64, ip: Ipv4Addr, mac: MacAddr) -> Result<()> {
    tx.prepare_cached("INSERT INTO nics (vm_id, slot, network_id, ip, mac) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![vm_id, slot, network_id, u32::from(ip), mac.to_string()])
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                // The allocator and MAC check ran first under the same write
                // lock, so this is the database constraint catching a bug.
                Error::Internal(format!("NIC {slot} of VM {vm_id}: uniqueness violated for {ip} or {mac}"))
            } else {
                e.into()
            }
        })?;
    Ok(())
}

struct VmRow {
    id: String,
    name: String,
    template: String,
    vcpus: u32,
    memory_mib: u64,
    disk_gib: u64,
    state: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    kernel: String,
    initrd: String,
    cmdline: String,
    pid: u32,
    accel: String,
    last_error: String,
    firmware: String,
    cdrom: String,
    boot_order: String,
    display: String,
    display_port: u16,
    cloud_init: bool,
    user_data: String,
}

fn vm_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VmRow> {
    Ok(VmRow {
        id: r.get(0)?,
        name: r.get(1)?,
        template: r.get(2)?,
        vcpus: r.get(3)?,
        memory_mib: r.get(4)?,
        disk_gib: r.get(5)?,
        state: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
        kernel: r.get(9)?,
        initrd: r.get(10)?,
        cmdline: r.get(11)?,
        pid: r.get(12)?,
        accel: r.get(13)?,
        last_error: r.get(14)?,
        firmware: r.get(15)?,
        cdrom: r.get(16)?,
        boot_order: r.get(17)?,
        display: r.get(18)?,
        display_port: r.get(19)?,
        cloud_init: r.get(20)?,
        user_data: r.get(21)?,
    })
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn complete(conn: &Connection, row: VmRow) -> Result<Vm> {
    let VmRow { id, name, template, vcpus, memory_mib, disk_gib, state, created_at_ms, updated_at_ms, .. } = row;
    let boot = (!row.kernel.is_empty()).then(|| BootSpec { kernel: row.kernel, initrd: non_empty(row.initrd), cmdline: row.cmdline });
    let display: Display = row.display.parse()?;
    let has_process = state.parse::<VmState>()?.has_process();
    let display_address = match display {
        Display::None => None,
        Display::VncUnix if has_process => Some(format!("unix:{}", vnc_socket_path(conn, &id))),
        Display::VncTcp if has_process && row.display_port != 0 => Some(format!("127.0.0.1:{}", row.display_port)),
        _ => None,
    };
    Ok(Vm {
        firmware: row.firmware.parse()?,
        cdrom: non_empty(row.cdrom),
        boot_from_cdrom: row.boot_order == "cdrom",
        display,
        display_address,
        cloud_init: row.cloud_init,
        user_data: non_empty(row.user_data),
        nics: nics_of(conn, &id)?,
        state: state.parse::<VmState>()?,
        boot,
        pid: (row.pid != 0).then_some(row.pid),
        accel: non_empty(row.accel),
        last_error: non_empty(row.last_error),
        port_forwards: super::forwards_of(conn, &id)?
            .into_iter()
            .map(|f| PortForward { nic_index: f.slot, guest_port: f.guest_port, host_address: Ipv4Addr::LOCALHOST, host_port: f.host_port })
            .collect(),
        ssh_keys: super::keys::vm_ssh_keys(conn, &id)?,
        id,
        name,
        template,
        vcpus,
        memory_mib,
        disk_gib,
        created_at_ms,
        updated_at_ms,
    })
}

/// The VNC socket of a VM, found from the database's own path: the state
/// directory is the directory the database is in.
fn vnc_socket_path(conn: &Connection, vm_id: &str) -> String {
    let state_dir = conn.path().map(std::path::Path::new).and_then(std::path::Path::parent).unwrap_or(std::path::Path::new("."));
    crate::runtime::paths::RunPaths::new(&state_dir.join("run"), vm_id).vnc.to_string_lossy().into_owned()
}

fn nics_of(conn: &Connection, vm_id: &str) -> Result<Vec<Nic>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.slot, w.name, w.vlan, n.ip, w.prefix_len, w.gateway, n.mac, h.name
         FROM nics n JOIN networks w ON w.id = n.network_id
         LEFT JOIN host_links h ON h.vm_id = n.vm_id AND h.slot = n.slot
         WHERE n.vm_id = ?1 ORDER BY n.slot",
    )?;
    let rows = stmt.query_map([vm_id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u16>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, u8>(4)?,
            r.get::<_, u32>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    rows.map(|row| {
        let (index, network, vlan, ip, prefix_len, gateway, mac, host_interface) = row?;
        Ok(Nic {
            index,
            network,
            vlan,
            ip: Ipv4Addr::from(ip),
            prefix_len,
            gateway: Ipv4Addr::from(gateway),
            mac: mac.parse()?,
            host_interface,
        })
    })
    .collect()
}

/// The id of the live VM named `name`.
pub(crate) fn live_vm_id(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn.prepare_cached("SELECT id FROM vms WHERE name = ?1 AND deleted_at_ms IS NULL")?.query_row([name], |r| r.get(0)).optional()?)
}

/// A live VM's name first, else any VM's id (deleted ones keep history).
pub(crate) fn vm_id_any(conn: &Connection, name_or_id: &str) -> Result<Option<String>> {
    if let Some(id) = live_vm_id(conn, name_or_id)? {
        return Ok(Some(id));
    }
    Ok(conn.prepare_cached("SELECT id FROM vms WHERE id = ?1")?.query_row([name_or_id], |r| r.get(0)).optional()?)
}

pub(crate) fn vm_by_name(conn: &Connection, name: &str) -> Result<Option<Vm>> {
    let row = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE v.name = ?1 AND v.deleted_at_ms IS NULL"))?
        .query_row([name], vm_row)
        .optional()?;
    row.map(|r| complete(conn, r)).transpose()
}

pub(crate) fn vm_by_id(conn: &Connection, id: &str) -> Result<Option<Vm>> {
    let row = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE v.id = ?1 AND v.deleted_at_ms IS NULL"))?
        .query_row([id], vm_row)
        .optional()?;
    row.map(|r| complete(conn, r)).transpose()
}

/// Live VMs that have (or should have) a QEMU process.
pub(crate) fn vms_with_process(conn: &Connection) -> Result<Vec<Vm>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE v.state IN {} ORDER BY v.name", super::process_states_sql()))?;
    let rows = stmt.query_map([], vm_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|r| complete(conn, r)).collect()
}

/// Ids of every VM ever recorded, live or deleted.
pub(crate) fn all_vm_ids(conn: &Connection) -> Result<Vec<(String, bool)>> {
    let mut stmt = conn.prepare("SELECT id, deleted_at_ms IS NOT NULL FROM vms")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn list_vms(conn: &Connection, filter: &VmFilter) -> Result<Vec<Vm>> {
    // A prefix match on the name index without LIKE's wildcard pitfalls:
    // names are ASCII, so every name with prefix p lies in [p, p || x'FF').
    let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE v.deleted_at_ms IS NULL");
    let mut args: Vec<String> = Vec::new();
    if let Some(state) = filter.state {
        args.push(state.as_str().to_string());
        sql.push_str(&format!(" AND v.state = ?{}", args.len()));
    }
    if let Some(prefix) = &filter.name_prefix {
        args.push(prefix.clone());
        sql.push_str(&format!(" AND substr(v.name, 1, length(?{0})) = ?{0}", args.len()));
    }
    sql.push_str(" ORDER BY v.name");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), vm_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|r| complete(conn, r)).collect()
}

/// What a state change also records about the VM's process.
#[derive(Debug, Default)]
pub(crate) struct ProcessFacts<'a> {
    /// The QEMU pid (0 when the VM has no process any more).
    pub pid: Option<u32>,
    pub accel: Option<&'a str>,
    /// Replaces the last error ("" clears it).
    pub last_error: Option<&'a str>,
}

/// Moves a VM from `from` to `to` only if it is still in `from`: a lost race
/// with another thread or process answers the state it really is in.
pub(crate) fn set_state(tx: &Connection, vm: &Vm, from: VmState, to: VmState, facts: &ProcessFacts<'_>, now_ms: i64) -> Result<()> {
    from.check_transition(to, &vm.name)?;
    let changed = tx
        .prepare_cached(
            "UPDATE vms SET state = ?3, updated_at_ms = ?4, pid = COALESCE(?5, pid), accel = COALESCE(?6, accel),
                            last_error = COALESCE(?7, last_error)
             WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![vm.id, from.as_str(), to.as_str(), now_ms, facts.pid, facts.accel, facts.last_error])?;
    if changed == 1 {
        return Ok(());
    }
    let actual: Option<String> = tx.query_row("SELECT state FROM vms WHERE id = ?1", [&vm.id], |r| r.get(0)).optional()?;
    match actual {
        Some(state) => Err(Error::InvalidTransition { vm: vm.name.clone(), from: state.parse()?, to }),
        None => Err(Error::not_found("VM", &vm.name)),
    }
}

/// Records the pid of the QEMU just spawned for a VM still in `state`
/// (`starting`): from now on a crash leaves a process the next opener knows.
pub(crate) fn record_pid(tx: &Connection, vm_id: &str, state: VmState, pid: u32) -> Result<()> {
    let changed = tx.prepare_cached("UPDATE vms SET pid = ?3 WHERE id = ?1 AND state = ?2 AND deleted_at_ms IS NULL")?.execute(params![
        vm_id,
        state.as_str(),
        pid
    ])?;
    if changed == 1 { Ok(()) } else { Err(Error::Internal(format!("VM {vm_id} left {state} while its QEMU was launched"))) }
}

/// Marks the VM deleted, frees its name, releases its addresses and MACs.
pub(crate) fn soft_delete_vm(tx: &Connection, vm: &Vm, now_ms: i64) -> Result<()> {
    vm.state.check_transition(VmState::Deleted, &vm.name)?;
    let mut stmt = tx.prepare_cached("SELECT network_id, ip FROM nics WHERE vm_id = ?1")?;
    let held = stmt.query_map([&vm.id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
    for (network_id, ip) in held {
        super::release(tx, network_id, Ipv4Addr::from(ip))?;
    }
    tx.prepare_cached("DELETE FROM nics WHERE vm_id = ?1")?.execute([&vm.id])?;
    super::keys::forget_vm_ssh_keys(tx, &vm.id)?;
    let changed = tx
        .prepare_cached("UPDATE vms SET state = 'deleted', deleted_at_ms = ?3, updated_at_ms = ?3 WHERE id = ?1 AND state = ?2")?
        .execute(params![vm.id, vm.state.as_str(), now_ms])?;
    if changed != 1 {
        return Err(Error::Internal(format!("VM {} changed state during delete", vm.name)));
    }
    Ok(())
}

/// Where the VM's VNC server listens on 127.0.0.1 (QEMU chose it at start).
pub(crate) fn set_display_port(tx: &Connection, vm_id: &str, port: u16) -> Result<()> {
    tx.execute("UPDATE vms SET display_port = ?2 WHERE id = ?1", params![vm_id, port])?;
    Ok(())
}

/// The ISO in a VM's CD-ROM drive ('' for none).
pub(crate) fn set_cdrom(tx: &Connection, vm_id: &str, iso: &str) -> Result<()> {
    tx.execute("UPDATE vms SET cdrom = ?2 WHERE id = ?1", params![vm_id, iso])?;
    Ok(())
}
