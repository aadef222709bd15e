//! [`Manager`]: the handle an embedding program holds on a state directory.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::event::{Actor, Event, NewEvent, ObjectKind};
use crate::mac::MacAddr;
use crate::network::{Network, NetworkSpec};
use crate::state::VmState;
use crate::store::{self, Store, now_ms};
use crate::template::{Template, TemplateSpec};
use crate::vm::{Allocation, Vm, VmFilter, VmSpec};

/// How to open a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenOptions {
    /// How long a write waits for another thread's or process's write lock.
    pub busy_timeout_ms: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { busy_timeout_ms: 10_000 }
    }
}

/// Where vman keeps state when the embedding program names no directory:
/// `$VMAN_STATE_DIR`, else `/var/lib/vman` for root, else
/// `$XDG_STATE_HOME/vman`, else `~/.local/state/vman`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMAN_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/vman");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("vman");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/vman")
}

/// The most events one history query returns.
pub const MAX_EVENT_LIMIT: u32 = 10_000;

/// A handle on one state directory.
///
/// `Manager` is `Send + Sync`: share one across threads, or open several on
/// the same directory from several threads or processes; the database
/// serializes their writes.
#[derive(Debug)]
pub struct Manager {
    state_dir: PathBuf,
    store: Store,
    actor: Actor,
}

impl Manager {
    /// Opens `state_dir`, creating it (mode 0700) and its database if missing.
    pub fn open(state_dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Manager> {
        let state_dir = state_dir.as_ref();
        if state_dir.as_os_str().is_empty() {
            return Err(Error::invalid("state directory", "must not be empty"));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| Error::io("create state directory", state_dir, e))?;
        let store = Store::open(&state_dir.join(store::DB_FILE), Duration::from_millis(options.busy_timeout_ms))?;
        Ok(Manager { state_dir: state_dir.to_path_buf(), store, actor: Actor::current() })
    }

    /// The state directory this manager works in.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    // ----- templates -------------------------------------------------------

    /// Creates a size template.
    pub fn create_template(&self, spec: &TemplateSpec) -> Result<Template> {
        spec.validate()?;
        self.store.write(|tx| {
            let now = now_ms();
            let template = store::insert_template(tx, spec, now)?;
            let details = json!({
                "vcpus": template.vcpus, "memory_mib": template.memory_mib, "disk_gib": template.disk_gib,
            });
            self.record(tx, now, ObjectKind::Template, &template.id.to_string(), &template.name, "created", details)?;
            Ok(template)
        })
    }

    pub fn template(&self, name: &str) -> Result<Template> {
        self.store.read(|tx| store::template_by_name(tx, name)?.ok_or_else(|| Error::not_found("template", name)))
    }

    pub fn templates(&self) -> Result<Vec<Template>> {
        self.store.read(|tx| store::list_templates(tx))
    }

    /// Deletes a template; refused with [`crate::ErrorKind::InUse`] while a
    /// live VM was made from it.
    pub fn delete_template(&self, name: &str) -> Result<()> {
        self.store.write(|tx| {
            let now = now_ms();
            let template = store::delete_template(tx, name)?;
            self.record(tx, now, ObjectKind::Template, &template.id.to_string(), name, "deleted", json!({}))
        })
    }

    // ----- networks --------------------------------------------------------

    /// Creates a VLAN network and its address pool.
    pub fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        let plan = spec.plan()?;
        self.store.write(|tx| {
            let now = now_ms();
            let network = store::insert_network(tx, &plan, now)?;
            let details = json!({
                "vlan": network.vlan, "cidr": network.cidr.to_string(), "gateway": network.gateway.to_string(),
            });
            self.record(tx, now, ObjectKind::Network, &network.id.to_string(), &network.name, "created", details)?;
            Ok(network)
        })
    }

    pub fn network(&self, name: &str) -> Result<Network> {
        self.store.read(|tx| store::network_by_name(tx, name)?.ok_or_else(|| Error::not_found("network", name)))
    }

    /// All networks, by VLAN id.
    pub fn networks(&self) -> Result<Vec<Network>> {
        self.store.read(|tx| store::list_networks(tx))
    }

    /// Deletes a network; refused with [`crate::ErrorKind::InUse`] while any
    /// address on it is allocated.
    pub fn delete_network(&self, name: &str) -> Result<()> {
        self.store.write(|tx| {
            let now = now_ms();
            let network = store::delete_network(tx, name)?;
            self.record(tx, now, ObjectKind::Network, &network.id.to_string(), name, "deleted", json!({}))
        })
    }

    /// Who holds which address of a network, in address order.
    pub fn allocations(&self, network: &str) -> Result<Vec<Allocation>> {
        self.store.read(|tx| {
            let network = store::network_by_name(tx, network)?.ok_or_else(|| Error::not_found("network", network))?;
            store::allocations(tx, &network)
        })
    }

    // ----- VMs -------------------------------------------------------------

