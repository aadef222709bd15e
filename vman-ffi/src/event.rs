//! The event history and live event streams.

use std::ffi::{c_char, c_int};
use std::os::fd::{AsFd, AsRawFd};

use vman_core::convert::millis_arg;
use vman_core::{Event, EventStream};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, new_handle};
use crate::manager::VmanManager;
use crate::record;

record! {
    /// One history entry; immutable, thread-safe.
    pub struct VmanEvent(event) from Event;
    /// The event's id: events are numbered in commit order.
    fn vman_event_id -> number<i64> = |e| e.id;
    /// Unix time of the event in milliseconds.
    fn vman_event_at_ms -> number<i64> = |e| e.at_ms;
    /// "template", "network", "vm", "disk", "image", "ssh_key" or "batch".
    fn vman_event_object_kind -> text = |e| e.object_kind.as_str();
    /// The object's id (a UUID for VMs, a number for the others).
    fn vman_event_object_id -> text = |e| &e.object_id;
    fn vman_event_object_name -> text = |e| &e.object_name;
    /// "created", "deleted", "state_changed", …
    fn vman_event_action -> text = |e| &e.action;
    /// Action-specific details as a JSON object.
    fn vman_event_details_json -> text = |e| &e.details;
    /// The OS user that made the change.
    fn vman_event_os_user -> text = |e| &e.os_user;
    /// The process id that made the change.
    fn vman_event_pid -> number<u32> = |e| e.pid;
    free vman_event_free;
    list VmanEventList(vman_event_list_len, vman_event_list_get, vman_event_list_free);
}

/// The newest `limit` (1–10000; VMAN_DEFAULT_HISTORY_LIMIT is vman's usual
/// number) events of a VM, by live name or by id (for a deleted VM), oldest
/// first.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_event_list_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (`limit` out of range),
/// VMAN_STATUS_NOT_FOUND, VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_INVALID_UTF8, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_history(
    manager: *const VmanManager,
    vm: *const c_char,
    limit: u32,
    out: *mut *mut VmanEventList,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let (manager, vm) = (guard::handle(manager, "manager")?, guard::string(vm, "vm")?);
            Ok(manager.inner.vm_history(vm, limit)?.into_iter().collect())
        })
    }
}

/// The newest `limit` (1–10000) events across the store, oldest first.
///
/// `out` must not be NULL. On success `*out` is the list, owned by the
/// caller (free it with `vman_event_list_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (`limit` out of range),
/// VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_recent_events(manager: *const VmanManager, limit: u32, out: *mut *mut VmanEventList) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.recent_events(limit)?.into_iter().collect())) }
}

/// A live stream of the events committed to a state directory by every
/// manager, in this process or any other, in commit (id) order, each once;
/// pulled with `vman_event_stream_next`. Nothing is dropped: the stream
/// reads the event history, so a slow reader only falls behind. It does not
/// keep its manager alive: once the manager is freed it answers
/// `VMAN_STATUS_CLOSED`. One thread at a time calls `vman_event_stream_next`
/// on a stream; open one per thread that follows events.
#[derive(Debug)]
pub struct VmanEventStream {
    pub(crate) inner: EventStream,
}

/// Subscribes to the events committed from now on (after the newest one).
///
/// `out` must not be NULL. On success `*out` is the stream, owned by the
/// caller (free it with `vman_event_stream_free`, also after the manager
/// was freed).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO (no inotify instance left: a per-user limit).
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_new(manager: *const VmanManager, out: *mut *mut VmanEventStream) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(VmanEventStream { inner: guard::handle(manager, "manager")?.inner.subscribe()? })) }
}

/// Subscribes to the events after `after_id`: those already committed
/// first, then live ones, with no gap and no duplicate. A consumer that
/// restarts passes the id of the last event it handled; 0 replays the whole
/// history.
///
/// `out` must not be NULL. On success `*out` is the stream, owned by the
/// caller (free it with `vman_event_stream_free`).
///
/// Fails with VMAN_STATUS_INVALID_ARGUMENT (an id below 0 or after the
/// newest event), VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_new_after(
    manager: *const VmanManager,
    after_id: i64,
    out: *mut *mut VmanEventStream,
) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            let manager = guard::handle(manager, "manager")?;
            Ok(VmanEventStream { inner: manager.inner.subscribe_after(after_id)? })
        })
    }
}

/// The next event, waiting up to `timeout_ms` (0: do not wait).
///
/// `out` must not be NULL. On success `*out` is the event, owned by the
/// caller (free it with `vman_event_free`).
///
/// Fails with VMAN_STATUS_TIMEOUT (no event came), VMAN_STATUS_CLOSED (the
/// stream's manager was freed; from then on), VMAN_STATUS_INVALID_ARGUMENT
/// (a timeout beyond range), VMAN_STATUS_NULL_PARAMETER,
/// VMAN_STATUS_DATABASE, VMAN_STATUS_IO.
///
/// Not thread-safe: one thread at a time per stream (open one per thread
/// that follows events); `vman_event_stream_fd` may be called meanwhile.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_next(stream: *mut VmanEventStream, timeout_ms: u64, out: *mut *mut VmanEvent) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe {
        new_handle(out, || {
            // Shared: `EventStream::next` takes `&self`, so the fd getter
            // may run beside it.
            let stream = guard::handle(stream, "stream")?;
            let timeout = millis_arg("timeout", timeout_ms)?;
            let event = stream.inner.next(timeout)?;
            Ok(event.ok_or_else(|| Failure::new(VmanStatus::Timeout, format!("No event within {timeout_ms} ms")))?.into())
        })
    }
}

/// A file descriptor to wait on for POLLIN with poll(2), select(2) or epoll
/// (level-triggered), beside your own. It is readable while
/// `vman_event_stream_next` has something to answer without waiting: an
/// undelivered event, or `VMAN_STATUS_CLOSED` (it stays readable once the
/// manager is freed). It can also be readable with nothing to deliver (a
/// commit that recorded no event), so treat a wake-up as a hint: call
/// `vman_event_stream_next(stream, 0, &event)` until it answers
/// `VMAN_STATUS_TIMEOUT`, then poll again.
///
/// The descriptor is owned by the stream: do not read, write or close it;
/// it is valid until `vman_event_stream_free`. -1 if `stream` is NULL.
/// Thread-safe; never fails (clears the last error).
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_stream_fd(stream: *const VmanEventStream) -> c_int {
    record::number_or(stream, -1, |s| s.inner.as_fd().as_raw_fd())
}

/// Frees a stream (open or closed); NULL is a no-op. A stream must be freed
/// even after its manager was freed. No other thread may use `stream`
/// during or after the call. Never fails (clears the last error).
///
/// # Safety
/// `stream` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_free(stream: *mut VmanEventStream) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(stream) })
}
