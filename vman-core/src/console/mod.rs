//! A VM's serial console: the live byte stream ([`Console`]) and the log
//! QEMU keeps of it (`log`: rotation, tail, following).
//!
//! QEMU's serial chardev is a unix socket that serves one client at a time.
//! A second connection is not refused: it waits in the listen backlog,
//! unread, and what it wrote reaches the guest once the first client has
//! gone. So vman admits one [`Console`] per VM, across threads and
//! processes alike: attaching takes an `flock` on `console.lock` in the VM's
//! run directory and holds it for the console's lifetime; a second attach
//! answers [`ErrorKind::InUse`](crate::ErrorKind::InUse). The lock dies with
//! its process, so a crashed client never leaves the console taken.
//!
//! The rules both façades used to decide for themselves live here: a read
//! waits up to its timeout and says [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
//! when nothing came, 0 bytes means QEMU closed the console, `read_until`
//! is the expect-style loop, and every wait can be sliced for an interrupt
//! check (the `_with` variants; Python checks for Ctrl-C there).

pub(crate) mod log;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{MsgFlags, recv, send};

pub(crate) use self::log::LineFollower;
use crate::cancel::{self, CHECK_INTERVAL, Cancel, Woke};
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::vm::model::Vm;
use crate::vm::qemu;
use crate::vm::state::VmState;

/// The most bytes one [`Console::read`] returns, whatever the buffer size
/// (a socket read never returns more than this at once anyway).
pub const CONSOLE_READ_MAX: usize = 64 * 1024;

/// [`Console::read_until`] finds a match that starts at most this many bytes
/// before the newest output; a longer one is missed. This bounds the work
/// per wakeup: QEMU sends the guest's output a byte at a time.
pub const CONSOLE_MATCH_MAX: usize = 64 * 1024;

/// [`Console::read_until`] returns at most this many bytes, the newest,
/// ending with the match.
pub const CONSOLE_UNTIL_MAX: usize = 1 << 20;

/// The per-VM console lock, in the VM's run directory.
const LOCK_FILE: &str = "console.lock";

/// Called between slices of a wait; an error ends the wait with it.
type Check<'a, E> = Option<&'a mut dyn FnMut() -> std::result::Result<(), E>>;

/// A live connection to a VM's serial console: bytes read are what the
/// guest prints, bytes written are its keyboard. Made by [`Manager::console`].
///
/// One console per VM at a time (see the module docs); dropping it, or
/// [`close`](Self::close), lets the next one attach. The serial log keeps
/// recording whether or not a console is attached.
///
/// After [`close`](Self::close), or once the [`Manager`] that made it has
/// been dropped, reads and writes answer [`ErrorKind::Closed`](crate::ErrorKind::Closed).
/// A console never keeps its manager alive, and the manager going does not
/// close the descriptor under the caller's poll loop: that happens only at
/// `close` or drop.
#[derive(Debug)]
pub struct Console {
    vm: String,
    manager: Weak<Inner>,
    /// `None` once closed.
    attached: Option<Attached>,
    /// Bytes a [`read_until`](Self::read_until) took from QEMU without
    /// finding its match; the next read returns them first.
    pending: Vec<u8>,
}

#[derive(Debug)]
struct Attached {
    // Fields drop in order: the connection goes before the lock, so the
    // next client never finds the lock free while this one still holds
    // QEMU's only client slot.
    stream: UnixStream,
    _lock: Flock<File>,
}

/// When a wait ends: `None` means never (the timeout was too large to be a
/// point in time, e.g. `Duration::MAX`).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Option<Instant>,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline { at: Instant::now().checked_add(timeout), timeout }
    }

    /// Time left: `None` for no limit, zero once passed.
    fn left(&self) -> Option<Duration> {
        self.at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn expired(&self, what: String) -> Error {
        Error::Timeout { what, waited_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX), source: None }
    }
}

