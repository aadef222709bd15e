//! The event history: every mutation appends one, in the same transaction.

use serde::Serialize;

/// What kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Template,
    Network,
    Vm,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Template => "template",
            ObjectKind::Network => "network",
            ObjectKind::Vm => "vm",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ObjectKind> {
        [ObjectKind::Template, ObjectKind::Network, ObjectKind::Vm].into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Event {
    /// Increases with every event in a store.
    pub id: i64,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub object_kind: ObjectKind,
    /// The template's or network's numeric id as text, or the VM's UUID.
    pub object_id: String,
    pub object_name: String,
    /// `created`, `deleted`, `state_changed`, …
    pub action: String,
    /// Action-specific facts, as a JSON object.
    pub details: serde_json::Value,
    /// The OS user and process that made the change.
    pub os_user: String,
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

/// Fans events out to live [`EventStream`]s after their transaction commits.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: parking_lot::Mutex<Vec<std::sync::Weak<Subscription>>>,
}

/// A stream holds at most this many unread events; older ones are dropped
/// and counted in [`EventStream::missed`].
pub const EVENT_STREAM_CAPACITY: usize = 4096;

#[derive(Debug, Default)]
struct Subscription {
    queue: parking_lot::Mutex<(std::collections::VecDeque<Event>, u64)>,
    ready: parking_lot::Condvar,
}

impl EventBus {
    pub fn subscribe(&self) -> EventStream {
        let sub = std::sync::Arc::new(Subscription::default());
        self.subscribers.lock().push(std::sync::Arc::downgrade(&sub));
        EventStream { sub }
    }

    pub fn publish(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut subs = self.subscribers.lock();
        subs.retain(|weak| {
            let Some(sub) = weak.upgrade() else { return false };
            let mut queue = sub.queue.lock();
            for event in events {
                if queue.0.len() == EVENT_STREAM_CAPACITY {
                    queue.0.pop_front();
                    queue.1 += 1;
                }
                queue.0.push_back(event.clone());
            }
            sub.ready.notify_all();
            true
        });
    }
}

/// A live, pull-based feed of the events this manager records, from the
/// moment it was opened with [`crate::Manager::subscribe`]. Events recorded
/// by other processes are in the history, not in the stream.
#[derive(Debug)]
pub struct EventStream {
    sub: std::sync::Arc<Subscription>,
}

impl EventStream {
    /// The next event, waiting up to `timeout`; `None` if none came.
    pub fn next(&self, timeout: std::time::Duration) -> Option<Event> {
        let mut queue = self.sub.queue.lock();
        if queue.0.is_empty() {
            let deadline = std::time::Instant::now() + timeout;
            while queue.0.is_empty() {
                if self.sub.ready.wait_until(&mut queue, deadline).timed_out() {
                    break;
                }
            }
        }
        queue.0.pop_front()
    }

    /// How many events were dropped because the stream was not read fast
    /// enough (it keeps the newest [`EVENT_STREAM_CAPACITY`]).
    pub fn missed(&self) -> u64 {
        self.sub.queue.lock().1
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
