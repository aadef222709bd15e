//! The serial console log: keep it bounded, read its tail, wait for a line.
//!
//! Every VM's QEMU runs with
//! `-chardev socket,id=ser0,path=<run>/serial.sock,server=on,wait=off,logfile=<run>/serial.log,logappend=on`,
//! so QEMU appends everything the guest prints to `serial.log`, whether or not
//! a client is connected to the socket. This module owns that file:
//!
//! - [`SerialLog::prepare_for_start`] moves the previous boot's log to
//!   `serial.log.1` before QEMU starts, so each boot begins with a fresh log;
//! - [`SerialLog::enforce_cap`] bounds a running VM's log by copy-and-truncate:
//!   the newest `cap / 2` bytes go to `serial.log.1` and `serial.log` is
//!   truncated to zero. This is only correct because `logappend=on` makes QEMU
//!   open the file with `O_APPEND`: its next write lands at the new end of
//!   file. With `logappend=off` QEMU keeps writing at its old offset and the
//!   log becomes a sparse file whose start reads as NUL bytes (both verified
//!   on QEMU 10.0.2);
//! - [`CapWatch`] runs `enforce_cap` for many logs from one thread, driven by
//!   inotify and throttled to one check per log per interval;
//! - [`SerialLog::tail`] reads the newest output across both files;
//! - [`SerialLog::wait_for_line`] blocks (inotify + `poll`, no sleeping loop)
//!   until a matching line appears.
//!
//! Disk use per VM stays within about 1.5 × the cap: `serial.log` up to the
//! cap plus what the guest writes in one [`CapWatch`] check interval,
//! `serial.log.1` up to half the cap. While a rotation runs, its temporary
//! file adds another half cap for a moment.
//!
//! Needs nix with the `inotify`, `event` (epoll), `fs` (flock) and `poll`
//! features, libc (timerfd), regex and log.
//!
//! Rotations taken by vman hold an exclusive `flock(2)` on `serial.log` and
//! [`SerialLog::tail`] holds a shared one, so a tail never sees a rotation
//! half done and two rotators (say [`CapWatch`] and a direct call) never
//! rotate twice. QEMU takes no lock; it only ever appends.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use regex::Regex;

/// The log QEMU appends to, inside a VM's run directory.
pub const LOG_FILE_NAME: &str = "serial.log";
/// The previous boot's log, or the older half kept by a rotation.
pub const ROTATED_FILE_NAME: &str = "serial.log.1";
/// Where a rotation writes `serial.log.1` before renaming it into place.
const TEMP_FILE_NAME: &str = "serial.log.1.tmp";

/// The longest line [`SerialLog::wait_for_line`] assembles. A longer run of
/// bytes without a newline is matched in pieces of this size, so a guest that
/// never prints `\n` cannot make the waiter allocate without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Read and copy buffer size.
const CHUNK_BYTES: usize = 64 * 1024;

/// How many inotify reads one drain does at most, so a flood of events
/// cannot keep a caller inside [`CapWatch::on_readable`] forever.
const MAX_INOTIFY_READS_PER_DRAIN: usize = 64;

/// One VM's serial log: `<run_dir>/serial.log` and its rotated copy
/// `<run_dir>/serial.log.1`.
///
/// The struct holds only paths, so it is cheap to clone and safe to use from
/// several threads (and processes) at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLog {
    path: PathBuf,
    cap_bytes: u64,
}

impl SerialLog {
    /// The log in `run_dir`, rotated by [`enforce_cap`](Self::enforce_cap)
    /// once it grows past `cap_bytes` (0 rotates any non-empty log and keeps
    /// nothing).
    pub fn new(run_dir: &Path, cap_bytes: u64) -> Self {
        Self { path: run_dir.join(LOG_FILE_NAME), cap_bytes }
    }

    /// `<run_dir>/serial.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<run_dir>/serial.log.1`.
    pub fn rotated_path(&self) -> PathBuf {
        self.path.with_file_name(ROTATED_FILE_NAME)
    }

