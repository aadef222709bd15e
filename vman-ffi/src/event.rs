//! The event history.

use std::ffi::{CString, c_char, c_int};
use std::os::fd::{AsFd, AsRawFd};

use vman_core::convert::millis_arg;
use vman_core::{Event, EventStream};

use crate::error::{Failure, VmanStatus};
use crate::guard::{self, call, out_param, write_out};
use crate::manager::VmanManager;
use crate::record::{self, cstring};

/// One history entry; read-only.
#[derive(Debug)]
pub struct VmanEvent {
    inner: Event,
    object_kind: CString,
    object_id: CString,
    object_name: CString,
    action: CString,
    details_json: CString,
    os_user: CString,
}

impl From<Event> for VmanEvent {
    fn from(e: Event) -> Self {
        VmanEvent {
            object_kind: cstring(e.object_kind.as_str()),
            object_id: cstring(&e.object_id),
            object_name: cstring(&e.object_name),
            action: cstring(&e.action),
            details_json: cstring(e.details.to_string()),
            os_user: cstring(&e.os_user),
            inner: e,
        }
    }
}

#[derive(Debug)]
pub struct VmanEventList(Vec<VmanEvent>);

/// The newest `limit` (1–10000) events of a VM, by live name or by id (for a
/// deleted VM), oldest first.
///
/// # Safety
/// `manager` NULL or live; `vm` NULL or NUL-terminated; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_vm_history(
    manager: *const VmanManager,
    vm: *const c_char,
    limit: u32,
    out: *mut *mut VmanEventList,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let (manager, vm) = unsafe { (guard::handle(manager, "manager")?, guard::string(vm, "vm")?) };
        out_param(out, "out")?;
        let list = manager.inner.vm_history(vm, limit)?.into_iter().map(VmanEvent::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanEventList(list))) };
        Ok(())
    })
}

/// The newest `limit` (1–10000) events across the store, oldest first.
///
/// # Safety
/// `manager` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_recent_events(manager: *const VmanManager, limit: u32, out: *mut *mut VmanEventList) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let list = manager.inner.recent_events(limit)?.into_iter().map(VmanEvent::from).collect();
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanEventList(list))) };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_event_list_len(list: *const VmanEventList) -> usize {
    record::number(list, |l| l.0.len())
}

/// Event `index`, borrowed from the list; NULL if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_list_get(list: *const VmanEventList, index: usize) -> *const VmanEvent {
    record::item(list, |l| l.0.get(index))
}

/// Frees a list and its items; NULL is a no-op.
///
/// # Safety
/// `list` NULL or a live list, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_list_free(list: *mut VmanEventList) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(list) })
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_event_id(event: *const VmanEvent) -> i64 {
    record::number(event, |e| e.inner.id)
}

/// Unix time of the event in milliseconds.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_at_ms(event: *const VmanEvent) -> i64 {
    record::number(event, |e| e.inner.at_ms)
}

/// "template", "network" or "vm".
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_object_kind(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.object_kind)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_event_object_id(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.object_id)
}

#[unsafe(no_mangle)]
pub extern "C" fn vman_event_object_name(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.object_name)
}

/// "created", "deleted", "state_changed", …
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_action(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.action)
}

/// Action-specific details as a JSON object.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_details_json(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.details_json)
}

/// The OS user that made the change.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_os_user(event: *const VmanEvent) -> *const c_char {
    record::text(event, |e| &e.os_user)
}

/// The process id that made the change.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_pid(event: *const VmanEvent) -> u32 {
    record::number(event, |e| e.inner.pid)
}

/// A live stream of the events committed to a state directory by every
/// manager, in this process or any other, in commit (id) order, each once;
/// pulled with `vman_event_stream_next`. Nothing is dropped: the stream
/// reads the event history, so a slow reader only falls behind. It does not
/// keep its manager alive: once the manager is freed it answers
/// `VMAN_STATUS_CLOSED`. One thread at a time per stream; open one per
/// thread that follows events.
#[derive(Debug)]
pub struct VmanEventStream {
    inner: EventStream,
}

/// Subscribes to the events committed from now on (after the newest one).
/// Free the stream with `vman_event_stream_free`.
///
/// # Safety
/// `manager` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_new(manager: *const VmanManager, out: *mut *mut VmanEventStream) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let stream = manager.inner.subscribe()?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanEventStream { inner: stream })) };
        Ok(())
    })
}

/// Subscribes to the events after `after_id`: those already committed
/// first, then live ones, with no gap and no duplicate. A consumer that
/// restarts passes the id of the last event it handled; 0 replays the whole
/// history. An id below 0 or after the newest event is
/// `VMAN_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `manager` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_new_after(
    manager: *const VmanManager,
    after_id: i64,
    out: *mut *mut VmanEventStream,
) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let manager = unsafe { guard::handle(manager, "manager") }?;
        out_param(out, "out")?;
        let stream = manager.inner.subscribe_after(after_id)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanEventStream { inner: stream })) };
        Ok(())
    })
}

/// The next event, waiting up to `timeout_ms` (0: do not wait); `*out` is
/// owned by the caller (free with `vman_event_free`). `VMAN_STATUS_TIMEOUT`
/// if none came; `VMAN_STATUS_CLOSED` once the stream's manager was freed
/// (and from then on).
///
/// # Safety
/// `stream` NULL or live, used by one thread; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_next(stream: *mut VmanEventStream, timeout_ms: u64, out: *mut *mut VmanEvent) -> VmanStatus {
    call(|| {
        // SAFETY: per this function's contract.
        let stream = unsafe { guard::handle_mut(stream, "stream") }?;
        out_param(out, "out")?;
        let timeout = millis_arg("timeout", timeout_ms)?;
        let event = stream
            .inner
            .next(timeout)?
            .ok_or_else(|| Failure::new(VmanStatus::Timeout, format!("No event within {timeout_ms} ms")))?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, guard::into_handle(VmanEvent::from(event))) };
        Ok(())
    })
}

/// A file descriptor to wait on for POLLIN with poll(2), select(2) or epoll
/// (level-triggered), beside your own. It is readable while
/// `vman_event_stream_next` has something to answer without waiting: an
/// undelivered event, or `VMAN_STATUS_CLOSED` (it stays readable once the
/// manager is freed). It can also be readable with nothing to deliver (a
/// commit that recorded no event), so treat a wake-up as a hint: call
/// `vman_event_stream_next(stream, 0, &event)` until it answers
/// `VMAN_STATUS_TIMEOUT`, then poll again. The descriptor belongs to the
/// stream: do not read, write or close it; it is valid until
/// `vman_event_stream_free`. -1 if `stream` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn vman_event_stream_fd(stream: *const VmanEventStream) -> c_int {
    record::number_or(stream, -1, |s| s.inner.as_fd().as_raw_fd())
}

/// Frees a stream (open or closed); NULL is a no-op. A stream must be freed
/// even after its manager was freed.
///
/// # Safety
/// `stream` NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_stream_free(stream: *mut VmanEventStream) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(stream) })
}

/// Frees an event from `vman_event_stream_next` (not a list item); NULL is
/// a no-op.
///
/// # Safety
/// `event` NULL or an owned event, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_event_free(event: *mut VmanEvent) {
    // SAFETY: per this function's contract.
    guard::get((), || unsafe { guard::free_handle(event) })
}
