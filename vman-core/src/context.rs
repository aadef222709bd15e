//! The context a manager's parts share: the store, the runtime and who
//! acts. Its fields are private; each part reaches what it needs through a
//! method that names it.

use std::path::PathBuf;

use parking_lot::RwLock;

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::{Actor, Closing, NewEvent, ObjectKind};
use crate::net::mode::NetworkMode;
use crate::runtime::Runtime;
use crate::store::{self, ProcessFacts, Store, now_ms};
use crate::vm::model::Vm;
use crate::vm::state::VmState;

/// What the manager, its watcher thread and (weakly) its event streams share.
#[derive(Debug)]
pub(crate) struct Inner {
    /// First, so streams waiting on it wake as soon as the drop begins.
    closing: Closing,
    state_dir: PathBuf,
    store: Store,
    actor: Actor,
    runtime: Runtime,
    /// How NICs reach their networks here (resolved: never `Auto`), as the
    /// directory's settings said when this manager last read them.
    network_mode: RwLock<NetworkMode>,
}

/// A transaction in progress; the events it records become visible to
/// every stream, in any process, when it commits.
pub(crate) struct Write<'a> {
    pub tx: &'a store::Tx<'a>,
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
    pub fn new(state_dir: PathBuf, store: Store, runtime: Runtime, network_mode: NetworkMode, closing: Closing) -> Inner {
        Inner { closing, state_dir, store, actor: Actor::current(), runtime, network_mode: RwLock::new(network_mode) }
    }

    /// The state database: every record and event.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// QEMU processes, their files, locks and supervision.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The host side of VM networking, borrowing the store and runtime.
    pub fn net(&self) -> crate::net::plumbing::HostNet<'_> {
        crate::net::plumbing::HostNet { store: &self.store, runtime: &self.runtime, mode: *self.network_mode.read() }
    }

    /// Takes a network mode the directory's settings changed to (resolved).
    pub fn set_network_mode(&self, mode: NetworkMode) {
        *self.network_mode.write() = mode;
    }

    /// Set when the manager is dropped, so its streams and consoles end.
    pub fn closing(&self) -> &Closing {
        &self.closing
    }

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
