//! Cancelling long waits: [`Cancel`], a token another thread sets, and the
//! one poll loop every cancellable wait of vman goes through.
//!
//! A wait that has descriptors to poll (a QEMU's pidfd, a QMP socket before
//! its greeting, the serial log's inotify, an event stream) polls the
//! token's eventfd beside them, so a cancel wakes it at once. A wait with
//! nothing to poll (a QMP event read through a buffered reader, a lock
//! retried with back-off) looks at the token at least every
//! [`CHECK_INTERVAL`]. What a cancelled operation leaves behind is the
//! operation's to say (see each `*_cancellable` method and
//! docs/ARCHITECTURE.md); the wait itself only reports it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

/// The longest a wait goes without looking at a [`Cancel`] token or a
/// caller's check when it has no descriptor that wakes it (and how often
/// the console's `_with` waits call their check while nothing happens).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A cancellation token: [`cancel`](Self::cancel) it from any thread and
/// every wait that was given it (or a [`child`](Self::child) of it) ends
/// with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled), promptly:
/// waits on descriptors poll the token's eventfd, the others look at it
/// at least every [`CHECK_INTERVAL`].
///
/// Cheap to clone: clones share one state, so a clone handed to another
/// thread cancels the original. A cancelled token stays cancelled; take a
/// new one for the next operation. An operation given a token that is
/// already cancelled changes nothing and answers `Cancelled` at once.
///
/// ```
/// use std::time::Duration;
/// let cancel = vman_core::Cancel::new();
/// let other = cancel.clone();
/// std::thread::spawn(move || other.cancel());
/// // e.g. manager.stop_cancellable("web1", Duration::from_secs(60), &cancel)
/// # while !cancel.is_cancelled() { std::thread::sleep(Duration::from_millis(1)); }
/// assert!(cancel.is_cancelled());
/// ```
#[derive(Clone)]
pub struct Cancel {
    shared: Arc<Shared>,
}

struct Shared {
    cancelled: AtomicBool,
    /// Readable once the token is cancelled (written once, never read).
    /// `None` if the OS refused an eventfd (out of descriptors): waits then
    /// look at the flag every [`CHECK_INTERVAL`] instead.
    wake: Option<EventFd>,
    /// Tokens made by [`Cancel::child`] that are still alive.
    children: Mutex<Vec<Weak<Shared>>>,
}

impl Shared {
    fn new() -> Shared {
        let wake = match EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!("no eventfd for a cancellation token ({e}); its waits check it every {CHECK_INTERVAL:?}");
                None
            }
        };
        Shared { cancelled: AtomicBool::new(false), wake, children: Mutex::new(Vec::new()) }
    }

    fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(wake) = &self.wake {
            // Fails only if the counter would overflow; it is written once.
            let _ = wake.write(1);
        }
        let children = std::mem::take(&mut *self.children.lock());
        for child in children.iter().filter_map(Weak::upgrade) {
            child.cancel();
        }
    }
}

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Cancel {
        Cancel { shared: Arc::new(Shared::new()) }
    }

    /// Cancels every wait given this token or one of its children, now and
    /// from now on. Idempotent; safe from any thread.
    pub fn cancel(&self) {
        self.shared.cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called (on this token, or on
    /// the one it is a child of).
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// A new token that is cancelled when this one is, while cancelling it
    /// leaves this one alone: one operation's token under a token for a
    /// whole session, say.
    pub fn child(&self) -> Cancel {
        let child = Cancel::new();
        let mut children = self.shared.children.lock();
        // Under the lock: a concurrent `cancel` either sees this child in
        // the list or has set the flag before the list was taken.
        if self.is_cancelled() {
            child.cancel();
        } else {
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.shared));
        }
        child
    }

    /// `Err(Cancelled)` if the token is cancelled; `what` says what was
    /// being waited for.
    pub(crate) fn check(&self, what: impl FnOnce() -> String) -> crate::Result<()> {
        if self.is_cancelled() { Err(crate::Error::Cancelled { what: what() }) } else { Ok(()) }
    }
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// `Err(Cancelled)` if `cancel` is given and cancelled.
pub(crate) fn check(cancel: Option<&Cancel>, what: impl FnOnce() -> String) -> crate::Result<()> {
    cancel.map_or(Ok(()), |c| c.check(what))
}

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// One of the descriptors has an event (see their `revents`).
    Ready,
    /// The deadline passed first.
    TimedOut,
    /// The token was cancelled first (or was already).
    Cancelled,
}

