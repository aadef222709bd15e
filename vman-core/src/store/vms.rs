use std::collections::HashMap;
use std::net::Ipv4Addr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::guest::ssh_key::VmSshKey;
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

/// The statements that read the VMs matching one condition on `v` (the
/// `vms` table) with everything they own: the VM rows joined with their
/// NICs (a VM has a row per NIC, or one with NULL NIC columns), then their
/// port forwards and SSH keys in one statement each, all in the same order
/// (name, then id), so each VM takes its run of rows by one merge. Reading
/// 10,000 VMs is three queries, not one per VM and table; the name order
/// comes from the index on live names, with no sort.
struct VmQueries {
    vms: String,
    forwards: String,
    keys: String,
    /// Whether `vms` joins in the names of the template, networks and taps
    /// (one VM), or gives their ids to look up in [`Names`] (a list).
    joined: bool,
}

/// Where the NIC columns start in [`VmQueries::vms`]' rows.
const NIC_COLUMN: usize = 22;

impl VmQueries {
    /// `single`: the condition selects one VM by a key. Otherwise the port
    /// forwards and SSH keys (rows of few VMs) are read from their own
    /// tables first (a CROSS JOIN fixes that order), so a list costs what
    /// those tables hold rather than a second pass over every VM; and the
    /// names of templates, networks and taps (small tables) are read once
    /// rather than searched for on every row.
    fn new(cond: &str, single: bool) -> VmQueries {
        let join = if single { "JOIN" } else { "CROSS JOIN" };
        // Only taps have a VM and slot; saying so lets SQLite use the
        // partial index host_links_by_vm.
        let vms = if single {
            format!(
                "SELECT {COLUMNS}, n.slot, w.name, w.vlan, n.ip, w.prefix_len, w.gateway, n.mac, h.name
                 FROM {FROM} LEFT JOIN nics n ON n.vm_id = v.id LEFT JOIN networks w ON w.id = n.network_id
                 LEFT JOIN host_links h ON h.kind = 'tap' AND h.vm_id = n.vm_id AND h.slot = n.slot
                 WHERE {cond} ORDER BY v.name, v.id, n.slot"
            )
        } else {
            let columns = COLUMNS.replacen("COALESCE(t.name, '')", "v.template_id", 1);
            format!(
                "SELECT {columns}, n.slot, n.network_id, n.ip, n.mac FROM vms v LEFT JOIN nics n ON n.vm_id = v.id
                 WHERE {cond} ORDER BY v.name, v.id, n.slot"
            )
        };
        VmQueries {
            joined: single,
            vms,
            forwards: format!(
                "SELECT f.vm_id, f.slot, f.guest_port, f.host_port FROM port_forwards f {join} vms v ON v.id = f.vm_id
                 WHERE {cond} ORDER BY v.name, v.id, f.slot, f.guest_port"
            ),
            keys: format!(
                "SELECT k.vm_id, k.name, k.public_key FROM vm_ssh_keys k {join} vms v ON v.id = k.vm_id
                 WHERE {cond} ORDER BY v.name, v.id, k.position"
            ),
        }
    }

    /// The queries for a fixed condition, formatted once per process.
    fn fixed(cell: &'static std::sync::OnceLock<VmQueries>, single: bool, cond: impl FnOnce() -> String) -> &'static VmQueries {
        cell.get_or_init(|| VmQueries::new(&cond(), single))
    }
}

/// The rows of a child table, in the order of the VMs they belong to:
/// each VM takes the run of rows with its id from the front.
struct Children<T>(std::iter::Peekable<std::vec::IntoIter<(String, T)>>);

impl<T> Children<T> {
    /// Reads them all; `decode` gets the row, whose first column is the VM id.
    fn read(
        conn: &Connection,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
        mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Children<T>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(args)?;
        let mut all = Vec::new();
        while let Some(row) = rows.next()? {
            all.push((row.get(0)?, decode(row)?));
        }
        Ok(Children(all.into_iter().peekable()))
    }

    fn take(&mut self, vm_id: &str) -> Vec<T> {
        let mut mine = Vec::new();
        while let Some((_, item)) = self.0.next_if(|(id, _)| id == vm_id) {
            mine.push(item);
        }
        mine
    }

