//! [`Manager`]: the handle an embedding program holds on a state directory.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::event::{Actor, Closing, Event, EventStream, NewEvent, ObjectKind};
use crate::mac::MacAddr;
use crate::network::{Network, NetworkSpec};
use crate::state::VmState;
use crate::host_network::NetworkMode;
use crate::runtime::process::RunPaths;
use crate::runtime::{Accel, Runtime};
use crate::store::{self, ProcessFacts, Store, now_ms};
use crate::template::{Template, TemplateSpec};
use crate::vm::{Allocation, Vm, VmFilter, VmSpec};

/// How to open a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenOptions {
    /// How long a write waits for another thread's or process's write lock.
    pub busy_timeout_ms: u64,
    /// KVM, TCG, or `auto` (KVM only if a probe proves it runs guests).
    pub accel: Accel,
    /// The QEMU binary; looked up in `PATH` unless absolute.
    pub qemu_binary: PathBuf,
    /// Each VM's serial log is rotated when it passes this size, so a chatty
    /// guest cannot fill the disk (at most ~1.5× this is kept per VM).
    pub serial_log_cap_bytes: u64,
    /// How NICs reach their networks: bridged (needs CAP_NET_ADMIN), user
    /// (QEMU's NAT), isolated, or auto (bridged if privileged, else user).
    pub network: NetworkMode,
    /// The DHCP server of bridged networks; looked up in `PATH` unless absolute.
    pub dnsmasq_binary: PathBuf,
    /// The user QEMU runs as when the embedding process is root. `None`:
    /// `vman-qemu` if that user exists, else `nobody`. QEMU never runs as
    /// root unless this names root. Ignored when vman is not root (QEMU then
    /// runs as the embedding process's user).
    pub qemu_user: Option<String>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout_ms: 10_000,
            accel: Accel::Auto,
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            serial_log_cap_bytes: 4 << 20,
            network: NetworkMode::Auto,
            dnsmasq_binary: PathBuf::from("dnsmasq"),
            qemu_user: None,
        }
    }
}

/// The shortest serial log cap: rotation keeps half of it, and less than
/// a page of output is not worth keeping.
pub const MIN_SERIAL_LOG_CAP_BYTES: u64 = 4096;
/// The largest serial log cap (1 TiB): a cap is there so a chatty guest
/// cannot fill the disk; beyond this it is a unit mistake.
pub const MAX_SERIAL_LOG_CAP_BYTES: u64 = 1 << 40;
/// The longest busy timeout (an hour). Zero is refused too: it would make
/// every write fail as soon as another thread or process writes.
pub const MAX_BUSY_TIMEOUT_MS: u64 = 3_600_000;

impl OpenOptions {
    /// Checks every field, as [`Manager::open`] does before it touches the
    /// disk. The `set_*` methods check one field each, so a bad value is
    /// refused where it is given (the C option setters use them).
    pub fn validate(&self) -> Result<()> {
        check_busy_timeout_ms(self.busy_timeout_ms)?;
        check_binary("QEMU binary", &self.qemu_binary)?;
        check_serial_log_cap(self.serial_log_cap_bytes)?;
        check_binary("dnsmasq binary", &self.dnsmasq_binary)?;
        self.qemu_user.as_deref().map_or(Ok(()), check_qemu_user)
    }

    /// Sets [`qemu_user`](Self::qemu_user): a user that exists on this host.
    pub fn set_qemu_user(&mut self, user: &str) -> Result<&mut Self> {
        check_qemu_user(user)?;
        self.qemu_user = Some(user.to_string());
        Ok(self)
    }

    /// Sets [`busy_timeout_ms`](Self::busy_timeout_ms): 1..=[`MAX_BUSY_TIMEOUT_MS`].
    pub fn set_busy_timeout_ms(&mut self, ms: u64) -> Result<&mut Self> {
        check_busy_timeout_ms(ms)?;
        self.busy_timeout_ms = ms;
        Ok(self)
    }

