//! Live events: [`EventStream`], a pull-based feed of the committed
//! history, woken by the store's commit watch.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::cancel::{self, Cancel, Woke};
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::store::{self, CommitWatch};

use crate::event::Event;
/// How many events a stream reads from the table at once.
const BATCH: u32 = 256;

/// A live, pull-based feed of the events committed to a state directory
/// by every [`crate::Manager`], in this process or any other, in commit
/// (id) order, each exactly once. Open it with [`crate::Manager::subscribe`]
/// (events committed from then on) or [`crate::Manager::subscribe_after`]
/// (resume after an event id, history first, then live).
///
/// The stream reads the committed `events` table, so it is the history:
/// nothing is dropped however slowly it is read. It waits for commits on an
/// inotify watch (a kernel wake-up, no timer; see the store's
/// `commit_watch` module for why and how it cannot miss one), so an idle
/// stream costs nothing but descriptors: one inotify instance each, and
/// Linux allows a user 128 by default (`fs.inotify.max_user_instances`),
/// so drop streams that are no longer read.
///
/// It does not keep its manager alive: once the manager is dropped, or the
/// stream is [closed](Self::close), [`next`](Self::next) answers
/// [`crate::ErrorKind::Closed`].
///
/// [`as_fd`](AsFd::as_fd) gives a descriptor for `poll(2)`/epoll: readable
/// while `next` may have something (an event, or `Closed`), level-triggered.
/// It can be readable with nothing to deliver (a commit with no event), so
/// after a wake-up call `next(Duration::ZERO)` until it returns `Ok(None)`.
#[derive(Debug)]
pub struct EventStream {
    manager: Weak<Inner>,
    commits: CommitWatch,
    /// Readable while `cursor` holds undelivered events (or may, when a full
    /// batch was read), or once the stream is closed.
    pending: EventFd,
    /// The manager's [`Closing`](crate::event::Closing), in `epoll`. Only
    /// held: epoll forgets a descriptor once it is closed, and this one must
    /// outlive the manager.
    _manager_closed: Arc<EventFd>,
    /// What callers poll: readable when any of the three is.
    epoll: Epoll,
    closed: AtomicBool,
    cursor: Mutex<Cursor>,
}

#[derive(Debug)]
struct Cursor {
    /// The newest id read from the table.
    last_id: i64,
    /// Read, not yet delivered.
    buffer: VecDeque<Event>,
    /// The table may hold events after `last_id`.
    stale: bool,
    /// Whether `pending` is currently readable.
    pending_set: bool,
}

impl EventStream {
    /// A stream over the events after `after_id`, or after the newest one.
    pub(crate) fn open(inner: &Arc<Inner>, after_id: Option<i64>) -> Result<EventStream> {
        // Watch before reading where to start: a commit in between rings it.
        let commits = inner.store().commit_watch()?;
        let newest = inner.store().read(|tx| store::newest_event_id(tx))?;
        let last_id = match after_id {
            None => newest,
            Some(id) if id < 0 => return Err(Error::invalid("event id", format!("{id} is negative"))),
            Some(id) if id > newest => {
                return Err(Error::invalid("event id", format!("{id} is after the newest event ({newest}) of this state directory")));
            }
            Some(id) => id,
        };
        let io = |e: nix::Error| Error::io("create an event stream for", inner.state_dir(), e.into());
        let stale = last_id < newest;
        let pending = EventFd::from_value_and_flags(u32::from(stale), EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(io)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io)?;
        let manager_closed = inner.closing().signal();
        for fd in [commits.as_fd(), pending.as_fd(), manager_closed.as_fd()] {
            epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0)).map_err(io)?;
        }
        Ok(EventStream {
            manager: Arc::downgrade(inner),
            commits,
            pending,
            _manager_closed: manager_closed,
            epoll,
            closed: AtomicBool::new(false),
            cursor: Mutex::new(Cursor { last_id, buffer: VecDeque::new(), stale, pending_set: stale }),
        })
    }

    /// The next event, waiting up to `timeout` (zero: do not wait);
    /// `Ok(None)` if none came, [`crate::ErrorKind::Closed`] once the stream
    /// or its manager was closed. Threads calling this on one stream take
    /// turns.
    pub fn next(&self, timeout: Duration) -> Result<Option<Event>> {
        self.next_with(timeout, None)
    }

    /// [`next`](Self::next) that ends with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) as soon as
    /// `cancel` is cancelled (an event already at hand is returned first).
    /// The stream stays open and loses nothing: the next call goes on
    /// from where this one stopped.
    pub fn next_cancellable(&self, timeout: Duration, cancel: &Cancel) -> Result<Option<Event>> {
        self.next_with(timeout, Some(cancel))
    }

    fn next_with(&self, timeout: Duration, cancel: Option<&Cancel>) -> Result<Option<Event>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut cursor = self.cursor.lock();
        loop {
            self.check_open()?;
            if cursor.buffer.is_empty() {
                if self.commits.drain()? {
                    cursor.stale = true;
                }
                if cursor.stale {
                    self.fetch(&mut cursor)?;
                }
            }
            let event = cursor.buffer.pop_front();
            self.update_pending(&mut cursor);
            if event.is_some() {
                return Ok(event);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let mut fds = [PollFd::new(self.epoll.0.as_fd(), PollFlags::POLLIN)];
            let woke = cancel::wait(&mut fds, deadline, cancel).map_err(|e| Error::io("wait for events in", self.commits.dir(), e))?;
            if woke == Woke::Cancelled {
                return Err(Error::Cancelled { what: "the next event".into() });
            }
        }
    }

    /// Ends the stream: `next` answers [`crate::ErrorKind::Closed`] from now
    /// on, also in a thread waiting in it. Idempotent. The descriptor stays
    /// open (and readable) until the stream is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes a waiting `next`; fails only on counter overflow.
        let _ = self.pending.write(1);
    }

    /// Whether [`next`](Self::next) would answer `Closed`.
    pub fn is_closed(&self) -> bool {
        self.check_open().is_err()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed { what: "Event stream" });
        }
        if self.manager.strong_count() == 0 {
            return Err(Error::Closed { what: "Manager" });
        }
        Ok(())
    }

    fn fetch(&self, cursor: &mut Cursor) -> Result<()> {
        let inner = self.manager.upgrade().ok_or(Error::Closed { what: "Manager" })?;
        let batch = inner.store().read(|tx| store::events_after(tx, cursor.last_id, BATCH))?;
        drop(inner);
        cursor.stale = batch.len() == BATCH as usize;
        if let Some(last) = batch.last() {
            cursor.last_id = last.id;
        }
        cursor.buffer.extend(batch);
        Ok(())
    }

    /// Makes `pending` readable exactly while there is more to deliver
    /// without waiting, so the descriptor is level-triggered.
    fn update_pending(&self, cursor: &mut Cursor) {
        let want = !cursor.buffer.is_empty() || cursor.stale;
        if want == cursor.pending_set {
            return;
        }
        // Neither call can fail: a write only fails when the counter would
        // overflow (it is written a handful of times between reads), a read
        // only when it is zero (it is set: `pending_set`, or `close`).
        if want {
            let _ = self.pending.write(1);
        } else {
            let _ = self.pending.read();
            // A `close` that raced the read must leave the stream readable.
            if self.closed.load(Ordering::SeqCst) {
                let _ = self.pending.write(1);
            }
        }
        cursor.pending_set = want;
    }
}

impl AsFd for EventStream {
    /// Readable while [`EventStream::next`] may have something; see the type.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}