    /// Records a VM with its NICs, allocating every address and MAC in one
    /// transaction: if any NIC cannot get one, nothing is recorded.
    pub fn create_vm(&self, spec: &VmSpec) -> Result<Vm> {
        let nics = spec.validate()?;
        let id = uuid::Uuid::now_v7().to_string();
        self.store.write(|tx| {
            let now = now_ms();
            let template = store::template_by_name(tx, &spec.template)?
                .ok_or_else(|| Error::not_found("template", &spec.template))?;
            store::insert_vm(tx, &id, &spec.name, &template, now)?;
            for (slot, nic) in nics.iter().enumerate() {
                let network = store::network_by_name(tx, &nic.network)?
                    .ok_or_else(|| Error::not_found("network", &nic.network))?;
                let ip = store::allocate(tx, &network, nic.ip)?;
                let mac = match nic.mac {
                    Some(mac) if store::mac_in_use(tx, mac)? => {
                        return Err(Error::AlreadyExists { kind: "NIC", field: "MAC", value: mac.to_string() });
                    }
                    Some(mac) => mac,
                    None => self.fresh_mac(tx)?,
                };
                store::insert_nic(tx, &id, slot as u32, network.id, ip, mac)?;
            }
            let vm = store::vm_by_id(tx, &id)?.ok_or_else(|| Error::Internal("VM vanished while created".into()))?;
            let details = json!({
                "template": vm.template,
                "nics": vm.nics.iter().map(|n| json!({"network": n.network, "ip": n.ip.to_string(), "mac": n.mac.to_string()})).collect::<Vec<_>>(),
            });
            self.record(tx, now, ObjectKind::Vm, &vm.id, &vm.name, "created", details)?;
            Ok(vm)
        })
    }

    /// A random 52:54:00 MAC not used in this store. With 2^24 candidates a
    /// collision is rare; eight draws that all collide mean the space is
    /// nearly full, which is worth an error rather than a long loop.
    fn fresh_mac(&self, tx: &rusqlite::Transaction<'_>) -> Result<MacAddr> {
        for _ in 0..8 {
            let mac = MacAddr::random_qemu()?;
            if !store::mac_in_use(tx, mac)? {
                return Ok(mac);
            }
        }
        Err(Error::Internal("no unused MAC address found under 52:54:00 after 8 tries".into()))
    }

    /// A live VM by name.
    pub fn vm(&self, name: &str) -> Result<Vm> {
        self.store.read(|tx| store::vm_by_name(tx, name)?.ok_or_else(|| Error::not_found("VM", name)))
    }

    /// Live VMs matching `filter`, by name.
    pub fn vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        self.store.read(|tx| store::list_vms(tx, filter))
    }

    /// Soft-deletes a VM: its name is freed for reuse, its addresses and MACs
    /// are released in the same transaction, its history stays.
    pub fn delete_vm(&self, name: &str) -> Result<()> {
        self.store.write(|tx| {
            let now = now_ms();
            let vm = store::vm_by_name(tx, name)?.ok_or_else(|| Error::not_found("VM", name))?;
            if vm.state.has_process() {
                return Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action: "delete", needs: "a stopped VM" });
            }
            store::soft_delete_vm(tx, &vm, now)?;
            let released = vm.nics.iter().map(|n| n.ip.to_string()).collect::<Vec<_>>();
            self.record(tx, now, ObjectKind::Vm, &vm.id, &vm.name, "deleted", json!({"released": released}))
        })
    }

    /// Moves a VM along the state machine, recording the change. Used by the
    /// runtime; fails with [`crate::ErrorKind::InvalidState`] if the
    /// transition is illegal or the VM is no longer in `from`.
    #[allow(dead_code)]
    pub(crate) fn transition(&self, vm: &Vm, from: VmState, to: VmState, details: serde_json::Value) -> Result<()> {
        self.store.write(|tx| {
            let now = now_ms();
            store::set_state(tx, vm, from, to, now)?;
            let mut details = details;
            if let Some(map) = details.as_object_mut() {
                map.insert("from".into(), json!(from.as_str()));
                map.insert("to".into(), json!(to.as_str()));
            }
            self.record(tx, now, ObjectKind::Vm, &vm.id, &vm.name, "state_changed", details)
        })
    }

    // ----- history ---------------------------------------------------------

    /// The newest `limit` events of a VM (by live name, or by id for a
    /// deleted one), oldest first.
    pub fn vm_history(&self, name_or_id: &str, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.store.read(|tx| {
            let id = store::vm_id_any(tx, name_or_id)?.ok_or_else(|| Error::not_found("VM", name_or_id))?;
            store::history_of(tx, ObjectKind::Vm, &id, limit)
        })
    }

    /// The newest `limit` events across the store, oldest first.
    pub fn recent_events(&self, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.store.read(|tx| store::recent_events(tx, limit))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        at_ms: i64,
        object_kind: ObjectKind,
        object_id: &str,
        object_name: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        store::insert_event(tx, &self.actor, at_ms, NewEvent { object_kind, object_id, object_name, action, details })
    }
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_EVENT_LIMIT {
        return Err(Error::invalid("limit", format!("{limit} is outside 1..={MAX_EVENT_LIMIT}")));
    }
    Ok(())
}
