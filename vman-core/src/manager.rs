//! [`Manager`]: the handle an embedding program holds on a state directory.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::context::{Inner, Write};
use crate::error::{Error, Result};
use crate::event::{Closing, Event, ObjectKind};
use crate::net::mac::MacAddr;
use crate::net::mode::resolve_mode;
use crate::net::model::{Network, NetworkSpec};
use crate::options::OpenOptions;
use crate::runtime::Runtime;
use crate::runtime::paths::RunPaths;
use crate::settings::apply as settings;
use crate::settings::model::SettingKey;
use crate::storage::model::{Disk, DiskState};
use crate::store::{self, Store};
use crate::subscription::EventStream;
use crate::template::{Template, TemplateSpec};
use crate::vm::model::{Allocation, ParsedNic, Vm, VmFilter, VmSpec};
use crate::vm::qemu;

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

impl Manager {
    /// Opens `state_dir` and its database, adopts the VMs still running
    /// there and reconciles. A missing directory is made (mode 0700) when
    /// [`OpenOptions::create`] says so (the default), else refused with
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
    ///
    /// The directory's [`Settings`](crate::Settings) decide how its VMs run.
    /// A new directory (or one made before vman kept settings) takes the
    /// settings `options` asks for, and the defaults for the rest; an
    /// existing one keeps its own, and an `options` value that differs is
    /// [`ErrorKind::SettingConflict`](crate::ErrorKind::SettingConflict).
    /// A bridged directory opens without CAP_NET_ADMIN too; what needs the
    /// privilege (starting a VM with NICs, making the directory bridged) is
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied).
    pub fn open(state_dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Manager> {
        let state_dir = state_dir.as_ref();
        if state_dir.as_os_str().is_empty() {
            return Err(Error::invalid("state directory", "must not be empty"));
        }
        // Everything a caller can get wrong is refused before the disk is touched.
        options.validate()?;
        let requests: Vec<(SettingKey, String)> =
            options.requests().into_iter().map(|(key, value)| Ok((key, key.normalize(&value)?))).collect::<Result<_>>()?;
        RunPaths::check_state_dir(state_dir)?;
        if !options.create && !state_dir.join(store::DB_FILE).is_file() {
            return Err(Error::not_found("vman state directory", state_dir.display().to_string()));
        }
        DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(|e| Error::io("create state directory", state_dir, e))?;
        warn_if_writable_by_others(state_dir);
        let store = Store::open(&state_dir.join(store::DB_FILE), Duration::from_millis(options.busy_timeout_ms))?;
        let settings = settings::at_open(&store, &requests)?;
        let network_mode = resolve_mode(settings.network);
        let runtime = Runtime::new(state_dir, &settings::runtime_config(&settings))?;
        let closing = Closing::new().map_err(|e| Error::io("create the close signal for", state_dir, e))?;
        let inner = Arc::new(Inner::new(state_dir.to_path_buf(), store, runtime, network_mode, closing));
        // A change of the QEMU user that its process could not finish.
        settings::share_files_with_qemu(&inner)?;
        // The watcher reaches the manager weakly: it must not keep it alive.
        let weak = Arc::downgrade(&inner);
        inner.runtime().start_watcher(move |exit| {
            if let Some(inner) = weak.upgrade() {
                qemu::qemu_exited(&inner, &exit);
            }
        })?;
        let manager = Manager { inner };
        // Take over the VMs that are still running; fix what a crash left.
        manager.reconcile()?;
        Ok(manager)
    }

    /// The state directory this manager works in.
    pub fn state_dir(&self) -> &Path {
        self.inner.state_dir()
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

    /// The template named `name`.
    pub fn template(&self, name: &str) -> Result<Template> {
        self.inner.store().read(|tx| store::template_by_name(tx, name)?.ok_or_else(|| Error::not_found("template", name)))
    }

    /// All templates, by name.
    pub fn templates(&self) -> Result<Vec<Template>> {
        self.inner.store().read(|tx| store::list_templates(tx))
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
            crate::net::mode::check_uplink_support(uplink, plan.vlan)?;
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

    /// The network named `name`.
    pub fn network(&self, name: &str) -> Result<Network> {
        self.inner.store().read(|tx| store::network_by_name(tx, name)?.ok_or_else(|| Error::not_found("network", name)))
    }

    /// All networks, by VLAN id.
    pub fn networks(&self) -> Result<Vec<Network>> {
        self.inner.store().read(|tx| store::list_networks(tx))
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
        let _ = std::fs::remove_dir_all(crate::net::plumbing::dhcp_dir(&self.inner.runtime().run_root, network.id));
        Ok(())
    }

    /// Who holds which address of a network, in address order.
    pub fn allocations(&self, network: &str) -> Result<Vec<Allocation>> {
        self.inner.store().read(|tx| {
            let network = store::network_by_name(tx, network)?.ok_or_else(|| Error::not_found("network", network))?;
            store::allocations(tx, &network)
        })
    }

    // ----- VMs -------------------------------------------------------------

    /// Records a VM with its NICs, allocating every address and MAC in one
    /// transaction: if any NIC cannot get one, nothing is recorded. A VM
    /// from an image (or with a blank disk) also gets its boot disk, made
    /// after that transaction under the VM's lock (so a start waits for
    /// it); if the disk cannot be made, the VM is removed again.
    pub fn create_vm(&self, spec: &VmSpec) -> Result<Vm> {
        let nics = spec.validate()?;
        let id = uuid::Uuid::now_v7().to_string();
        let ctx = &*self.inner;
        // A boot disk is made after the commit, under the VM's lock, so a
        // start waits for it. A VM without one is whole at the commit:
        // nothing follows that an operation would have to wait for, so it
        // takes no lock and makes no lock file (an inode allocation, which
        // can cost more than the whole record: BENCHMARKS.md, scale/create).
        let _lock = if spec.image.is_some() || spec.blank_disk { Some(ctx.runtime().lock_vm(&id, &spec.name)?) } else { None };
        let (vm, boot_disk) = ctx.write(|w| record_vm(ctx, w, &id, spec, &nics))?;
        if let Some(disk) = boot_disk
            && let Err(e) = crate::storage::ops::make_boot_disk(ctx, &disk)
                .and_then(|()| crate::storage::ops::finish_create(ctx, disk.id, DiskState::Attached, Some((&vm.id, 0))).map(drop))
        {
            crate::storage::ops::undo_vm_create(ctx, &vm, &disk);
            return Err(e);
        }
        Ok(vm)
    }

    /// A live VM by name.
    pub fn vm(&self, name: &str) -> Result<Vm> {
        self.inner.vm(name)
    }

    /// Live VMs matching `filter`, by name.
    pub fn vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        self.inner.store().read(|tx| store::list_vms(tx, filter))
    }

    // ----- history ---------------------------------------------------------

    /// The newest `limit` events of a VM (by live name, or by id for a
    /// deleted one), oldest first.
    pub fn vm_history(&self, name_or_id: &str, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.inner.store().read(|tx| {
            let id = store::vm_id_any(tx, name_or_id)?.ok_or_else(|| Error::not_found("VM", name_or_id))?;
            store::history_of(tx, ObjectKind::Vm, &id, limit)
        })
    }

    /// The newest `limit` events across the store, oldest first.
    pub fn recent_events(&self, limit: u32) -> Result<Vec<Event>> {
        check_limit(limit)?;
        self.inner.store().read(|tx| store::recent_events(tx, limit))
    }
}

/// In a write transaction: records VM `id` as `spec` says, with `nics`
/// (what `spec.validate()` answered), every address, MAC and SSH key, its
/// boot disk (as `creating`, made after the commit), and its event. The
/// caller holds the VM's lock.
pub(crate) fn record_vm(ctx: &Inner, w: &mut Write<'_>, id: &str, spec: &VmSpec, nics: &[ParsedNic]) -> Result<(Vm, Option<Disk>)> {
    let template = store::template_by_name(w.tx, &spec.template)?.ok_or_else(|| Error::not_found("template", &spec.template))?;
    let image = match &spec.image {
        Some(name) => Some(store::image_by_name(w.tx, name)?.ok_or_else(|| Error::not_found("image", name))?),
        None => None,
    };
    let firmware = spec.firmware.or(image.as_ref().map(|i| i.firmware)).unwrap_or_default();
    store::insert_vm(w.tx, id, spec, firmware, &template, w.now)?;
    for (slot, nic) in nics.iter().enumerate() {
        let network = store::network_by_name(w.tx, &nic.network)?.ok_or_else(|| Error::not_found("network", &nic.network))?;
        let ip = store::allocate(w.tx, &network, nic.ip)?;
        let mac = match nic.mac {
            Some(mac) if store::mac_in_use(w.tx, mac)? => {
                return Err(Error::AlreadyExists { kind: "NIC", field: "MAC", value: mac.to_string() });
            }
            Some(mac) => mac,
            None => fresh_mac(w.tx)?,
        };
        store::insert_nic(w.tx, id, slot as u32, network.id, ip, mac)?;
    }
    store::copy_ssh_keys_to_vm(w.tx, id, &spec.ssh_keys)?;
    let boot_disk = if image.is_some() || spec.blank_disk {
        Some(crate::storage::ops::record_boot_disk(ctx, w.tx, id, &spec.name, &template, image.as_ref())?)
    } else {
        None
    };
    let vm = store::vm_by_id(w.tx, id)?.ok_or_else(|| Error::Internal("VM vanished while created".into()))?;
    let details = json!({
        "template": vm.template,
        "image": spec.image,
        "nics": vm.nics.iter().map(|n| json!({"network": n.network, "ip": n.ip.to_string(), "mac": n.mac.to_string()})).collect::<Vec<_>>(),
        "ssh_keys": vm.ssh_keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
    });
    w.record(ObjectKind::Vm, &vm.id, &vm.name, "created", details)?;
    Ok((vm, boot_disk))
}

/// A random 52:54:00 MAC not used in this store. With 2^24 candidates a
/// collision is rare; eight draws that all collide mean the space is nearly
/// full, which is worth an error rather than a long loop.
fn fresh_mac(tx: &store::Tx<'_>) -> Result<MacAddr> {
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
            log::warn!(
                "state directory {} is writable by other users (mode {mode:o}); they could tamper with its VMs",
                state_dir.display()
            );
        }
    }
}

fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_EVENT_LIMIT {
        return Err(Error::invalid("limit", format!("{limit} is outside 1..={MAX_EVENT_LIMIT}")));
    }
    Ok(())
}