    /// Rows no VM took: the merge went out of step (a bug, never data loss).
    fn check_all_taken(&mut self, what: &str) -> Result<()> {
        match self.0.peek() {
            None => Ok(()),
            Some((vm_id, _)) => Err(Error::Internal(format!("{what} of VM {vm_id} read out of order"))),
        }
    }
}

fn text<'r>(r: &'r rusqlite::Row<'_>, column: usize) -> Result<&'r str> {
    Ok(r.get_ref(column)?.as_str().map_err(rusqlite::Error::from)?)
}

fn non_empty(r: &rusqlite::Row<'_>, column: usize) -> Result<Option<String>> {
    let s = text(r, column)?;
    Ok(if s.is_empty() { None } else { Some(s.to_owned()) })
}

/// Reads the VMs `q` selects, with everything they own, in name order:
/// port forwards and keys first, then each VM row is decoded straight into
/// its [`Vm`] and the rows after it with the same id add its other NICs.
fn select_vms(conn: &Connection, q: &VmQueries, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Vm>> {
    let mut forwards = Children::read(conn, &q.forwards, args, |r| {
        Ok(PortForward { nic_index: r.get(1)?, guest_port: r.get(2)?, host_address: Ipv4Addr::LOCALHOST, host_port: r.get(3)? })
    })?;
    let mut keys = Children::read(conn, &q.keys, args, |r| super::keys::vm_ssh_key(text(r, 0)?, r.get(1)?, r.get(2)?))?;
    let names = if q.joined { Names::Joined } else { Names::read(conn)? };
    let mut stmt = conn.prepare_cached(&q.vms)?;
    let mut rows = stmt.query(args)?;
    let mut vms: Vec<Vm> = Vec::new();
    while let Some(r) = rows.next()? {
        let nic = names.nic(r)?;
        if let Some(last) = vms.last_mut()
            && last.id == text(r, 0)?
        {
            last.nics.extend(nic);
            continue;
        }
        let id: String = r.get(0)?;
        let owned = Owned { nics: nic.into_iter().collect(), port_forwards: forwards.take(&id), ssh_keys: keys.take(&id) };
        vms.push(decode_vm(conn, r, &names, id, owned)?);
    }
    forwards.check_all_taken("port forward")?;
    keys.check_all_taken("SSH key")?;
    Ok(vms)
}

/// A network as its NICs show it: name, VLAN, prefix length, gateway.
type NetworkNames = (String, u16, u8, u32);

/// Where the names in a row of [`VmQueries::vms`] come from.
enum Names {
    /// Joined into the row.
    Joined,
    /// Looked up by the ids in the row, in maps read before it.
    Read {
        templates: HashMap<i64, String>,
        networks: HashMap<i64, NetworkNames>,
        /// (slot, tap) by VM id; only VMs running bridged have any.
        taps: HashMap<String, Vec<(u32, String)>>,
    },
}

impl Names {
    fn read(conn: &Connection) -> Result<Names> {
        let templates = conn
            .prepare_cached("SELECT id, name FROM templates")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let networks = conn
            .prepare_cached("SELECT id, name, vlan, prefix_len, gateway FROM networks")?
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))?
            .collect::<rusqlite::Result<_>>()?;
        let mut taps: HashMap<String, Vec<(u32, String)>> = HashMap::new();
        let mut stmt = conn.prepare_cached("SELECT vm_id, slot, name FROM host_links WHERE kind = 'tap'")?;
        for tap in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))? {
            let (vm_id, slot, name) = tap?;
            taps.entry(vm_id).or_default().push((slot, name));
        }
        Ok(Names::Read { templates, networks, taps })
    }

    /// The template's name in column 2 (its id when looked up; "" once deleted).
    fn template(&self, r: &rusqlite::Row<'_>) -> Result<String> {
        match self {
            Names::Joined => Ok(r.get(2)?),
            Names::Read { templates, .. } => Ok(r.get::<_, Option<i64>>(2)?.and_then(|id| templates.get(&id)).cloned().unwrap_or_default()),
        }
    }

    /// The NIC in the row, if the VM has one.
    fn nic(&self, r: &rusqlite::Row<'_>) -> Result<Option<Nic>> {
        let Some(index) = r.get::<_, Option<u32>>(NIC_COLUMN)? else { return Ok(None) };
        let nic = match self {
            Names::Joined => Nic {
                index,
                network: r.get(NIC_COLUMN + 1)?,
                vlan: r.get(NIC_COLUMN + 2)?,
                ip: Ipv4Addr::from(r.get::<_, u32>(NIC_COLUMN + 3)?),
                prefix_len: r.get(NIC_COLUMN + 4)?,
                gateway: Ipv4Addr::from(r.get::<_, u32>(NIC_COLUMN + 5)?),
                mac: text(r, NIC_COLUMN + 6)?.parse()?,
                host_interface: r.get(NIC_COLUMN + 7)?,
            },
            Names::Read { networks, taps, .. } => {
                let network_id: i64 = r.get(NIC_COLUMN + 1)?;
                let (network, vlan, prefix_len, gateway) = networks
                    .get(&network_id)
                    .ok_or_else(|| Error::Internal(format!("NIC {index} is on network {network_id}, which is not in the store")))?;
                let host_interface = if taps.is_empty() {
                    None
                } else {
                    taps.get(text(r, 0)?).and_then(|mine| mine.iter().find(|(slot, _)| *slot == index)).map(|(_, name)| name.clone())
                };
                Nic {
                    index,
                    network: network.clone(),
                    vlan: *vlan,
                    ip: Ipv4Addr::from(r.get::<_, u32>(NIC_COLUMN + 2)?),
                    prefix_len: *prefix_len,
                    gateway: Ipv4Addr::from(*gateway),
                    mac: text(r, NIC_COLUMN + 3)?.parse()?,
                    host_interface,
                }
            }
        };
        Ok(Some(nic))
    }
}