/// Waits until one of `fds` has an event, `deadline` passes (`None`:
/// never), or `cancel` is cancelled. A signal is a spurious wake-up: the
/// wait goes on. The caller reads each descriptor's `revents` after `Ready`.
pub(crate) fn wait<'fd>(fds: &mut [PollFd<'fd>], deadline: Option<Instant>, cancel: Option<&Cancel>) -> io::Result<Woke> {
    let wake = cancel.and_then(|c| c.shared.wake.as_ref());
    let mut all: Vec<PollFd<'fd>> = fds.to_vec();
    if let Some(wake) = wake {
        // SAFETY: the eventfd is owned by `cancel`, borrowed for this whole
        // call, and `all` (the only holder of this borrow) is dropped
        // before the call returns: the descriptor outlives its use.
        let fd = unsafe { BorrowedFd::borrow_raw(wake.as_fd().as_raw_fd()) };
        all.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    loop {
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Ok(Woke::Cancelled);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(Woke::TimedOut);
        }
        // A token without an eventfd is looked at every CHECK_INTERVAL.
        let slice = match (left, cancel.is_some() && wake.is_none()) {
            (Some(l), true) => Some(l.min(CHECK_INTERVAL)),
            (None, true) => Some(CHECK_INTERVAL),
            (left, false) => left,
        };
        let timeout = match slice {
            // Round up: a sub-millisecond rest must not spin until the deadline.
            Some(d) => PollTimeout::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        match poll(&mut all, timeout) {
            Ok(n) if n > 0 => {
                let callers_ready = all[..fds.len()].iter().any(|fd| fd.revents().is_some_and(|r| !r.is_empty()));
                if callers_ready {
                    fds.clone_from_slice(&all[..fds.len()]);
                    return Ok(Woke::Ready);
                }
                // Only the token's eventfd: the loop's first check answers.
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sleeps for `pause` unless `cancel` is cancelled first; false then.
pub(crate) fn sleep(pause: Duration, cancel: Option<&Cancel>) -> bool {
    match cancel {
        None => {
            std::thread::sleep(pause);
            true
        }
        Some(c) => {
            let deadline = Instant::now().checked_add(pause);
            // Polling no descriptor of the caller's cannot fail but for
            // EINVAL/ENOMEM, where plain sleeping is the best answer.
            match wait(&mut [], deadline, Some(c)) {
                Ok(Woke::Cancelled) => false,
                Ok(_) => true,
                Err(_) => {
                    std::thread::sleep(pause);
                    !c.is_cancelled()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_cancel_from_another_thread_wakes_a_wait_with_no_deadline() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let idle = EventFd::new().unwrap();
            let mut fds = [PollFd::new(idle.as_fd(), PollFlags::POLLIN)];
            tx.send(()).unwrap();
            wait(&mut fds, None, Some(&other)).unwrap()
        });
        rx.recv().unwrap();
        cancel.cancel();
        assert_eq!(waiter.join().unwrap(), Woke::Cancelled);
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn a_ready_descriptor_and_a_deadline_end_a_wait_as_before() {
        let cancel = Cancel::new();
        let ready = EventFd::from_value(1).unwrap();
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
        assert_eq!(wait(&mut fds, None, Some(&cancel)).unwrap(), Woke::Ready);
        assert!(fds[0].revents().unwrap().contains(PollFlags::POLLIN), "revents are handed back");
        let idle = EventFd::new().unwrap();
        let mut fds = [PollFd::new(idle.as_fd(), PollFlags::POLLIN)];
        assert_eq!(wait(&mut fds, Some(Instant::now() + Duration::from_millis(20)), Some(&cancel)).unwrap(), Woke::TimedOut);
        assert_eq!(wait(&mut fds, Some(Instant::now()), None).unwrap(), Woke::TimedOut);
    }

    #[test]
    fn a_cancelled_token_wins_over_a_ready_descriptor() {
        let cancel = Cancel::new();
        cancel.cancel();
        let ready = EventFd::from_value(1).unwrap();
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
        assert_eq!(wait(&mut fds, None, Some(&cancel)).unwrap(), Woke::Cancelled);
        assert!(!sleep(Duration::from_secs(60), Some(&cancel)));
        assert_eq!(cancel.check(|| "x".into()).unwrap_err().kind(), crate::ErrorKind::Cancelled);
    }

    #[test]
    fn a_parent_cancels_its_children_and_not_the_other_way() {
        let parent = Cancel::new();
        let child = parent.child();
        let grandchild = child.child();
        child.cancel();
        assert!(child.is_cancelled() && grandchild.is_cancelled());
        assert!(!parent.is_cancelled());
        let second = parent.child();
        parent.cancel();
        assert!(second.is_cancelled());
        assert!(parent.child().is_cancelled(), "a child of a cancelled token is born cancelled");
    }

    #[test]
    fn a_token_without_an_eventfd_is_still_seen_within_the_check_interval() {
        let cancel = Cancel { shared: Arc::new(Shared { wake: None, ..Shared::new() }) };
        let other = cancel.clone();
        let waiter = std::thread::spawn(move || wait(&mut [], None, Some(&other)).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        cancel.cancel();
        assert_eq!(waiter.join().unwrap(), Woke::Cancelled);
    }
}