    /// Sets [`qemu_binary`](Self::qemu_binary): a non-empty path or program name.
    pub fn set_qemu_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("QEMU binary", &path)?;
        self.qemu_binary = path;
        Ok(self)
    }

    /// Sets [`serial_log_cap_bytes`](Self::serial_log_cap_bytes):
    /// [`MIN_SERIAL_LOG_CAP_BYTES`]..=[`MAX_SERIAL_LOG_CAP_BYTES`].
    pub fn set_serial_log_cap_bytes(&mut self, bytes: u64) -> Result<&mut Self> {
        check_serial_log_cap(bytes)?;
        self.serial_log_cap_bytes = bytes;
        Ok(self)
    }

    /// Sets [`dnsmasq_binary`](Self::dnsmasq_binary): a non-empty path or program name.
    pub fn set_dnsmasq_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("dnsmasq binary", &path)?;
        self.dnsmasq_binary = path;
        Ok(self)
    }
}

fn check_qemu_user(user: &str) -> Result<()> {
    crate::runtime::check_user(user)
}

fn check_busy_timeout_ms(ms: u64) -> Result<()> {
    if !(1..=MAX_BUSY_TIMEOUT_MS).contains(&ms) {
        return Err(Error::invalid("busy timeout", format!("{ms} ms is outside 1..={MAX_BUSY_TIMEOUT_MS} ms")));
    }
    Ok(())
}

