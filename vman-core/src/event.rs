//! The event history: every mutation appends one, in the same transaction;
//! and [`EventStream`](crate::EventStream), the live view of that same history.

use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;

/// What kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A size template ([`Template`](crate::Template)).
    Template,
    /// A VLAN network ([`Network`](crate::Network)).
    Network,
    /// A VM ([`Vm`](crate::Vm)).
    Vm,
    /// A disk image attached to VMs.
    Disk,
    /// A base image of the catalogue.
    Image,
    /// An SSH public key of the catalogue.
    SshKey,
    /// A setting of the state directory ([`Settings`](crate::Settings));
    /// its id and name are the setting's key.
    Setting,
    /// A batch of VMs made in one call ([`Batch`](crate::Batch)).
    Batch,
}

impl ObjectKind {
    /// Every kind, in declaration order.
    pub const ALL: [ObjectKind; 8] = [
        ObjectKind::Template,
        ObjectKind::Network,
        ObjectKind::Vm,
        ObjectKind::Disk,
        ObjectKind::Image,
        ObjectKind::SshKey,
        ObjectKind::Setting,
        ObjectKind::Batch,
    ];

    /// The kind's lower-case name, as the store and serde write it:
    /// `template`, `network`, `vm`, `disk`, `image`, `ssh_key`, `setting`
    /// or `batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Template => "template",
            ObjectKind::Network => "network",
            ObjectKind::Vm => "vm",
            ObjectKind::Disk => "disk",
            ObjectKind::Image => "image",
            ObjectKind::SshKey => "ssh_key",
            ObjectKind::Setting => "setting",
            ObjectKind::Batch => "batch",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Event {
    /// Increases with every event in a store.
    pub id: i64,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// What kind of object the event is about.
    pub object_kind: ObjectKind,
    /// The template's or network's numeric id as text, or the VM's UUID.
    pub object_id: String,
    /// The object's name when the event was written (a deleted VM's name
    /// may since belong to another VM).
    pub object_name: String,
    /// `created`, `deleted`, `state_changed`, …
    pub action: String,
    /// Action-specific facts, as a JSON object.
    pub details: serde_json::Value,
    /// The OS user and process that made the change.
    pub os_user: String,
    /// That process's id.
    pub pid: u32,
}

/// Who is acting: resolved once per manager, recorded on every event.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub os_user: String,
    pub pid: u32,
}

impl Actor {
    pub fn current() -> Actor {
        let uid = nix::unistd::getuid();
        let os_user = match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => user.name,
            // No passwd entry (containers): the number is still the truth.
            _ => uid.to_string(),
        };
        Actor { os_user, pid: std::process::id() }
    }
}

/// Signals the streams of a manager that it is gone: written once, when the
/// manager is dropped, and never read, so it stays readable from then on.
#[derive(Debug)]
pub(crate) struct Closing(Arc<EventFd>);

impl Closing {
    pub fn new() -> std::io::Result<Closing> {
        Ok(Closing(Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?)))
    }

    /// The signal itself, readable once the manager is gone; a stream or
    /// console keeps its own reference, so it outlives the manager.
    pub fn signal(&self) -> Arc<EventFd> {
        self.0.clone()
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        // Fails only if the counter would overflow; it is written once.
        let _ = self.0.write(1);
    }
}

/// An event about to be written.
#[derive(Debug)]
pub(crate) struct NewEvent<'a> {
    pub object_kind: ObjectKind,
    pub object_id: &'a str,
    pub object_name: &'a str,
    pub action: &'a str,
    pub details: serde_json::Value,
}