/// Waits until one of `fds` reports an event or the deadline passes
/// (`Ok(false)`). With a check, wakes at least every [`CHECK_INTERVAL`] to
/// call it; its error ends the wait. A cancelled `cancel` ends it with
/// [`Error::Cancelled`] waiting for `what`.
fn wait_any<E: From<Error>>(
    fds: &mut [PollFd<'_>],
    deadline: &Deadline,
    check: &mut Check<'_, E>,
    cancel: Option<&Cancel>,
    what: &dyn Fn() -> String,
    on_error: impl Fn(io::Error) -> Error,
) -> std::result::Result<bool, E> {
    loop {
        let left = deadline.left();
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(false);
        }
        let slice_end = match (left, check.is_some()) {
            (Some(l), true) => Instant::now().checked_add(l.min(CHECK_INTERVAL)),
            (None, true) => Instant::now().checked_add(CHECK_INTERVAL),
            (_, false) => deadline.at,
        };
        match cancel::wait(fds, slice_end, cancel).map_err(&on_error)? {
            Woke::Ready => return Ok(true),
            Woke::Cancelled => return Err(Error::Cancelled { what: what() }.into()),
            Woke::TimedOut => {}
        }
        if let Some(check) = check.as_mut() {
            check()?;
        }
    }
}

/// Calls no check: the plain (not `_with`) methods.
fn no_check<'a>() -> Check<'a, Error> {
    None
}

impl Console {
    /// The name of the VM this console belongs to.
    pub fn vm(&self) -> &str {
        &self.vm
    }