    fn run_dir(&self) -> &Path {
        // `path` is always `run_dir.join(LOG_FILE_NAME)`, so it has a parent;
        // the fallback only satisfies the type.
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn temp_path(&self) -> PathBuf {
        self.path.with_file_name(TEMP_FILE_NAME)
    }

    /// Call before starting QEMU: a non-empty `serial.log` becomes
    /// `serial.log.1` (replacing it), so each boot starts with a fresh log and
    /// the previous boot's output is kept once. Also removes a temporary file
    /// left by a rotation that was interrupted.
    pub fn prepare_for_start(&self) -> io::Result<()> {
        remove_if_exists(&self.temp_path())?;
        match fs::metadata(&self.path) {
            Ok(meta) if meta.len() > 0 => fs::rename(&self.path, self.rotated_path()),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The current size of `serial.log`; 0 if it does not exist or cannot be
    /// inspected. (The offset to pass to `wait_for_line` for new output only.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn len(&self) -> u64 {
        fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// If `serial.log` is larger than the cap, copy its last `cap / 2` bytes
    /// to `serial.log.1` (written to a temporary file, then renamed over it)
    /// and truncate `serial.log` to zero. Returns whether it rotated; a
    /// missing log is not an error.
    ///
    /// QEMU keeps its descriptor and, thanks to `O_APPEND` (`logappend=on`),
    /// writes at the new end of file. Bytes the guest prints in the few
    /// microseconds between the copy reaching end of file and the truncation
    /// are lost; logrotate's `copytruncate` has the same window. The copy
    /// starts mid-line, so `serial.log.1` may begin with a partial line.
    pub fn enforce_cap(&self) -> io::Result<bool> {
        // Cheap unlocked check first: this runs on every write burst.
        match fs::metadata(&self.path) {
            Ok(meta) if meta.len() > self.cap_bytes => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        let file = match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
        // Check again under the lock: another rotator may have just finished.
        let size = file.metadata()?.len();
        if size <= self.cap_bytes {
            return Ok(false);
        }
        let mut head = [0u8; 16];
        if file.read_at(&mut head, 0).is_ok_and(|n| n == head.len()) && head == [0u8; 16] {
            // A writer without O_APPEND kept its offset across an earlier
            // truncation and left a hole: rotating cannot bound this file.
            log::warn!("{} starts with a hole; its writer does not append (QEMU needs logappend=on)", self.path.display());
        }
        let temp_path = self.temp_path();
        let result = self.rotate_locked(&file, size, &temp_path);
        if result.is_err() {
            let _ = fs::remove_file(&temp_path);
        }
        result.map(|()| true)
    }

    fn rotate_locked(&self, file: &File, size: u64, temp_path: &Path) -> io::Result<()> {
        let keep = self.cap_bytes / 2;
        let start = size - keep.min(size);
        // QEMU may append while we copy, so copy on to end of file rather than
        // to `size`; bounded so that a runaway writer cannot keep us here.
        let limit = start.saturating_add(keep).saturating_add(self.cap_bytes);
        let mut temp = OpenOptions::new().write(true).create(true).truncate(true).open(temp_path)?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut offset = start;
        while offset < limit {
            let n = match file.read_at(&mut buf, offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            temp.write_all(&buf[..n])?;
            offset += n as u64;
        }
        // Truncate right after the last read to keep the loss window short;
        // the rename can wait, readers are held off by the lock.
        file.set_len(0)?;
        drop(temp);
        fs::rename(temp_path, self.rotated_path())?;
        log::debug!("rotated {} at {} bytes, kept {} bytes", self.path.display(), size, offset - start);
        Ok(())
    }

    /// The last `max_bytes` of output across `serial.log.1` and `serial.log`,
    /// oldest first, so a tail taken just after a rotation still shows recent
    /// output. After [`prepare_for_start`](Self::prepare_for_start) the
    /// previous boot's output in `serial.log.1` is part of the tail too.
    pub fn tail(&self, max_bytes: usize) -> io::Result<Vec<u8>> {
        let want = max_bytes as u64;
        // Hold a shared lock on serial.log so that no vman rotation runs
        // between reading the two files.
        let log = match File::open(&self.path) {
            Ok(f) => Some(Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let log_len = match &log {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        let mut out = Vec::new();
        if log_len < want {
            match File::open(self.rotated_path()) {
                Ok(old) => {
                    let old_len = old.metadata()?.len();
                    let n = (want - log_len).min(old_len);
                    read_range(&old, old_len - n, n, &mut out)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(log) = &log {
            let n = want.min(log_len);
            read_range(log, log_len - n, n, &mut out)?;
        }
        Ok(out)
    }

    /// Wait until a complete line of `serial.log` matches `pattern`, and
    /// return it; `None` when `timeout` passes first.
    ///
    /// Reading starts at `from_offset`, or at the start of the log. To wait
    /// only for new output, pass [`len`](Self::len) taken before the action
    /// that should produce the line. A log that does not exist yet is waited
    /// for, and then read from its start.
    ///
    /// Lines end at `\n`; a trailing `\r` is removed and invalid UTF-8 is
    /// replaced before matching. A partial line is kept until it is completed.
    /// A run of more than [`MAX_LINE_BYTES`] without a newline is matched in
    /// pieces of that size (a match straddling two pieces is missed).
    ///
    /// The wait is event driven: inotify on the log (`IN_MODIFY`,
    /// `IN_CLOSE_WRITE`) and on the run directory (`IN_CREATE`,
    /// `IN_MOVED_TO`, for a log created or replaced after the call), and
    /// `poll(2)` with the time left, so it returns right after the write
    /// that completes the line (well under a millisecond on an idle host)
    /// and uses no CPU while nothing is written.
    ///
    /// Rotations: when the log shrinks (an [`enforce_cap`](Self::enforce_cap)
    /// truncation) reading continues at offset 0 and the kept partial line is
    /// completed from there, since the guest's stream simply continues. Bytes
    /// written after this function last read and before the truncation went
    /// only to `serial.log.1` and are not scanned: the reader keeps up within
    /// about a millisecond while a rotation needs a whole cap of output, so
    /// the window is small, and scanning the copy would mean guessing where
    /// in it the unread part starts. If the truncated log grows past the old
    /// read offset before this function notices, the shrink goes unseen and
    /// the bytes between 0 and the offset are skipped; that needs a cap's
    /// worth of output within one wakeup. When `serial.log` is replaced by a
    /// new file (a new boot after [`prepare_for_start`](Self::prepare_for_start)),
    /// the rest of the old file is read first, then the new file from its
    /// start.
    ///
    /// The run directory must exist. To wait on more than the log (a
    /// QEMU's exit, an interrupt), drive a [`LineFollower`] instead.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn wait_for_line(&self, pattern: &Regex, timeout: Duration, from_offset: Option<u64>) -> io::Result<Option<String>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut follower = LineFollower::new(self, from_offset)?;
        loop {
            if let Some(line) = follower.next_match(pattern)? {
                return Ok(Some(line));
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up: a sub-millisecond remainder must not become a
                    // zero timeout that spins until the deadline.
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            wait_readable(follower.as_fd(), timeout)?;
        }
    }
}

/// Follows `serial.log` for lines matching a pattern, for a caller that
/// waits on more than the log (the console module also waits on the QEMU's
/// pidfd and an interrupt check): put [`as_fd`](AsFd::as_fd) in a `poll`
/// set and call [`next_match`](Self::next_match) after every wakeup. What
/// is read, and how rotations and a replaced log are followed, is as
/// described for [`SerialLog::wait_for_line`].
#[derive(Debug)]
pub struct LineFollower {
    path: PathBuf,
    inotify: Inotify,
    follower: Follower,
}

impl LineFollower {
    /// Starts following `log` at `from_offset` (or its start). The run
    /// directory must exist.
    pub fn new(log: &SerialLog, from_offset: Option<u64>) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // Watch the directory before the first look at the file, so a log
        // created in between is not missed.
        inotify.add_watch(log.run_dir(), AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR)?;
        Ok(Self { path: log.path.clone(), inotify, follower: Follower::new(from_offset.unwrap_or(0)) })
    }

    /// Reads what the log gained since the last call and returns the first
    /// complete line that matches, if any. Never blocks.
    pub fn next_match(&mut self, pattern: &Regex) -> io::Result<Option<String>> {
        // Which event woke the caller does not matter: `sync` re-examines
        // the log. Draining first means a write after this point queues a
        // new event, so nothing written is left unnoticed.
        drain(&self.inotify)?;
        self.follower.sync(&self.inotify, &self.path, pattern)
    }
}

impl AsFd for LineFollower {
    /// Readable when the log (or its directory) changed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

/// Incremental reader state for [`LineFollower`].
#[derive(Debug)]
struct Follower {
    /// The open log, its inode, and the watch on it.
    file: Option<(File, (u64, u64), WatchDescriptor)>,
    /// The caller's starting offset, applied to the file open at the call.
    first_offset: Option<u64>,
    /// Where the next read starts in `file`.
    offset: u64,
    /// Bytes of the current line read so far (no `\n` yet).
    partial: Vec<u8>,
    buf: Vec<u8>,
}

impl Follower {
    fn new(first_offset: u64) -> Self {
        Self { file: None, first_offset: Some(first_offset), offset: 0, partial: Vec::new(), buf: vec![0u8; CHUNK_BYTES] }
    }

    /// Catch up with the log: notice a new or replaced file and a truncation,
    /// then read everything up to end of file. Returns the first match.
    fn sync(&mut self, inotify: &Inotify, path: &Path, pattern: &Regex) -> io::Result<Option<String>> {
        let current = match fs::metadata(path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if current.is_none() && self.file.is_none() {
            // No log at the call: the caller's offset does not apply to the
            // log that appears later.
            self.first_offset = None;
            return Ok(None);
        }
        let replaced = match (&self.file, current) {
            (Some((_, ino, _)), Some(cur)) => *ino != cur,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if replaced {
            // Finish the old file first: what it got after our offset is
            // output the caller asked for.
            if let Some(line) = self.read_to_end(pattern)? {
                return Ok(Some(line));
            }
            if let Some((_, _, wd)) = self.file.take() {
                // The watch may already be gone with its inode; nothing to do then.
                let _ = inotify.rm_watch(wd);
                self.partial.clear();
            }
            if let Some(found) = self.open(inotify, path)? {
                return Ok(Some(found));
            }
        } else if let Some((file, _, _)) = &self.file {
            let size = file.metadata()?.len();
            if size < self.offset {
                // Truncated by a rotation; the guest's output continues at 0.
                log::debug!("{} shrank to {size} bytes, reading from 0", path.display());
                self.offset = 0;
            }
        }
        self.read_to_end(pattern)
    }

    /// Open the log and watch it. Returns `Ok(None)` also when it vanished
    /// again; the directory watch reports its next appearance.
    fn open(&mut self, inotify: &Inotify, path: &Path) -> io::Result<Option<String>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // Watch the path after opening it; if it was replaced in between, the
        // directory watch has an event queued and the next `sync` switches.
        let wd = match inotify.add_watch(path, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE) {
            Ok(wd) => wd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        // The caller's offset refers to the log that existed at the call; a
        // log that appears later is read from its start. An offset past the
        // end means the log was rotated since the caller measured it.
        self.offset = match self.first_offset.take() {
            Some(off) if off <= meta.len() => off,
            _ => 0,
        };
        self.file = Some((file, (meta.dev(), meta.ino()), wd));
        Ok(None)
    }

    fn read_to_end(&mut self, pattern: &Regex) -> io::Result<Option<String>> {
        let Some((file, _, _)) = &self.file else {
            return Ok(None);
        };
        loop {
            let n = match file.read_at(&mut self.buf, self.offset) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.offset += n as u64;
            if let Some(line) = feed_lines(&mut self.partial, &self.buf[..n], pattern) {
                return Ok(Some(line));
            }
        }
    }
}

/// Split `data` into lines, continuing the line in `partial`, and return the
/// first complete line that matches. Lines are capped at [`MAX_LINE_BYTES`].
fn feed_lines(partial: &mut Vec<u8>, mut data: &[u8], pattern: &Regex) -> Option<String> {
    while !data.is_empty() {
        // `partial` is emptied whenever it reaches the cap, so room > 0.
        let room = MAX_LINE_BYTES - partial.len();
        let window = &data[..data.len().min(room)];
        let (piece, consumed, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (&window[..i], i + 1, true),
            None => (window, window.len(), partial.len() + window.len() == MAX_LINE_BYTES),
        };
        partial.extend_from_slice(piece);
        data = &data[consumed..];
        if complete {
            let line = partial.strip_suffix(b"\r").unwrap_or(partial);
            let text = String::from_utf8_lossy(line);
            let found = pattern.is_match(&text).then(|| text.into_owned());
            partial.clear();
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Identifies a log added to a [`CapWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(u64);

/// How long [`CapWatch::new`] stops watching a log after seeing it written.
/// See [`CapWatch::with_interval`].
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Caps many serial logs from one thread, driven by inotify.
///
/// Put [`as_fd`](AsFd::as_fd) in the thread's `poll` set and call
/// [`on_readable`](Self::on_readable) whenever it is readable; that rotates,
/// with [`SerialLog::enforce_cap`], every log that was written and is over
/// its cap. The descriptor is an epoll instance holding the inotify
/// descriptor and a timerfd, so the caller needs no timeout of its own.
///
/// QEMU writes the log one byte per `write(2)` (measured on QEMU 10.0.2), so
/// reacting to every write would wake the thread tens of thousands of times
/// a second for one chatty guest (23 % of a core in a TCG measurement). So
/// after a log is seen written, its watch is dropped for the check interval;
/// when that ends the watch is re-armed and the log checked once. A busy log
/// costs about two wakeups and two `stat`s per interval, an idle one
/// nothing. The price: a log can pass its cap by what the guest writes in
/// one interval (about 10 kB at 100 ms for a TCG guest printing flat out).
///
/// Each log's run directory is watched too, so a `serial.log` created or
/// replaced later (a VM restarted after [`SerialLog::prepare_for_start`]) is
/// picked up without calling [`add`](Self::add) again.
#[derive(Debug)]
pub struct CapWatch {
    /// What the caller polls: readable when `inotify` or `timer` is.
    epoll: Epoll,
    inotify: Inotify,
    timer: Timer,
    interval: Duration,
    next_id: u64,
    entries: HashMap<WatchId, CapEntry>,
    by_wd: HashMap<WatchDescriptor, WatchId>,
}

#[derive(Debug)]
struct CapEntry {
    log: SerialLog,
    dir_wd: WatchDescriptor,
    /// The watch on the current `serial.log`: `None` while quiet or while
    /// there is no log.
    file_wd: Option<WatchDescriptor>,
    /// Set while the log's writes are not watched; at this time the watch is
    /// re-armed and the log checked.
    quiet_until: Option<Instant>,
}

impl CapWatch {
    /// An empty watch with the [`DEFAULT_CHECK_INTERVAL`].
    pub fn new() -> io::Result<Self> {
        Self::with_interval(DEFAULT_CHECK_INTERVAL)
    }

    /// An empty watch that, after seeing a log written, leaves it unwatched
    /// for `interval`. Zero checks the log on every wakeup that reports a
    /// write, which keeps logs within a few bytes of their cap at a high CPU
    /// cost for chatty guests.
    pub fn with_interval(interval: Duration) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let timer = Timer::new()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(inotify.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        epoll.add(timer.0.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        Ok(Self { epoll, inotify, timer, interval, next_id: 0, entries: HashMap::new(), by_wd: HashMap::new() })
    }

    /// Cap `<run_dir>/serial.log` at `cap_bytes` (see [`SerialLog::new`]).
    /// The log need not exist yet; if it exists and is already over its cap
    /// it is rotated now. Fails with `AlreadyExists` if `run_dir` is already
    /// watched, and with `NotFound` if it does not exist.
    pub fn add(&mut self, run_dir: &Path, cap_bytes: u64) -> io::Result<WatchId> {
        let dir_wd = self.inotify.add_watch(run_dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR)?;
        if self.by_wd.contains_key(&dir_wd) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is already watched", run_dir.display())));
        }
        let id = WatchId(self.next_id);
        self.next_id += 1;
        self.by_wd.insert(dir_wd, id);
        self.entries.insert(id, CapEntry { log: SerialLog::new(run_dir, cap_bytes), dir_wd, file_wd: None, quiet_until: None });
        self.arm_file(id);
        self.check(id);
        Ok(id)
    }

    /// Stop watching a log. Returns false if `id` was not (or no longer)
    /// watched.
    pub fn remove(&mut self, id: WatchId) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        for wd in std::iter::once(entry.dir_wd).chain(entry.file_wd) {
            self.by_wd.remove(&wd);
            // Fails only if the watch already went away with its inode.
            let _ = self.inotify.rm_watch(wd);
        }
        true
    }

    /// Handle what made [`as_fd`](AsFd::as_fd) readable: drain the inotify
    /// events and the timer, and rotate every log that was written (or whose
    /// quiet interval ended) and is over its cap; each log is checked at most
    /// once per call. Returns the paths of the logs rotated. Never blocks;
    /// calling it when nothing is ready is harmless. Failures to rotate are
    /// logged at warn level and retried on the log's next write.
    pub fn on_readable(&mut self) -> Vec<PathBuf> {
        self.timer.clear();
        // Logs reported written: check, then quiet.
        let mut written = HashSet::new();
        // Logs to check without quieting them (new file, quiet period over).
        let mut check = HashSet::new();
        let mut rearm = HashSet::new();
        let mut overflow = false;
        for _ in 0..MAX_INOTIFY_READS_PER_DRAIN {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("reading serial log inotify events failed: {e}");
                    break;
                }
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                let Some(&id) = self.by_wd.get(&ev.wd) else {
                    // A watch already dropped (quiet period, replaced log).
                    continue;
                };
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // A one-shot watch fired, or the watched inode is gone
                    // (log or run directory deleted).
                    self.forget_wd(id, ev.wd);
                    continue;
                }
                let Some(entry) = self.entries.get(&id) else {
                    continue;
                };
                if ev.wd != entry.dir_wd {
                    written.insert(id);
                } else if ev.name.as_deref() == Some(OsStr::new(LOG_FILE_NAME)) {
                    rearm.insert(id);
                    check.insert(id);
                }
            }
        }
        if overflow {
            log::warn!("serial log inotify queue overflowed; checking every log");
            rearm.extend(self.entries.keys().copied());
            check.extend(self.entries.keys().copied());
        }
        let now = Instant::now();
        for (id, entry) in &mut self.entries {
            if entry.quiet_until.is_some_and(|t| t <= now) {
                entry.quiet_until = None;
                rearm.insert(*id);
                check.insert(*id);
            }
        }
        // Re-arm before checking, so a write right after the check is seen.
        for id in rearm {
            self.arm_file(id);
        }
        let mut rotated = Vec::new();
        for id in check.union(&written) {
            rotated.extend(self.check(*id));
        }
        if !self.interval.is_zero() {
            for id in written {
                self.quiet(id, now + self.interval);
            }
        }
        self.set_timer(now);
        rotated
    }

    /// Watch the current `serial.log` of `id`, replacing a watch on an older
    /// file; while the log is quiet only drop the old watch. A missing log is
    /// fine: the directory watch reports its creation.
    fn arm_file(&mut self, id: WatchId) {
        // With a quiet interval the first write ends the watch anyway; a
        // one-shot watch ends it in the kernel, so its IN_IGNORED arrives
        // with the event instead of waking the thread again after rm_watch.
        let mask = if self.interval.is_zero() { AddWatchFlags::IN_MODIFY } else { AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_ONESHOT };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let new_wd = if entry.quiet_until.is_some() {
            None
        } else {
            match self.inotify.add_watch(entry.log.path(), mask) {
                Ok(wd) => Some(wd),
                Err(Errno::ENOENT) => None,
                Err(e) => {
                    log::warn!("cannot watch {}: {e}", entry.log.path().display());
                    None
                }
            }
        };
        if entry.file_wd == new_wd {
            return;
        }
        if let Some(old) = entry.file_wd.take() {
            self.by_wd.remove(&old);
            // Fails only if the old inode is already gone.
            let _ = self.inotify.rm_watch(old);
        }
        if let Some(wd) = new_wd {
            self.by_wd.insert(wd, id);
        }
        entry.file_wd = new_wd;
    }

    /// Stop watching the writes of `id` until `until`.
    fn quiet(&mut self, id: WatchId, until: Instant) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.quiet_until = Some(until);
        }
        self.arm_file(id);
    }

    /// Arm the timer for the earliest end of a quiet period, or disarm it.
    fn set_timer(&self, now: Instant) {
        let next = self.entries.values().filter_map(|e| e.quiet_until).min();
        if let Err(e) = self.timer.set(next.map(|t| t.saturating_duration_since(now))) {
            // Cannot happen with valid arguments; logs would stay unwatched.
            log::error!("cannot arm the serial log timer: {e}");
        }
    }

    fn forget_wd(&mut self, id: WatchId, wd: WatchDescriptor) {
        self.by_wd.remove(&wd);
        if let Some(entry) = self.entries.get_mut(&id) {
            if entry.file_wd == Some(wd) {
                entry.file_wd = None;
            } else if entry.dir_wd == wd {
                log::warn!("run directory of {} went away; its log is no longer capped", entry.log.path().display());
            }
        }
    }

    /// Enforce the cap of `id`; the log's path if it rotated.
    fn check(&self, id: WatchId) -> Option<PathBuf> {
        let entry = self.entries.get(&id)?;
        match entry.log.enforce_cap() {
            Ok(true) => Some(entry.log.path().to_path_buf()),
            Ok(false) => None,
            Err(e) => {
                log::warn!("cannot cap {}: {e}", entry.log.path().display());
                None
            }
        }
    }
}

impl AsFd for CapWatch {
    /// Readable when there is work for [`on_readable`](CapWatch::on_readable).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

/// A one-shot monotonic timerfd (nix wraps timerfd only behind its `time`
/// feature; these are three plain calls).
#[derive(Debug)]
struct Timer(OwnedFd);

impl Timer {
    fn new() -> io::Result<Self> {
        // SAFETY: timerfd_create takes no pointers; its result is checked.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Expire once after `after`, or never (`None`).
    fn set(&self, after: Option<Duration>) -> io::Result<()> {
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let value = match after {
            // An all-zero value would disarm the timer instead.
            Some(d) => {
                let d = d.max(Duration::from_nanos(1));
                libc::timespec {
                    tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                    // Below 10^9, so it fits.
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                }
            }
            None => zero,
        };
        let spec = libc::itimerspec { it_interval: zero, it_value: value };
        // SAFETY: `spec` is a valid itimerspec for the call's duration and
        // the old-value pointer may be null.
        let rc = unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consume an expiry so the descriptor is no longer readable.
    fn clear(&self) {
        let mut count = [0u8; 8];
        // EAGAIN (not expired) is the common case; nothing else can fail here.
        let _ = nix::unistd::read(&self.0, &mut count);
    }
}

/// Read `len` bytes at `start` into `out`, stopping early at end of file.
fn read_range(file: &File, start: u64, len: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let begin = out.len();
    // `len` is at most the caller's `max_bytes: usize`, so this fits.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    out.resize(begin + len, 0);
    let mut done = 0;
    while done < len {
        match file.read_at(&mut out[begin + done..], start + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.truncate(begin);
                return Err(e);
            }
        }
    }
    out.truncate(begin + done);
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Block until `fd` is readable or `timeout` passes. A signal interrupting
/// the wait counts as a (spurious) wakeup.
fn wait_readable(fd: BorrowedFd<'_>, timeout: PollTimeout) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Discard the queued events of a non-blocking inotify descriptor.
fn drain(inotify: &Inotify) -> io::Result<()> {
    for _ in 0..MAX_INOTIFY_READS_PER_DRAIN {
        match inotify.read_events() {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use std::io::Write;
    use std::thread;

    fn append(path: &Path, data: &[u8]) {
        let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(data).unwrap();
    }

    /// Bytes that identify their own offset, so a copy can be checked.
    fn numbered(len: usize) -> Vec<u8> {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    }

    fn re(s: &str) -> Regex {
        Regex::new(s).unwrap()
    }

    /// `wait_for_line` with a 5 s timeout that must return well before it:
    /// a wait that only succeeds by re-reading at the deadline fails here.
    fn wait_soon(log: &SerialLog, pattern: &str, from: Option<u64>) -> Option<String> {
        let started = Instant::now();
        let line = log.wait_for_line(&re(pattern), Duration::from_secs(5), from).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "woke only at the timeout");
        line
    }

    #[test]
    fn enforce_cap_keeps_the_newest_half_cap_and_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 400);
        let data = numbered(1000);
        append(log.path(), &data);
        assert!(log.enforce_cap().unwrap());
        assert_eq!(fs::read(log.rotated_path()).unwrap(), &data[800..]);
        assert_eq!(log.len(), 0);
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        // Under the cap again: nothing happens.
        append(log.path(), b"x");
        assert!(!log.enforce_cap().unwrap());
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn enforce_cap_ignores_a_missing_or_small_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 100);
        assert!(!log.enforce_cap().unwrap());
        append(log.path(), &[b'x'; 100]);
        assert!(!log.enforce_cap().unwrap());
        assert!(!log.rotated_path().exists());
    }

    #[test]
    fn an_append_writer_continues_at_the_new_end_after_truncation_and_disk_use_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 4096;
        let log = SerialLog::new(dir.path(), cap);
        // Like QEMU with logappend=on: one descriptor, O_APPEND, kept open.
        let mut writer = OpenOptions::new().create(true).append(true).open(log.path()).unwrap();
        let mut rotations = 0;
        for i in 0..1000u32 {
            writer.write_all(format!("line {i:05}\n").as_bytes()).unwrap();
            if log.enforce_cap().unwrap() {
                rotations += 1;
                writer.write_all(b"after\n").unwrap();
                let head = fs::read(log.path()).unwrap();
                assert_eq!(head, b"after\n", "write after truncation must land at offset 0");
            }
            let total = log.len() + fs::metadata(log.rotated_path()).map_or(0, |m| m.len());
            assert!(total <= cap + cap / 2 + 11, "total {total} exceeds 1.5 x cap");
        }
        assert!(rotations >= 2, "only {rotations} rotations");
        let tail = log.tail(20).unwrap();
        assert!(tail.ends_with(b"line 00999\n"), "{:?}", String::from_utf8_lossy(&tail));
    }

    #[test]
    fn prepare_for_start_keeps_only_the_previous_non_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        log.prepare_for_start().unwrap(); // no log yet: fine
        append(log.path(), b"boot 1\n");
        log.prepare_for_start().unwrap();
        assert!(!log.path().exists());
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"boot 1\n");
        append(log.path(), b"boot 2\n");
        log.prepare_for_start().unwrap();
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"boot 2\n");
        // An empty log is left alone and does not clobber the previous boot.
        append(log.path(), b"");
        fs::write(dir.path().join(TEMP_FILE_NAME), b"stale").unwrap();
        log.prepare_for_start().unwrap();
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"boot 2\n");
        assert!(log.path().exists());
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
    }

    #[test]
    fn tail_spans_the_rotated_copy_and_the_log_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        assert_eq!(log.tail(10).unwrap(), b"");
        fs::write(log.rotated_path(), b"abcdef").unwrap();
        assert_eq!(log.tail(4).unwrap(), b"cdef"); // no serial.log
        fs::write(log.path(), b"ghij").unwrap();
        assert_eq!(log.tail(6).unwrap(), b"efghij");
        assert_eq!(log.tail(3).unwrap(), b"hij");
        assert_eq!(log.tail(4).unwrap(), b"ghij");
        assert_eq!(log.tail(100).unwrap(), b"abcdefghij");
        assert_eq!(log.tail(0).unwrap(), b"");
    }

    #[test]
    fn tail_right_after_a_rotation_shows_recent_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 100);
        append(log.path(), &numbered(150));
        assert!(log.enforce_cap().unwrap());
        assert_eq!(log.tail(30).unwrap(), &numbered(150)[120..]);
    }

    /// CPU time the calling thread has used.
    fn thread_cpu_time() -> Duration {
        let stat = fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
    }

    #[test]
    fn wait_for_line_returns_promptly_after_the_write_not_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        append(log.path(), b"booting\nVMAN-GUEST-READY (old boot, skipped)\n");
        let mut lags = Vec::new();
        for round in 0..5 {
            let from = log.len();
            let path = log.path().to_path_buf();
            let writer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(60));
                append(&path, b"noise\n");
                thread::sleep(Duration::from_millis(60));
                append(&path, format!("VMAN-GUEST-READY {round}\r\n").as_bytes());
                Instant::now()
            });
            let line = log.wait_for_line(&re("^VMAN-GUEST-READY [0-9]$"), Duration::from_secs(10), Some(from)).unwrap();
            let returned = Instant::now();
            let written = writer.join().unwrap();
            assert_eq!(line, Some(format!("VMAN-GUEST-READY {round}")));
            lags.push(returned.saturating_duration_since(written));
        }
        lags.sort();
        // The median, so one scheduling hiccup on a loaded machine does not
        // fail the test; a wait that slept in steps would show here.
        assert!(lags[2] < Duration::from_millis(50), "lags after the write: {lags:?}");
        assert!(lags[4] < Duration::from_secs(1), "lags after the write: {lags:?}");
    }

    #[test]
    fn wait_for_line_reads_from_the_start_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        append(log.path(), b"a\nfound it\nb\n");
        let line = log.wait_for_line(&re("found"), Duration::ZERO, None).unwrap();
        assert_eq!(line.as_deref(), Some("found it"));
    }

    #[test]
    fn wait_for_line_times_out_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        append(log.path(), b"nothing here\nREADY without newline");
        let started = Instant::now();
        let cpu = thread_cpu_time();
        let line = log.wait_for_line(&re("READY"), Duration::from_millis(300), None).unwrap();
        let (took, cpu) = (started.elapsed(), thread_cpu_time() - cpu);
        assert_eq!(line, None, "an incomplete line must not match");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // Blocked in poll(2), not spinning: a busy wait would use ~300 ms.
        assert!(cpu < Duration::from_millis(30), "used {cpu:?} of CPU while waiting");
    }

    #[test]
    fn wait_for_line_completes_a_partial_line_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        append(log.path(), b"VMAN-GUEST-");
        let path = log.path().to_path_buf();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            append(&path, b"REA");
            thread::sleep(Duration::from_millis(100));
            append(&path, b"DY\n");
        });
        let line = wait_soon(&log, "^VMAN-GUEST-READY$", None);
        writer.join().unwrap();
        assert_eq!(line.as_deref(), Some("VMAN-GUEST-READY"));
    }

    #[test]
    fn wait_for_line_survives_a_rotation_mid_wait() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1000);
        let mut qemu = OpenOptions::new().create(true).append(true).open(log.path()).unwrap();
        qemu.write_all(&[b'.'; 900]).unwrap();
        qemu.write_all(b"\nVMAN-").unwrap();
        let rotator = log.clone();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            qemu.write_all(&[b'x'; 200]).unwrap();
            qemu.write_all(b"\nVMAN-").unwrap(); // partial line carried over the rotation
            thread::sleep(Duration::from_millis(100));
            assert!(rotator.enforce_cap().unwrap());
            thread::sleep(Duration::from_millis(100));
            qemu.write_all(b"READY\n").unwrap(); // lands at offset 0, below the old read offset
        });
        let line = wait_soon(&log, "READY", None);
        writer.join().unwrap();
        assert_eq!(line.as_deref(), Some("VMAN-READY"));
        assert_eq!(log.len(), 6);
    }

    #[test]
    fn wait_for_line_finds_a_line_in_a_log_created_after_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        let path = log.path().to_path_buf();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            append(&path, b"hello\n");
            thread::sleep(Duration::from_millis(50));
            append(&path, b"VMAN-GUEST-READY\n");
        });
        // An offset measured before the log existed does not skip its start.
        let line = wait_soon(&log, "GUEST-READY", Some(1 << 30));
        writer.join().unwrap();
        assert_eq!(line.as_deref(), Some("VMAN-GUEST-READY"));
    }

    #[test]
    fn wait_for_line_follows_a_log_replaced_by_a_new_boot() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1 << 20);
        append(log.path(), b"old boot\n");
        let from = log.len();
        let restarter = log.clone();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            restarter.prepare_for_start().unwrap();
            thread::sleep(Duration::from_millis(50));
            append(restarter.path(), b"new boot READY\n");
        });
        let line = wait_soon(&log, "READY", Some(from));
        writer.join().unwrap();
        assert_eq!(line.as_deref(), Some("new boot READY"));
    }

    #[test]
    fn long_lines_are_matched_in_pieces_of_the_line_cap() {
        let mut partial = Vec::new();
        let mut data = vec![b'a'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"MARK");
        // Not complete yet: the first 64 KiB piece has no MARK.
        assert_eq!(feed_lines(&mut partial, &data, &re("MARK")), None);
        assert_eq!(partial.len(), 14);
        assert_eq!(feed_lines(&mut partial, b"\n", &re("MARK")).as_deref(), Some("aaaaaaaaaaMARK"));
        assert!(partial.is_empty());
        // A long line's head is matchable on its own.
        let mut head = b"HEAD".to_vec();
        head.resize(MAX_LINE_BYTES * 3, b'z');
        let found = feed_lines(&mut partial, &head, &re("^HEAD")).unwrap();
        assert_eq!(found.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn cap_watch_rotates_a_log_written_past_its_cap_by_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let cap: u64 = 32 * 1024;
        // No quiet interval: every write is seen, so the log stays near its cap.
        let mut watch = CapWatch::with_interval(Duration::ZERO).unwrap();
        let id = watch.add(dir.path(), cap).unwrap();
        let log = SerialLog::new(dir.path(), cap);
        let path = log.path().to_path_buf();
        let total: usize = 512 * 1024;
        let high = 8 * cap;
        let writer = thread::spawn(move || {
            // Created after `add`: the directory watch picks it up.
            let mut f = OpenOptions::new().create(true).append(true).open(&path).unwrap();
            for i in 0..total / 1024 {
                f.write_all(&[b'a' + (i % 26) as u8; 1024]).unwrap();
                // Far past the cap: the watcher must cut the log while it is
                // being written. How soon depends on scheduling (two cores
                // shared with the whole suite), so the writer waits for the
                // cut, generously, instead of the test bounding a time.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while f.metadata().unwrap().len() > high {
                    assert!(std::time::Instant::now() < deadline, "the log was not cut while it was written");
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut rotated = 0;
        while !writer.is_finished() {
            let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(100u16)).unwrap();
            rotated += watch.on_readable().len();
        }
        writer.join().unwrap();
        rotated += watch.on_readable().len();
        // Each rotation leaves half a cap, so writing `total` bytes without
        // ever passing `high` takes at least total / high of them.
        assert!(rotated as u64 >= total as u64 / high, "only {rotated} rotations for {total} bytes at cap {cap}");
        assert!(log.len() <= cap);
        assert!(fs::metadata(log.rotated_path()).unwrap().len() <= high + 1024);
        // The newest bytes are kept. (Bytes a writer appends in the instant
        // between a rotation's last copy and its truncation are lost: the
        // price of rotating a file another process appends to. So the check
        // writes its last chunk with no rotation running.)
        append(log.path(), &[b'Z'; 1024]);
        watch.on_readable();
        let tail = log.tail(1024).unwrap();
        assert_eq!(tail, vec![b'Z'; 1024]);
        assert!(watch.remove(id));
        assert!(!watch.remove(id));
    }

    #[test]
    fn cap_watch_follows_a_log_replaced_by_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1000);
        append(log.path(), b"old\n");
        let mut watch = CapWatch::new().unwrap();
        watch.add(dir.path(), 1000).unwrap();
        assert!(watch.add(dir.path(), 1000).unwrap_err().kind() == io::ErrorKind::AlreadyExists);
        log.prepare_for_start().unwrap();
        watch.on_readable();
        append(log.path(), &[b'n'; 1500]); // the new boot's log, a new inode
        let rotated = watch.on_readable();
        assert_eq!(rotated, vec![log.path().to_path_buf()]);
        assert_eq!(fs::read(log.rotated_path()).unwrap(), vec![b'n'; 500]);
    }

    #[test]
    fn cap_watch_rotates_an_oversized_log_when_added() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 100);
        append(log.path(), &[b'x'; 500]);
        let mut watch = CapWatch::new().unwrap();
        watch.add(dir.path(), 100).unwrap();
        assert_eq!(log.len(), 0);
        assert!(watch.add(&dir.path().join("missing"), 1).unwrap_err().kind() == io::ErrorKind::NotFound);
    }

    /// Poll `watch` like the runtime's watcher thread would, for `dur`.
    /// Returns (wakeups, rotations).
    fn run_watch(watch: &mut CapWatch, dur: Duration) -> (usize, usize) {
        let (mut wakeups, mut rotations) = (0, 0);
        let end = Instant::now() + dur;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
            if poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0 {
                wakeups += 1;
                rotations += watch.on_readable().len();
            }
        }
        (wakeups, rotations)
    }

    #[test]
    fn cap_watch_wakes_about_twice_per_interval_for_a_log_written_byte_by_byte() {
        let dir = tempfile::tempdir().unwrap();
        let cap: u64 = 16 * 1024;
        let interval = Duration::from_millis(50);
        let mut watch = CapWatch::with_interval(interval).unwrap();
        watch.add(dir.path(), cap).unwrap();
        let log = SerialLog::new(dir.path(), cap);
        let path = log.path().to_path_buf();
        // Like QEMU: one byte per write(2).
        let writer = thread::spawn(move || {
            let mut f = OpenOptions::new().create(true).append(true).open(&path).unwrap();
            let end = Instant::now() + Duration::from_millis(600);
            let mut writes = 0u64;
            while Instant::now() < end {
                for _ in 0..64 {
                    f.write_all(b"x").unwrap();
                }
                writes += 64;
                thread::sleep(Duration::from_micros(50));
            }
            writes
        });
        let (wakeups, rotations) = run_watch(&mut watch, Duration::from_millis(800));
        let writes = writer.join().unwrap();
        assert!(writes > 20_000, "writer too slow for the test: {writes} writes");
        assert!(rotations >= 1, "no rotation of {writes} bytes at cap {cap}");
        // 800 ms / 50 ms = 16 intervals, ~2 wakeups each; unthrottled this
        // would be close to one wakeup per write.
        assert!(wakeups <= 50, "{wakeups} wakeups for {writes} writes");
        assert!(log.len() <= cap, "{} bytes left over cap", log.len());
    }

    #[test]
    fn cap_watch_checks_a_log_written_during_its_quiet_interval_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = SerialLog::new(dir.path(), 1000);
        append(log.path(), b"first\n");
        let mut watch = CapWatch::with_interval(Duration::from_millis(50)).unwrap();
        watch.add(dir.path(), 1000).unwrap();
        append(log.path(), b"second\n");
        assert_eq!(run_watch(&mut watch, Duration::from_millis(20)), (1, 0)); // seen; now quiet
        append(log.path(), &[b'q'; 2000]); // unwatched while quiet
        let started = Instant::now();
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(1000u16)).unwrap(), 1);
        assert_eq!(watch.on_readable(), vec![log.path().to_path_buf()]);
        assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
        // Re-armed: the next write past the cap is seen as it happens.
        append(log.path(), &[b'r'; 2000]);
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(1000u16)).unwrap(), 1);
        assert_eq!(watch.on_readable(), vec![log.path().to_path_buf()]);
        // Idle: after the last quiet interval the descriptor stays quiet.
        // (One wakeup for the event of our own truncation, one for the end
        // of the quiet interval.)
        let (wakeups, _) = run_watch(&mut watch, Duration::from_millis(100));
        assert!(wakeups <= 2, "{wakeups}");
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(200u16)).unwrap(), 0);
    }
}