fn check_serial_log_cap(bytes: u64) -> Result<()> {
    if !(MIN_SERIAL_LOG_CAP_BYTES..=MAX_SERIAL_LOG_CAP_BYTES).contains(&bytes) {
        return Err(Error::invalid(
            "serial log cap",
            format!("{bytes} bytes is outside {MIN_SERIAL_LOG_CAP_BYTES}..={MAX_SERIAL_LOG_CAP_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_binary(what: &'static str, path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if bytes.contains(&0) {
        return Err(Error::invalid(what, "must not contain NUL"));
    }
    Ok(())
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
/// serializes their writes. Dropping it leaves running VMs running.
#[derive(Debug)]
pub struct Manager {
    pub(crate) inner: Arc<Inner>,
}

/// What the manager, its watcher thread and (weakly) its event streams share.
#[derive(Debug)]
pub(crate) struct Inner {
    /// First, so streams waiting on it wake as soon as the drop begins.
    pub closing: Closing,
    pub state_dir: PathBuf,
    pub store: Store,
    pub actor: Actor,
    pub runtime: Runtime,
}

/// A transaction in progress; the events it records become visible to
/// every stream, in any process, when it commits.
pub(crate) struct Write<'a> {
    pub tx: &'a rusqlite::Transaction<'a>,
    pub now: i64,
    actor: &'a Actor,
}

impl Write<'_> {
    pub fn record(
        &mut self,
        object_kind: ObjectKind,
        object_id: &str,
        object_name: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        store::insert_event(self.tx, self.actor, self.now, NewEvent { object_kind, object_id, object_name, action, details })
    }
}

impl Inner {
    /// Runs `f` in one immediate transaction (the store rings the commit
    /// bell after it commits, which wakes every event stream).
    pub fn write<T>(&self, f: impl FnOnce(&mut Write<'_>) -> Result<T>) -> Result<T> {
        self.store.write(|tx| f(&mut Write { tx, now: now_ms(), actor: &self.actor }))
    }

    pub fn vm(&self, name: &str) -> Result<Vm> {
        self.store.read(|tx| store::vm_by_name(tx, name)?.ok_or_else(|| Error::not_found("VM", name)))
    }

    /// Moves a VM along the state machine and records why, in one
    /// transaction; fails if the VM is no longer in `from`.
    pub fn transition(&self, vm: &Vm, from: VmState, to: VmState, facts: &ProcessFacts<'_>, details: serde_json::Value) -> Result<()> {
        self.write(|w| {
            store::set_state(w.tx, vm, from, to, facts, w.now)?;
            let mut details = details;
            if let Some(map) = details.as_object_mut() {
                map.insert("from".into(), json!(from.as_str()));
                map.insert("to".into(), json!(to.as_str()));
            }
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "state_changed", details)
        })
    }
}

impl Manager {
    /// Opens `state_dir`, creating it (mode 0700) and its database if missing.
    pub fn open(state_dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Manager> {
        let state_dir = state_dir.as_ref();
        if state_dir.as_os_str().is_empty() {
            return Err(Error::invalid("state directory", "must not be empty"));
        }
        // Everything a caller can get wrong is refused before the disk is touched.
        options.validate()?;
        RunPaths::check_state_dir(state_dir)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| Error::io("create state directory", state_dir, e))?;
        warn_if_writable_by_others(state_dir);
        let store = Store::open(&state_dir.join(store::DB_FILE), Duration::from_millis(options.busy_timeout_ms))?;
        let runtime = Runtime::new(state_dir, options)?;
        let closing = Closing::new().map_err(|e| Error::io("create the close signal for", state_dir, e))?;
        let inner = Arc::new(Inner { closing, state_dir: state_dir.to_path_buf(), store, actor: Actor::current(), runtime });
        // The watcher reaches the manager weakly: it must not keep it alive.
        let weak = Arc::downgrade(&inner);
        inner.runtime.start_watcher(move |exit| {
            if let Some(inner) = weak.upgrade() {
                inner.qemu_exited(&exit);
            }
        })?;
        let manager = Manager { inner };
        // Take over the VMs that are still running; fix what a crash left.
        manager.reconcile()?;
        Ok(manager)
    }

    /// The state directory this manager works in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// A live stream of the events committed to this state directory from
    /// now on, by any manager in any process (see [`EventStream`]).
    pub fn subscribe(&self) -> Result<EventStream> {
        EventStream::open(&self.inner, None)
    }

    /// A stream of the events after `event_id`: those already committed
    /// first, then live ones, with no gap and no duplicate. A consumer that
    /// restarts passes the id of the last event it handled. `0` replays the
    /// whole history. An id below 0 or after the newest event is
    /// [`crate::ErrorKind::InvalidArgument`] (it belongs to another store).
    pub fn subscribe_after(&self, event_id: i64) -> Result<EventStream> {
        EventStream::open(&self.inner, Some(event_id))
    }

    // ----- templates -------------------------------------------------------

    /// Creates a size template.
    pub fn create_template(&self, spec: &TemplateSpec) -> Result<Template> {
        spec.validate()?;
        self.inner.write(|w| {
            let template = store::insert_template(w.tx, spec, w.now)?;
            let details = json!({
                "vcpus": template.vcpus, "memory_mib": template.memory_mib, "disk_gib": template.disk_gib,
            });
            w.record(ObjectKind::Template, &template.id.to_string(), &template.name, "created", details)?;
            Ok(template)
        })
    }

    pub fn template(&self, name: &str) -> Result<Template> {
        self.inner.store.read(|tx| store::template_by_name(tx, name)?.ok_or_else(|| Error::not_found("template", name)))
    }

    pub fn templates(&self) -> Result<Vec<Template>> {
        self.inner.store.read(|tx| store::list_templates(tx))
    }

    /// Deletes a template; refused with [`crate::ErrorKind::InUse`] while a
    /// live VM was made from it.
    pub fn delete_template(&self, name: &str) -> Result<()> {
        self.inner.write(|w| {
            let template = store::delete_template(w.tx, name)?;
            w.record(ObjectKind::Template, &template.id.to_string(), name, "deleted", json!({}))
        })
    }

    // ----- networks --------------------------------------------------------

    /// Creates a VLAN network and its address pool.
    pub fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        let plan = spec.plan()?;
        if let Some(uplink) = &plan.uplink {
            crate::host_network::check_uplink_support(uplink, plan.vlan)?;
        }
        self.inner.write(|w| {
            let network = store::insert_network(w.tx, &plan, w.now)?;
            let details = json!({
                "vlan": network.vlan, "cidr": network.cidr.to_string(), "gateway": network.gateway.to_string(),
            });
            w.record(ObjectKind::Network, &network.id.to_string(), &network.name, "created", details)?;
            Ok(network)
        })
    }

    pub fn network(&self, name: &str) -> Result<Network> {
        self.inner.store.read(|tx| store::network_by_name(tx, name)?.ok_or_else(|| Error::not_found("network", name)))
    }

    /// All networks, by VLAN id.
    pub fn networks(&self) -> Result<Vec<Network>> {
        self.inner.store.read(|tx| store::list_networks(tx))
    }

    /// Deletes a network; refused with [`crate::ErrorKind::InUse`] while any
    /// address on it is allocated.
    pub fn delete_network(&self, name: &str) -> Result<()> {
        let network = self.inner.write(|w| {
            let network = store::delete_network(w.tx, name)?;
            w.record(ObjectKind::Network, &network.id.to_string(), name, "deleted", json!({}))?;
            Ok(network)
        })?;
        // No VM holds an address here, so no DHCP server runs; its log goes.
        let _ = std::fs::remove_dir_all(crate::host_network::dhcp_dir(&self.inner.runtime.run_root, network.id));
        Ok(())
    }

    /// Who holds which address of a network, in address order.
    pub fn allocations(&self, network: &str) -> Result<Vec<Allocation>> {
        self.inner.store.read(|tx| {
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
        self.inner.write(|w| {
            let template = store::template_by_name(w.tx, &spec.template)?
                .ok_or_else(|| Error::not_found("template", &spec.template))?;
            store::insert_vm(w.tx, &id, &spec.name, &template, spec.boot.as_ref(), w.now)?;
            for (slot, nic) in nics.iter().enumerate() {
                let network = store::network_by_name(w.tx, &nic.network)?
                    .ok_or_else(|| Error::not_found("network", &nic.network))?;
                let ip = store::allocate(w.tx, &network, nic.ip)?;
                let mac = match nic.mac {
                    Some(mac) if store::mac_in_use(w.tx, mac)? => {
                        return Err(Error::AlreadyExists { kind: "NIC", field: "MAC", value: mac.to_string() });
                    }
                    Some(mac) => mac,
                    None => fresh_mac(w.tx)?,
                };
                store::insert_nic(w.tx, &id, slot as u32, network.id, ip, mac)?;
            }
            let vm = store::vm_by_id(w.tx, &id)?.ok_or_else(|| Error::Internal("VM vanished while created".into()))?;
            let details = json!({
                "template": vm.template,
                "nics": vm.nics.iter().map(|n| json!({"network": n.network, "ip": n.ip.to_string(), "mac": n.mac.to_string()})).collect::<Vec<_>>(),
            });
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "created", details)?;
            Ok(vm)
        })
    }

    /// A live VM by name.
    pub fn vm(&self, name: &str) -> Result<Vm> {
        self.inner.vm(name)
    }

    /// Live VMs matching `filter`, by name.
    pub fn vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        self.inner.store.read(|tx| store::list_vms(tx, filter))
    }

    // ----- history ---------------------------------------------------------

    /// The newest `limit` events of a VM (by live name, or by id for a
    /// deleted one), oldest first.
    pub fn vm_history(&self, name_or_id: &str, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.inner.store.read(|tx| {
            let id = store::vm_id_any(tx, name_or_id)?.ok_or_else(|| Error::not_found("VM", name_or_id))?;
            store::history_of(tx, ObjectKind::Vm, &id, limit)
        })
    }

    /// The newest `limit` events across the store, oldest first.
    pub fn recent_events(&self, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.inner.store.read(|tx| store::recent_events(tx, limit))
    }
}

/// A random 52:54:00 MAC not used in this store. With 2^24 candidates a
/// collision is rare; eight draws that all collide mean the space is nearly
/// full, which is worth an error rather than a long loop.
fn fresh_mac(tx: &rusqlite::Transaction<'_>) -> Result<MacAddr> {
    for _ in 0..8 {
        let mac = MacAddr::random_qemu()?;
        if !store::mac_in_use(tx, mac)? {
            return Ok(mac);
        }
    }
    Err(Error::Internal("no unused MAC address found under 52:54:00 after 8 tries".into()))
}

/// A new state directory is made 0700, but one that already existed keeps
/// its mode: say so if users other than its owner can write there, where
/// they could replace VMs' run files and sockets.
fn warn_if_writable_by_others(state_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(state_dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            log::warn!("state directory {} is writable by other users (mode {mode:o}); they could tamper with its VMs", state_dir.display());
        }
    }
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_EVENT_LIMIT {
        return Err(Error::invalid("limit", format!("{limit} is outside 1..={MAX_EVENT_LIMIT}")));
    }
    Ok(())
}