    /// Reads what the guest printed into `buf` (at most [`CONSOLE_READ_MAX`]
    /// bytes), waiting up to `timeout` for something to come (zero: do not
    /// wait; `Duration::MAX`: no limit). Returns how many bytes were read;
    /// 0 means QEMU closed the console (the VM stopped).
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if nothing came;
    /// an empty `buf` is an invalid argument.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.read_inner(buf, timeout, no_check())
    }

    /// [`read`](Self::read) that calls `check` at least every
    /// [`CHECK_INTERVAL`] while it waits; an error from `check` ends the
    /// wait and is returned.
    pub fn read_with<E: From<Error>>(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
        mut check: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        self.read_inner(buf, timeout, Some(&mut check))
    }

    /// Sends all of `data` to the guest (its keyboard), waiting up to
    /// `timeout` for QEMU to take it. On a timeout, part of `data` may have
    /// been sent. [`ErrorKind::Closed`](crate::ErrorKind::Closed) if QEMU
    /// closed the console (the VM stopped).
    pub fn write_all(&mut self, data: &[u8], timeout: Duration) -> Result<()> {
        self.write_inner(data, timeout, no_check())
    }

    /// [`write_all`](Self::write_all) with an interrupt check, as
    /// [`read_with`](Self::read_with).
    pub fn write_all_with<E: From<Error>>(
        &mut self,
        data: &[u8],
        timeout: Duration,
        mut check: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.write_inner(data, timeout, Some(&mut check))
    }

    /// Reads until the output matches the regular expression `pattern`
    /// (over bytes; `(?m)` makes `^` and `$` match at line ends) and returns
    /// what was read, ending with the match. Nothing after the match is
    /// consumed: it is there for the next read (and the descriptor stays
    /// readable for it).
    ///
    /// The match must start within [`CONSOLE_MATCH_MAX`] bytes of the
    /// newest output, and at most the newest [`CONSOLE_UNTIL_MAX`] bytes are
    /// returned. [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if no
    /// match came in `timeout`, [`ErrorKind::Closed`](crate::ErrorKind::Closed)
    /// if QEMU closed the console first; either way the bytes read are kept
    /// and the next read returns them first.
    pub fn read_until(&mut self, pattern: &str, timeout: Duration) -> Result<Vec<u8>> {
        self.read_until_inner(pattern, timeout, no_check())
    }

    /// [`read_until`](Self::read_until) with an interrupt check, as
    /// [`read_with`](Self::read_with).
    pub fn read_until_with<E: From<Error>>(
        &mut self,
        pattern: &str,
        timeout: Duration,
        mut check: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Vec<u8>, E> {
        self.read_until_inner(pattern, timeout, Some(&mut check))
    }

    /// Disconnects, so another console can attach; later reads and writes
    /// answer [`ErrorKind::Closed`](crate::ErrorKind::Closed). Closing twice
    /// is harmless.
    pub fn close(&mut self) {
        self.attached = None;
        self.pending.clear();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.attached.is_none()
    }

    /// The connection's descriptor, for the caller's own poll loop
    /// (readable: a read returns at once). Owned by the console, valid until
    /// it is closed or dropped; [`ErrorKind::Closed`](crate::ErrorKind::Closed)
    /// after [`close`](Self::close). (Not `AsFd`: a closed console has no
    /// descriptor to lend.) Bytes that a timed-out `read_until` kept are
    /// returned by the next read although the descriptor may not be readable.
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.attached.as_ref().map(|a| a.stream.as_fd()).ok_or(Error::Closed { what: "Console" })
    }

    /// The connection, if the console and its manager are both open.
    fn stream(&self) -> Result<&UnixStream> {
        let attached = self.attached.as_ref().ok_or(Error::Closed { what: "Console" })?;
        if self.manager.strong_count() == 0 {
            return Err(Error::Closed { what: "The manager of this console" });
        }
        Ok(&attached.stream)
    }

    fn io_error(&self, action: &'static str) -> impl Fn(io::Error) -> Error + '_ {
        move |source| Error::Console { action, vm: self.vm.clone(), source }
    }

    /// One non-blocking receive: `Some(n)` bytes (0 at end of stream),
    /// `None` if nothing is there yet.
    fn recv_now(&self, buf: &mut [u8], flags: MsgFlags) -> Result<Option<usize>> {
        let fd = self.stream()?.as_raw_fd();
        loop {
            return match recv(fd, buf, flags | MsgFlags::MSG_DONTWAIT) {
                Ok(n) => Ok(Some(n)),
                Err(Errno::EAGAIN) => Ok(None),
                Err(Errno::EINTR) => continue,
                // QEMU went away without a clean close: the same end.
                Err(Errno::ECONNRESET) => Ok(Some(0)),
                Err(e) => Err(self.io_error("read the console")(e.into())),
            };
        }
    }

    /// Waits for the connection to become readable (or, with `POLLOUT`,
    /// writable); false when the deadline passed first.
    fn wait<E: From<Error>>(&self, events: PollFlags, deadline: &Deadline, check: &mut Check<'_, E>) -> std::result::Result<bool, E> {
        let stream = self.stream()?;
        let mut fds = [PollFd::new(stream.as_fd(), events)];
        wait_any(&mut fds, deadline, check, None, &String::new, self.io_error("wait for the console"))
    }

    fn read_inner<E: From<Error>>(&mut self, buf: &mut [u8], timeout: Duration, mut check: Check<'_, E>) -> std::result::Result<usize, E> {
        if buf.is_empty() {
            return Err(Error::invalid("buffer", "must hold at least one byte").into());
        }
        self.stream()?;
        let len = buf.len().min(CONSOLE_READ_MAX);
        let buf = &mut buf[..len];
        if !self.pending.is_empty() {
            let n = len.min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(n) = self.recv_now(buf, MsgFlags::empty())? {
                return Ok(n);
            }
            if !self.wait(PollFlags::POLLIN, &deadline, &mut check)? {
                return Err(deadline.expired(format!("output on the console of VM {:?}", self.vm)).into());
            }
        }
    }

    fn write_inner<E: From<Error>>(&mut self, data: &[u8], timeout: Duration, mut check: Check<'_, E>) -> std::result::Result<(), E> {
        let fd = self.stream()?.as_raw_fd();
        let deadline = Deadline::after(timeout);
        let mut rest = data;
        while !rest.is_empty() {
            // MSG_NOSIGNAL: a closed console must be an error, not a SIGPIPE
            // that kills a C host that did not ignore it.
            match send(fd, rest, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !self.wait(PollFlags::POLLOUT, &deadline, &mut check)? {
                        return Err(deadline.expired(format!("the console of VM {:?} to take input", self.vm)).into());
                    }
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(Error::ConsoleEnded { vm: self.vm.clone() }.into()),
                Err(e) => return Err(self.io_error("write to the console")(e.into()).into()),
            }
        }
        Ok(())
    }

    fn read_until_inner<E: From<Error>>(
        &mut self,
        pattern: &str,
        timeout: Duration,
        mut check: Check<'_, E>,
    ) -> std::result::Result<Vec<u8>, E> {
        let regex = regex::bytes::Regex::new(pattern).map_err(|e| Error::invalid_because("pattern", "not a regular expression", e))?;
        self.stream()?;
        let deadline = Deadline::after(timeout);
        // Bytes an earlier read_until kept may hold the match already.
        let mut seen = std::mem::take(&mut self.pending);
        if let Some(m) = regex.find(&seen) {
            self.pending = seen.split_off(m.end());
            return Ok(seen);
        }
        let mut chunk = vec![0u8; CONSOLE_READ_MAX];
        loop {
            // Peek, so that bytes after the match stay in the socket for the
            // caller's next read (and its poll loop).
            let peeked = match self.recv_now(&mut chunk, MsgFlags::MSG_PEEK) {
                Ok(Some(0)) => Err(Error::ConsoleEnded { vm: self.vm.clone() }.into()),
                Ok(Some(n)) => Ok(n),
                Ok(None) => match self.wait(PollFlags::POLLIN, &deadline, &mut check) {
                    Ok(true) => continue,
                    Ok(false) => Err(deadline.expired(format!("{pattern:?} on the console of VM {:?}", self.vm)).into()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            let peeked = match peeked {
                Ok(n) => n,
                Err(e) => {
                    self.pending = seen;
                    return Err(e);
                }
            };
            let before = seen.len();
            seen.extend_from_slice(&chunk[..peeked]);
            let end = regex.find_at(&seen, before.saturating_sub(CONSOLE_MATCH_MAX)).map(|m| m.end());
            // Take from the socket exactly up to the match. (A match can end
            // inside the bytes held before, when a look-around such as `\b`
            // was settled by the new ones; then nothing more is taken.)
            let take = end.map_or(peeked, |end| end.saturating_sub(before));
            if let Err(e) = self.consume(take, &mut chunk) {
                seen.truncate(before);
                self.pending = seen;
                return Err(e.into());
            }
            if let Some(end) = end {
                // Held bytes after the match stay for the next read; peeked
                // ones past it are still in the socket.
                let mut rest = seen.split_off(end);
                rest.truncate(before.saturating_sub(end));
                self.pending = rest;
                keep_newest(&mut seen, CONSOLE_UNTIL_MAX);
                return Ok(seen);
            }
            keep_newest(&mut seen, CONSOLE_UNTIL_MAX);
        }
    }

    /// Takes `n` bytes that a peek showed are there out of the socket.
    fn consume(&self, mut n: usize, scratch: &mut [u8]) -> Result<()> {
        while n > 0 {
            let want = n.min(scratch.len());
            match self.recv_now(&mut scratch[..want], MsgFlags::empty())? {
                Some(0) | None => {
                    // Peeked bytes cannot vanish while this console is the
                    // socket's only reader; someone else read the descriptor.
                    return Err(Error::Internal("console bytes vanished between peek and read".into()));
                }
                Some(got) => n -= got,
            }
        }
        Ok(())
    }
}

/// Drops the oldest bytes so that at most `max` remain.
fn keep_newest(bytes: &mut Vec<u8>, max: usize) {
    if bytes.len() > max {
        bytes.drain(..bytes.len() - max);
    }
}

/// The error for an operation that found the VM's QEMU gone: its exit
/// settled (if the watcher has not done so yet) and the resulting state.
fn qemu_gone(ctx: &Inner, vm: &Vm, action: &'static str) -> Error {
    let state = match qemu::settle_exit(ctx, &vm.id, vm.pid.unwrap_or(0), qemu::exit_cause(ctx, &vm.id)) {
        Ok(Some(state)) => state,
        Ok(None) => ctx.vm(&vm.name).map_or(vm.state, |now| now.state),
        Err(e) => return e,
    };
    Error::InvalidState { vm: vm.name.clone(), state, action, needs: "a running QEMU" }
}

/// The VM, if it has a running QEMU (running or paused).
fn running_vm(ctx: &Inner, name: &str, action: &'static str) -> Result<Vm> {
    let vm = ctx.vm(name)?;
    if !matches!(vm.state, VmState::Running | VmState::Paused) {
        return Err(Error::InvalidState { vm: vm.name, state: vm.state, action, needs: "a running VM" });
    }
    Ok(vm)
}

impl Manager {
    /// Attaches to the VM's serial console. One console per VM at a time,
    /// across threads and processes: a second attach answers
    /// [`ErrorKind::InUse`](crate::ErrorKind::InUse) until the first is
    /// closed or dropped (or its process ends). A VM without a running QEMU
    /// is [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState).
    pub fn console(&self, name: &str) -> Result<Console> {
        const ACTION: &str = "attach to the console";
        let inner = &self.inner;
        let vm = running_vm(inner, name, ACTION)?;
        let paths = inner.runtime().paths(&vm.id);
        let lock_err = |source| Error::Console { action: "lock the console", vm: vm.name.clone(), source };
        let file = File::options().create(true).truncate(false).write(true).open(paths.dir.join(LOCK_FILE)).map_err(lock_err)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::InUse { kind: "Console of VM", name: vm.name.clone(), user: "another client".into() });
            }
            Err((_, errno)) => return Err(lock_err(errno.into())),
        };
        let stream = match UnixStream::connect(&paths.serial_sock) {
            Ok(stream) => stream,
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                    && qemu::open_qemu(inner, &vm).is_none() =>
            {
                return Err(qemu_gone(inner, &vm, ACTION));
            }
            Err(source) => return Err(Error::Console { action: "connect to the console", vm: vm.name, source }),
        };
        Ok(Console { vm: vm.name, manager: Arc::downgrade(inner), attached: Some(Attached { stream, _lock: lock }), pending: Vec::new() })
    }

    /// The last `max_bytes` the guest wrote to its serial console, also of
    /// a stopped VM. The log keeps one earlier part (the previous boot, or
    /// what a size rotation moved aside), so a short boot's tail may begin
    /// in the one before.
    pub fn console_tail(&self, name: &str, max_bytes: usize) -> Result<Vec<u8>> {
        let vm = self.inner.vm(name)?;
        let log = self.inner.runtime().serial_log(&vm.id);
        log.tail(max_bytes).map_err(|source| Error::Console { action: "read the serial log", vm: vm.name, source })
    }

    /// Waits until the guest prints a line matching the regular expression
    /// `pattern` on its serial console during the current run of its QEMU,
    /// and returns that line. Output of earlier runs never matches.
    ///
    /// A VM without a running QEMU (created, stopped, failed) is
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) at once;
    /// if its QEMU exits during the wait, the wait ends with the same
    /// error as soon as the exit is seen. [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
    /// if no line came in `timeout` (`Duration::MAX`: no limit). Lines a
    /// size rotation moved aside earlier in this run are not searched:
    /// wait before the guest gets chatty.
    pub fn wait_for_console(&self, name: &str, pattern: &str, timeout: Duration) -> Result<String> {
        self.wait_for_console_inner(name, pattern, timeout, no_check(), None)
    }

    /// [`wait_for_console`](Self::wait_for_console) that ends with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) as soon as
    /// `cancel` is cancelled. Nothing is changed by waiting, so nothing
    /// is left to undo.
    pub fn wait_for_console_cancellable(&self, name: &str, pattern: &str, timeout: Duration, cancel: &Cancel) -> Result<String> {
        self.wait_for_console_inner(name, pattern, timeout, no_check(), Some(cancel))
    }

    /// [`wait_for_console`](Self::wait_for_console) that calls `check` at
    /// least every [`CHECK_INTERVAL`] while it waits; an error from `check`
    /// ends the wait and is returned.
    pub fn wait_for_console_with<E: From<Error>>(
        &self,
        name: &str,
        pattern: &str,
        timeout: Duration,
        mut check: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<String, E> {
        self.wait_for_console_inner(name, pattern, timeout, Some(&mut check), None)
    }

    fn wait_for_console_inner<E: From<Error>>(
        &self,
        name: &str,
        pattern: &str,
        timeout: Duration,
        mut check: Check<'_, E>,
        cancel: Option<&Cancel>,
    ) -> std::result::Result<String, E> {
        const ACTION: &str = "wait for console output";
        let regex = regex::Regex::new(pattern).map_err(|e| Error::invalid_because("pattern", "not a regular expression", e))?;
        let what = || format!("{pattern:?} on the console of VM {name:?}");
        cancel::check(cancel, what)?;
        let inner = &self.inner;
        let vm = running_vm(inner, name, ACTION)?;
        // This run's QEMU: its exit ends the wait. Its log holds only this
        // run's output (the previous run's was moved aside before it started).
        let Some((_, pidfd)) = qemu::open_qemu(inner, &vm) else {
            return Err(qemu_gone(inner, &vm, ACTION).into());
        };
        let log_err = |source| Error::Console { action: "read the serial log", vm: vm.name.clone(), source };
        let log = inner.runtime().serial_log(&vm.id);
        let mut follower = LineFollower::new(&log, None).map_err(log_err)?;
        let deadline = Deadline::after(timeout);
        let mut exited = false;
        loop {
            if let Some(line) = follower.next_match(&regex).map_err(log_err)? {
                return Ok(line);
            }
            // The log was read once more after the exit: QEMU wrote all it
            // ever will before it ended.
            if exited {
                return Err(qemu_gone(inner, &vm, ACTION).into());
            }
            let mut fds = [PollFd::new(follower.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if !wait_any(&mut fds, &deadline, &mut check, cancel, &what, log_err)? {
                return Err(deadline.expired(what()).into());
            }
            exited = fds[1].revents().is_some_and(|r| !r.is_empty());
        }
    }
}