/// What a VM owns in other tables.
struct Owned {
    nics: Vec<Nic>,
    port_forwards: Vec<PortForward>,
    ssh_keys: Vec<VmSshKey>,
}

/// A row of [`COLUMNS`] as a [`Vm`]; only the text a `Vm` keeps is copied.
fn decode_vm(conn: &Connection, r: &rusqlite::Row<'_>, names: &Names, id: String, owned: Owned) -> Result<Vm> {
    let kernel = text(r, 9)?;
    let boot = (!kernel.is_empty())
        .then(|| -> Result<BootSpec> { Ok(BootSpec { kernel: kernel.to_owned(), initrd: non_empty(r, 10)?, cmdline: r.get(11)? }) });
    let display: Display = text(r, 18)?.parse()?;
    let state: VmState = text(r, 6)?.parse()?;
    let display_port: u16 = r.get(19)?;
    let display_address = match display {
        Display::None => None,
        Display::VncUnix if state.has_process() => Some(format!("unix:{}", vnc_socket_path(conn, &id))),
        Display::VncTcp if state.has_process() && display_port != 0 => Some(format!("127.0.0.1:{display_port}")),
        _ => None,
    };
    let pid: u32 = r.get(12)?;
    Ok(Vm {
        name: r.get(1)?,
        template: names.template(r)?,
        vcpus: r.get(3)?,
        memory_mib: r.get(4)?,
        disk_gib: r.get(5)?,
        state,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
        boot: boot.transpose()?,
        pid: (pid != 0).then_some(pid),
        accel: non_empty(r, 13)?,
        last_error: non_empty(r, 14)?,
        firmware: text(r, 15)?.parse()?,
        cdrom: non_empty(r, 16)?,
        boot_from_cdrom: text(r, 17)? == "cdrom",
        display,
        display_address,
        cloud_init: r.get(20)?,
        user_data: non_empty(r, 21)?,
        nics: owned.nics,
        port_forwards: owned.port_forwards,
        ssh_keys: owned.ssh_keys,
        id,
    })
}

/// The VNC socket of a VM, found from the database's own path: the state
/// directory is the directory the database is in.
fn vnc_socket_path(conn: &Connection, vm_id: &str) -> String {
    let state_dir = conn.path().map(std::path::Path::new).and_then(std::path::Path::parent).unwrap_or(std::path::Path::new("."));
    crate::runtime::paths::RunPaths::new(&state_dir.join("run"), vm_id).vnc.to_string_lossy().into_owned()
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
    static Q: std::sync::OnceLock<VmQueries> = std::sync::OnceLock::new();
    let q = VmQueries::fixed(&Q, true, || "v.name = ?1 AND v.deleted_at_ms IS NULL".into());
    Ok(select_vms(conn, q, &[&name])?.pop())
}

pub(crate) fn vm_by_id(conn: &Connection, id: &str) -> Result<Option<Vm>> {
    static Q: std::sync::OnceLock<VmQueries> = std::sync::OnceLock::new();
    let q = VmQueries::fixed(&Q, true, || "v.id = ?1 AND v.deleted_at_ms IS NULL".into());
    Ok(select_vms(conn, q, &[&id])?.pop())
}

/// Live VMs that have (or should have) a QEMU process.
pub(crate) fn vms_with_process(conn: &Connection) -> Result<Vec<Vm>> {
    static Q: std::sync::OnceLock<VmQueries> = std::sync::OnceLock::new();
    let q = VmQueries::fixed(&Q, false, || format!("v.state IN {}", super::process_states_sql()));
    select_vms(conn, q, &[])
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
    static Q: [std::sync::OnceLock<VmQueries>; 4] = [const { std::sync::OnceLock::new() }; 4];
    let state = filter.state.map(VmState::as_str);
    let prefix = filter.name_prefix.as_deref();
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(2);
    let mut cond = String::from("v.deleted_at_ms IS NULL");
    if let Some(state) = &state {
        args.push(state);
        cond.push_str(&format!(" AND v.state = ?{}", args.len()));
    }
    if let Some(prefix) = &prefix {
        args.push(prefix);
        cond.push_str(&format!(" AND substr(v.name, 1, length(?{0})) = ?{0}", args.len()));
    }
    let q = VmQueries::fixed(&Q[usize::from(state.is_some()) * 2 + usize::from(prefix.is_some())], false, || cond);
    select_vms(conn, q, &args)
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
