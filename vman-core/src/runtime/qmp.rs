//! A small, strict, synchronous QMP client.
//!
//! One [`QmpClient`] talks to one QEMU over its QMP Unix socket. It is built
//! for a library that must never hang or panic because of what QEMU (or
//! something pretending to be QEMU) writes:
//!
//! - every command carries a fresh numeric `id` and only the reply with that
//!   `id` answers it, so a late reply to an earlier, timed-out command cannot
//!   be mistaken for the current one;
//! - events are kept as JSON values, so events this code has never heard of
//!   (QEMU adds some in most releases) are queued like any other;
//! - each call has one deadline, re-armed before every `read(2)` with the
//!   time that is left, so a stream of events cannot stretch a call;
//! - lines are read into a growable buffer (`query-qmp-schema` answers with
//!   212 kB on one line on QEMU 10.0.2), capped at [`MAX_LINE_BYTES`].
//!
//! Methods take `&mut self`: QEMU serves one QMP client per socket, so an
//! owner shared between threads keeps the client behind a mutex.

// A complete client: the runtime uses part of it today (events and resets
// come with later features), and tests drive the rest.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest line accepted from QEMU. `query-qmp-schema` is 212 kB on
/// QEMU 10.0.2; this leaves ample headroom while still bounding what a
/// misbehaving peer can make us allocate.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How many unread events are kept. Past this the oldest is dropped (with a
/// warning) so an owner that never drains events cannot grow memory forever.
const MAX_QUEUED_EVENTS: usize = 4096;

/// How much of an offending line goes into a [`QmpError::Protocol`] message.
const EXCERPT_BYTES: usize = 120;

/// What can go wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected to.
    #[error("Failed to connect to the QMP socket")]
    Connect(#[source] io::Error),
    /// Reading from or writing to the socket failed.
    #[error("QMP socket I/O failed")]
    Io(#[source] io::Error),
    /// QEMU did not answer within the timeout.
    #[error("Timed out waiting for QEMU on QMP")]
    Timeout,
    /// The connection is closed (QEMU closed it, or an earlier write failed
    /// part-way and the client closed it to keep the stream framed).
    #[error("QMP connection is closed")]
    Closed,
    /// QEMU sent something that is not valid QMP; the text includes a short
    /// excerpt of the offending line.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU ran the command and reported an error.
    #[error("QEMU rejected the command ({class}): {desc}")]
    Command {
        /// QEMU's error class, e.g. `GenericError` or `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },
}

/// An asynchronous QMP event, kept as JSON so unknown events are harmless.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name, e.g. `SHUTDOWN`, `STOP`, `RESUME`.
    pub name: String,
    /// The event's `data` member, or `Value::Null` if QEMU sent none.
    pub data: Value,
    /// QEMU's wall-clock timestamp in microseconds since the Unix epoch, if
    /// the event carried a well-formed one.
    pub timestamp_us: Option<i64>,
}

/// The answer to `query-status`.
// No `deny_unknown_fields`: this is QEMU's output, not our input, and newer
// QEMUs add members (older ones also sent `singlestep`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QmpStatus {
    /// QEMU's run state, e.g. `prelaunch`, `running`, `paused`, `shutdown`.
    pub status: String,
    /// Whether the guest's vCPUs are running.
    pub running: bool,
}

/// The QEMU version announced in the QMP greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuVersion {
    /// Major version, e.g. 10 for 10.0.2.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro (patch) version.
    pub micro: u32,
    /// The distributor's package string, e.g. `Debian 1:10.0.2+ds-2`; may be empty.
    pub package: String,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// A QMP connection whose handshake and `query-status` were sent and not
/// yet answered (see [`QmpClient::query_status_pipelined`]).
#[derive(Debug)]
pub struct PendingStatus {
    client: QmpClient,
    capabilities: u64,
    query: u64,
}

impl PendingStatus {
    /// Reads the greeting and both replies within `timeout`.
    pub fn finish(self, timeout: Duration) -> Result<(QmpClient, QmpStatus), QmpError> {
        let deadline = deadline_after(timeout);
        let PendingStatus { mut client, capabilities, query } = self;
        client.version = client.read_greeting(deadline)?;
        client.wait_reply(capabilities, deadline)?;
        let status = client.wait_reply(query, deadline).and_then(parse_status)?;
        Ok((client, status))
    }
}

impl AsFd for PendingStatus {
    /// Readable once QEMU's greeting (or the connection's end) is there.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.client.reader.get_ref().as_fd()
    }
}

/// A synchronous QMP connection to one QEMU.
#[derive(Debug)]
pub struct QmpClient {
    /// Reads go through the buffer; writes go straight to `reader.get_ref()`.
    reader: BufReader<UnixStream>,
    /// The deadline of each command and of the handshake.
    timeout: Duration,
    next_id: u64,
    version: QemuVersion,
    events: VecDeque<QmpEvent>,
    /// The start of a line whose end has not arrived yet. It survives a
    /// timeout so the next call resumes mid-line instead of losing framing.
    partial: Vec<u8>,
    /// Set after an over-long line: the rest of it, up to its newline, is
    /// discarded so the following line parses.
    skipping: bool,
    /// Set once the connection is known dead (EOF, reset, or a failed write
    /// that may have torn a frame), so later calls fail fast with `Closed`.
    closed: bool,
}

impl QmpClient {
    /// Connects to the QMP socket at `path` and completes the handshake
    /// (greeting, then `qmp_capabilities`), all within `timeout`.
    ///
    /// `timeout` also becomes the deadline of every later command; it must be
    /// non-zero. QEMU serves one QMP client at a time: while another is
    /// attached this returns [`QmpError::Timeout`] (no greeting comes).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = deadline_after(timeout);
        let stream = connect_bounded(path, timeout)?;
        Self::handshake(stream, timeout, deadline)
    }

    /// Completes the QMP handshake on an already connected stream within
    /// `timeout` (for tests with a fake server).
    #[cfg(test)]
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        Self::handshake(stream, timeout, deadline_after(timeout))
    }

    /// Writes `qmp_capabilities` and `query-status` on a just-connected
    /// stream at once, before QEMU's greeting is read (or even sent): QEMU
    /// finds them queued behind its greeting and answers in order, so a
    /// launch waits for QEMU's main loop once instead of three times (while
    /// a busy vCPU thread competes with that loop). Poll the returned
    /// query's descriptor for the greeting, then [`PendingStatus::finish`].
    pub fn query_status_pipelined(stream: UnixStream, timeout: Duration) -> Result<PendingStatus, QmpError> {
        let mut client = Self::unnegotiated(stream, timeout)?;
        let capabilities = client.send("qmp_capabilities", None, None)?;
        let query = client.send("query-status", None, None)?;
        Ok(PendingStatus { client, capabilities, query })
    }

    fn handshake(stream: UnixStream, timeout: Duration, deadline: Option<Instant>) -> Result<Self, QmpError> {
        let mut client = Self::unnegotiated(stream, timeout)?;
        // Written before the greeting is read: QEMU finds it queued when it
        // greets, which saves a wait for its main loop on every connection.
        let capabilities = client.send("qmp_capabilities", None, None)?;
        client.version = client.read_greeting(deadline)?;
        client.wait_reply(capabilities, deadline)?;
        Ok(client)
    }

    /// A client on `stream` whose greeting is still unread.
    fn unnegotiated(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        // A zero timeout is rejected here by std (InvalidInput).
        stream.set_write_timeout(Some(timeout)).map_err(QmpError::Io)?;
        stream.set_read_timeout(Some(timeout)).map_err(QmpError::Io)?;
        Ok(QmpClient {
            reader: BufReader::new(stream),
            timeout,
            next_id: 1,
            version: QemuVersion { major: 0, minor: 0, micro: 0, package: String::new() },
            events: VecDeque::new(),
            partial: Vec::new(),
            skipping: false,
            closed: false,
        })
    }

    /// The QEMU version from the greeting.
    pub fn qemu_version(&self) -> &QemuVersion {
        &self.version
    }

    /// The deadline applied to each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the deadline applied to each later command; must be non-zero.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), QmpError> {
        self.reader.get_ref().set_write_timeout(Some(timeout)).map_err(QmpError::Io)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Runs `command` with optional `arguments` (a JSON object) and returns
    /// its `return` value.
    ///
    /// Events that arrive before the reply are queued for
    /// [`take_events`](Self::take_events); replies to other ids (left over
    /// from an earlier timed-out command) are discarded with a warning.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let deadline = deadline_after(self.timeout);
        self.execute_until(command, arguments.as_ref(), deadline)
    }

    /// `query-status`: QEMU's run state.
    pub fn query_status(&mut self) -> Result<QmpStatus, QmpError> {
        self.execute("query-status", None).and_then(parse_status)
    }

    /// `stop`: pauses the vCPUs (QEMU emits `STOP`).
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).map(drop)
    }

    /// `cont`: starts or resumes the vCPUs (QEMU emits `RESUME`).
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }

    /// `system_powerdown`: presses the ACPI power button. Returns as soon as
    /// QEMU has done so; whether and when the guest powers off is up to it.
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// `system_reset`: resets the machine (QEMU emits `RESET`).
    pub fn system_reset(&mut self) -> Result<(), QmpError> {
        self.execute("system_reset", None).map(drop)
    }

    /// Removes and returns all queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// Waits up to `timeout` for the event called `name` and returns it, or
    /// `None` if it did not come in time.
    ///
    /// An already queued event of that name is returned at once (QEMU often
    /// sends e.g. `STOP` before the reply to `stop`). Other events are queued;
    /// stray replies are discarded with a warning.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Option<QmpEvent>, QmpError> {
        if let Some(pos) = self.events.iter().position(|e| e.name == name) {
            return Ok(self.events.remove(pos));
        }
        let deadline = deadline_after(timeout);
        loop {
            match self.read_message(deadline) {
                Ok(Message::Event(event)) if event.name == name => return Ok(Some(event)),
                Ok(Message::Event(event)) => self.queue_event(event),
                Ok(Message::Reply { id, .. }) => {
                    log::warn!("Discarding QMP reply with id {} while waiting for event {name}", show_id(&id));
                }
                Ok(Message::Greeting) => {
                    return Err(QmpError::Protocol("unexpected greeting mid-session".into()));
                }
                Err(QmpError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn read_greeting(&mut self, deadline: Option<Instant>) -> Result<QemuVersion, QmpError> {
        #[derive(Deserialize)]
        struct Greeting {
            #[serde(rename = "QMP")]
            qmp: GreetingBody,
        }
        #[derive(Deserialize)]
        struct GreetingBody {
            version: VersionInfo,
        }
        #[derive(Deserialize)]
        struct VersionInfo {
            qemu: Triple,
            #[serde(default)]
            package: String,
        }
        #[derive(Deserialize)]
        struct Triple {
            major: u32,
            minor: u32,
            micro: u32,
        }

        let line = loop {
            let line = self.read_line(deadline)?;
            if !line.trim_ascii().is_empty() {
                break line;
            }
        };
        let greeting: Greeting =
            serde_json::from_slice(&line).map_err(|e| QmpError::Protocol(format!("expected a QMP greeting ({e}): {}", excerpt(&line))))?;
        let VersionInfo { qemu, package } = greeting.qmp.version;
        let version = QemuVersion { major: qemu.major, minor: qemu.minor, micro: qemu.micro, package };
        log::debug!("QMP greeting from QEMU {version}");
        Ok(version)
    }

    fn execute_until(&mut self, command: &str, arguments: Option<&Value>, deadline: Option<Instant>) -> Result<Value, QmpError> {
        let id = self.send(command, arguments, None)?;
        self.wait_reply(id, deadline)
    }

    /// Runs `command` with a file descriptor passed along (SCM_RIGHTS), as
    /// `add-fd` and `getfd` take one: QEMU gets the open file itself, so it
    /// needs no access to the file's path.
    pub fn execute_with_fd(&mut self, command: &str, arguments: Option<Value>, fd: std::os::fd::BorrowedFd<'_>) -> Result<Value, QmpError> {
        let deadline = deadline_after(self.timeout);
        let id = self.send(command, arguments.as_ref(), Some(fd))?;
        self.wait_reply(id, deadline)
    }

    /// Writes one command line and returns the id it carries.
    fn send(&mut self, command: &str, arguments: Option<&Value>, fd: Option<std::os::fd::BorrowedFd<'_>>) -> Result<u64, QmpError> {
        #[derive(Serialize)]
        struct Request<'a> {
            execute: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            arguments: Option<&'a Value>,
            id: u64,
        }

        if self.closed {
            return Err(QmpError::Closed);
        }
        let id = self.next_id;
        // Wrapping, not `+=`, so even 2^64 commands cannot panic in debug builds.
        self.next_id = self.next_id.wrapping_add(1);
        let mut frame = serde_json::to_vec(&Request { execute: command, arguments, id })
            .map_err(|e| QmpError::Protocol(format!("cannot encode command {command}: {e}")))?;
        frame.push(b'\n');
        log::debug!("QMP -> {command} (id {id})");
        // One write_all of the whole frame: QEMU sees either all of it or,
        // on failure, a torn prefix, after which the stream cannot be trusted.
        // A descriptor rides on the frame's first byte(s).
        let written = match fd {
            None => self.reader.get_ref().write_all(&frame),
            Some(fd) => send_with_fd(self.reader.get_ref(), &frame, fd),
        };
        if let Err(e) = written {
            self.closed = true;
            // Best effort: the peer may already be gone.
            let _ = self.reader.get_ref().shutdown(Shutdown::Both);
            return Err(match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => QmpError::Closed,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => QmpError::Timeout,
                _ => QmpError::Io(e),
            });
        }
        Ok(id)
    }

    fn wait_reply(&mut self, id: u64, deadline: Option<Instant>) -> Result<Value, QmpError> {
        loop {
            match self.read_message(deadline)? {
                Message::Event(event) => self.queue_event(event),
                Message::Reply { id: got, result } if got.as_ref().and_then(Value::as_u64) == Some(id) => {
                    return result;
                }
                Message::Reply { id: got, .. } => {
                    log::warn!("Discarding QMP reply with id {} while waiting for id {id}", show_id(&got));
                }
                Message::Greeting => {
                    return Err(QmpError::Protocol("unexpected greeting mid-session".into()));
                }
            }
        }
    }

    fn queue_event(&mut self, event: QmpEvent) {
        log::debug!("QMP event {}", event.name);
        if self.events.len() >= MAX_QUEUED_EVENTS
            && let Some(old) = self.events.pop_front()
        {
            log::warn!("QMP event queue full; dropping {} event", old.name);
        }
        self.events.push_back(event);
    }

    /// Reads the next non-blank line and parses it.
    fn read_message(&mut self, deadline: Option<Instant>) -> Result<Message, QmpError> {
        loop {
            let line = self.read_line(deadline)?;
            // QEMU ends lines with "\r\n"; a blank line carries nothing.
            if !line.trim_ascii().is_empty() {
                return parse_message(&line);
            }
        }
    }

    /// Reads one whole line (without its `\n`) before `deadline`.
    fn read_line(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, QmpError> {
        if self.closed {
            return Err(QmpError::Closed);
        }
        loop {
            if self.reader.buffer().is_empty() {
                // The socket timeout bounds one read(2); re-arming it with
                // what is left makes it a deadline for the whole call.
                let left = match deadline {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(QmpError::Timeout);
                        }
                        Some(left)
                    }
                    None => None,
                };
                self.reader.get_ref().set_read_timeout(left).map_err(QmpError::Io)?;
            }
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(QmpError::Timeout);
                    }
                    io::ErrorKind::ConnectionReset => {
                        self.closed = true;
                        return Err(QmpError::Closed);
                    }
                    _ => return Err(QmpError::Io(e)),
                },
            };
            if available.is_empty() {
                self.closed = true;
                return Err(QmpError::Closed);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(available.len());
            if !self.skipping {
                self.partial.extend_from_slice(&available[..take]);
            }
            // Consume the newline too, if there was one.
            self.reader.consume(newline.map_or(take, |i| i + 1));
            if newline.is_some() {
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Ok(std::mem::take(&mut self.partial));
            }
            if self.partial.len() > MAX_LINE_BYTES {
                let head = excerpt(&self.partial);
                self.partial = Vec::new();
                self.skipping = true;
                return Err(QmpError::Protocol(format!("line longer than {MAX_LINE_BYTES} bytes: {head}")));
            }
        }
    }
}

/// One parsed line from QEMU.
#[derive(Debug)]
enum Message {
    /// `{"QMP": ...}`; only valid as the first line.
    Greeting,
    Event(QmpEvent),
    /// `{"return": ...}` or `{"error": ...}`, with the `id` as sent back.
    Reply {
        id: Option<Value>,
        result: Result<Value, QmpError>,
    },
}

fn parse_message(line: &[u8]) -> Result<Message, QmpError> {
    let protocol = |what: &str| QmpError::Protocol(format!("{what}: {}", excerpt(line)));
    let value: Value = serde_json::from_slice(line).map_err(|e| protocol(&format!("malformed JSON ({e})")))?;
    let Value::Object(mut object) = value else {
        return Err(protocol("message is not a JSON object"));
    };
    if object.contains_key("QMP") {
        return Ok(Message::Greeting);
    }
    if let Some(name) = object.remove("event") {
        let Value::String(name) = name else {
            return Err(protocol("event name is not a string"));
        };
        let timestamp_us = object.get("timestamp").and_then(timestamp_us);
        let data = object.remove("data").unwrap_or(Value::Null);
        return Ok(Message::Event(QmpEvent { name, data, timestamp_us }));
    }
    let id = object.remove("id");
    if let Some(value) = object.remove("return") {
        return Ok(Message::Reply { id, result: Ok(value) });
    }
    if let Some(error) = object.get("error") {
        let field = |name| error.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(class), Some(desc)) = (field("class"), field("desc")) else {
            return Err(protocol("error reply without class and desc"));
        };
        return Ok(Message::Reply { id, result: Err(QmpError::Command { class, desc }) });
    }
    Err(protocol("unknown message"))
}

/// `UnixStream::connect` within `timeout`.
///
/// A blocking `connect(2)` on a Unix socket waits, with no timeout std lets
/// us set, while the listener's backlog is full: with QEMU that is one
/// attached client plus two queued ones (seen with QEMU 10). std cannot
/// connect non-blocking, so the connect runs on a short-lived thread and we
/// stop waiting for it at the timeout. A thread left behind ends as soon as
/// its connect does (when a backlog slot frees or QEMU exits); the stream it
/// may then get is dropped, which closes it.
fn connect_bounded(path: &Path, timeout: Duration) -> Result<UnixStream, QmpError> {
    if timeout.is_zero() {
        return Err(QmpError::Connect(io::Error::new(io::ErrorKind::InvalidInput, "QMP timeout must be non-zero")));
    }
    // Capacity 1 so the thread's send never blocks, even after we gave up.
    let (tx, rx) = mpsc::sync_channel(1);
    let path = path.to_owned();
    thread::Builder::new()
        .name("qmp-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(path));
        })
        .map_err(QmpError::Connect)?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(QmpError::Connect),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(QmpError::Timeout),
        // Only if the thread died without sending, i.e. panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(QmpError::Connect(io::Error::other("connect thread ended without a result"))),
    }
}

fn parse_status(value: Value) -> Result<QmpStatus, QmpError> {
    serde_json::from_value(value.clone())
        .map_err(|e| QmpError::Protocol(format!("unexpected query-status reply ({e}): {}", excerpt(value.to_string().as_bytes()))))
}

/// `{"seconds": s, "microseconds": us}` as microseconds since the epoch.
fn timestamp_us(timestamp: &Value) -> Option<i64> {
    let seconds = timestamp.get("seconds")?.as_i64()?;
    let micros = timestamp.get("microseconds")?.as_i64()?;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

/// `None` means "no deadline": only for timeouts so large that `Instant`
/// cannot represent them (adding would panic).
/// Writes `frame` with `fd` attached to its first bytes (SCM_RIGHTS); the
/// rest, if the kernel took only part, follows as plain writes.
fn send_with_fd(stream: &UnixStream, frame: &[u8], fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let sent =
        sendmsg::<()>(stream.as_raw_fd(), &[io::IoSlice::new(frame)], &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
            .map_err(io::Error::from)?;
    io::Write::write_all(&mut &*stream, &frame[sent..])
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn show_id(id: &Option<Value>) -> String {
    id.as_ref().map_or_else(|| "(none)".to_owned(), Value::to_string)
}

/// The start of `bytes` as text, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(head).trim_end().to_owned();
    if bytes.len() > EXCERPT_BYTES {
        text.push('…');
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use serde_json::json;
    use std::thread::{self, JoinHandle};

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2"}, "capabilities": ["oob"]}}"#;
    const SHORT: Duration = Duration::from_millis(200);

    /// The server half of a socket pair, speaking QMP like QEMU does.
    struct FakeQemu {
        reader: BufReader<UnixStream>,
    }

    impl FakeQemu {
        fn send(&mut self, line: &str) {
            // Ignore errors: some tests close the client early on purpose.
            let _ = self.reader.get_mut().write_all(format!("{line}\r\n").as_bytes());
        }

        fn send_raw(&mut self, bytes: &[u8]) {
            let _ = self.reader.get_mut().write_all(bytes);
        }

        /// Reads one command and returns (execute, id).
        fn recv(&mut self) -> (String, Value) {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            (v["execute"].as_str().unwrap().to_owned(), v["id"].clone())
        }

        fn reply(&mut self, id: &Value, ret: Value) {
            self.send(&json!({"return": ret, "id": id}).to_string());
        }

        fn handshake(&mut self) {
            self.send(GREETING);
            let (cmd, id) = self.recv();
            assert_eq!(cmd, "qmp_capabilities");
            self.reply(&id, json!({}));
        }
    }

    /// Starts `script` as the server and connects a client to it.
    fn start(timeout: Duration, script: impl FnOnce(&mut FakeQemu) + Send + 'static) -> (Result<QmpClient, QmpError>, JoinHandle<()>) {
        let (client, server) = UnixStream::pair().unwrap();
        let handle = thread::spawn(move || script(&mut FakeQemu { reader: BufReader::new(server) }));
        (QmpClient::from_stream(client, timeout), handle)
    }

    #[test]
    fn connect_by_path_completes_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            FakeQemu { reader: BufReader::new(stream) }.handshake();
        });
        let client = QmpClient::connect(&path, SHORT).unwrap();
        assert_eq!(client.qemu_version().major, 10);
        server.join().unwrap();
    }

    #[test]
    fn a_pipelined_query_is_sent_before_the_greeting_and_answered_in_order() {
        let (client, server) = UnixStream::pair().unwrap();
        let pending = QmpClient::query_status_pipelined(client, SHORT).unwrap();
        let server = thread::spawn(move || {
            let mut qemu = FakeQemu { reader: BufReader::new(server) };
            // Both commands are already queued when QEMU greets.
            let (first, first_id) = qemu.recv();
            let (second, second_id) = qemu.recv();
            assert_eq!((first.as_str(), second.as_str()), ("qmp_capabilities", "query-status"));
            qemu.send(GREETING);
            qemu.reply(&first_id, json!({}));
            qemu.send(r#"{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}"#);
            qemu.reply(&second_id, json!({"status": "running", "running": true}));
        });
        let (mut client, status) = pending.finish(SHORT).unwrap();
        assert!(status.running);
        assert_eq!(client.qemu_version().major, 10);
        assert_eq!(client.take_events().len(), 1, "an event between the replies is kept");
        server.join().unwrap();
    }

    #[test]
    fn a_pipelined_query_refused_in_negotiation_is_an_error() {
        let (client, server) = UnixStream::pair().unwrap();
        let pending = QmpClient::query_status_pipelined(client, SHORT).unwrap();
        let server = thread::spawn(move || {
            let mut qemu = FakeQemu { reader: BufReader::new(server) };
            let (_, first_id) = qemu.recv();
            qemu.send(GREETING);
            qemu.send(&json!({"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": first_id}).to_string());
        });
        assert!(pending.finish(SHORT).is_err());
        server.join().unwrap();
    }

    #[test]
    fn connect_to_a_missing_socket_is_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = QmpClient::connect(&dir.path().join("absent.sock"), SHORT).unwrap_err();
        match err {
            QmpError::Connect(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    #[test]
    fn connect_to_a_full_backlog_times_out_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        // Never accepts, so every connect takes a backlog slot until none is left.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut queued = Vec::new();
        let timed_out = loop {
            assert!(queued.len() < 100_000, "backlog never filled");
            match connect_bounded(&path, Duration::from_millis(100)) {
                Ok(stream) => queued.push(stream),
                Err(QmpError::Timeout) => break true,
                Err(other) => panic!("unexpected {other:?}"),
            }
        };
        assert!(timed_out);
        // Freeing the backlog lets the abandoned connect finish; that must not panic.
        drop(queued);
        drop(_listener);
    }

    #[test]
    fn handshake_records_version_and_negotiates_capabilities() {
        let (client, server) = start(SHORT, |q| {
            q.send(GREETING);
            let (cmd, id) = q.recv();
            assert_eq!(cmd, "qmp_capabilities");
            assert!(id.is_u64(), "every command carries a numeric id");
            q.reply(&id, json!({}));
        });
        let client = client.unwrap();
        assert_eq!(client.qemu_version(), &QemuVersion { major: 10, minor: 0, micro: 2, package: "Debian 1:10.0.2+ds-2".into() });
        assert_eq!(client.qemu_version().to_string(), "10.0.2");
        server.join().unwrap();
    }

    #[test]
    fn unknown_event_and_stale_reply_before_the_reply_do_not_desync() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let (cmd, id) = q.recv();
            assert_eq!(cmd, "query-status");
            q.send(r#"{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "NETDEV_VHOST_USER_CONNECTED", "data": {"netdev-id": "n0", "chardev-id": "c0"}}"#);
            q.send(r#"{"return": {"status": "stale"}, "id": 999}"#);
            q.send(r#"{"return": {"status": "stale"}}"#);
            q.reply(&id, json!({"status": "running", "singlestep": false, "running": true}));
            let (cmd, id) = q.recv();
            assert_eq!(cmd, "query-version");
            q.reply(&id, json!({"qemu": {"major": 10}}));
        });
        let mut client = client.unwrap();
        let status = client.query_status().unwrap();
        assert_eq!(status, QmpStatus { status: "running".into(), running: true });
        let events = client.take_events();
        assert_eq!(
            events,
            vec![QmpEvent {
                name: "NETDEV_VHOST_USER_CONNECTED".into(),
                data: json!({"netdev-id": "n0", "chardev-id": "c0"}),
                timestamp_us: Some(1_700_000_000_123_456),
            }]
        );
        assert!(client.take_events().is_empty(), "take_events drains");
        // The next command gets its own reply, not a leftover.
        let version = client.execute("query-version", None).unwrap();
        assert_eq!(version["qemu"]["major"], 10);
        server.join().unwrap();
    }

    #[test]
    fn ids_are_fresh_and_arguments_are_sent() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let mut ids = Vec::new();
            for _ in 0..3 {
                let mut line = String::new();
                q.reader.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["arguments"], json!({"device": "virtio0"}));
                ids.push(v["id"].as_u64().unwrap());
                q.reply(&v["id"], json!({}));
            }
            ids.dedup();
            assert_eq!(ids.len(), 3, "ids never repeat");
        });
        let mut client = client.unwrap();
        for _ in 0..3 {
            client.execute("eject", Some(json!({"device": "virtio0"}))).unwrap();
        }
        server.join().unwrap();
    }

    #[test]
    fn error_reply_maps_to_command_error() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let (_, id) = q.recv();
            q.send(&json!({"id": id, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}).to_string());
        });
        let err = client.unwrap().execute("nope", None).unwrap_err();
        match &err {
            QmpError::Command { class, desc } => {
                assert_eq!(class, "CommandNotFound");
                assert_eq!(desc, "The command nope has not been found");
            }
            other => panic!("expected Command, got {other:?}"),
        }
        assert_eq!(err.to_string(), "QEMU rejected the command (CommandNotFound): The command nope has not been found");
        server.join().unwrap();
    }

    #[test]
    fn eof_mid_command_is_closed_and_stays_closed() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            q.recv();
            // Drop the socket without replying.
        });
        let mut client = client.unwrap();
        assert!(matches!(client.query_status(), Err(QmpError::Closed)));
        server.join().unwrap();
        // No write is attempted on a dead connection.
        assert!(matches!(client.stop(), Err(QmpError::Closed)));
    }

    #[test]
    fn eof_during_greeting_is_closed() {
        let (client, server) = start(SHORT, |q| q.send_raw(b"{\"QMP\": {\"vers"));
        assert!(matches!(client, Err(QmpError::Closed)));
        server.join().unwrap();
    }

    #[test]
    fn malformed_line_is_protocol_error_and_the_stream_recovers() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let (_, id) = q.recv();
            q.send("{\"return\": {}, \"id\": oops");
            q.reply(&id, json!({})); // arrives after the caller gave up on it
            let (_, id) = q.recv();
            q.reply(&id, json!({"status": "paused", "running": false}));
        });
        let mut client = client.unwrap();
        match client.stop() {
            Err(QmpError::Protocol(text)) => assert!(text.contains("oops"), "excerpt in {text:?}"),
            other => panic!("expected Protocol, got {other:?}"),
        }
        // The late reply to `stop` is discarded by id; query-status gets its own.
        assert_eq!(client.query_status().unwrap().status, "paused");
        server.join().unwrap();
    }

    #[test]
    fn unexpected_greeting_is_protocol_error() {
        let (client, server) = start(SHORT, |q| q.send(r#"{"return": {}}"#));
        match client {
            Err(QmpError::Protocol(text)) => {
                assert!(text.contains("greeting") && text.contains("return"))
            }
            other => panic!("expected Protocol, got {other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn bad_query_status_reply_is_protocol_error() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let (_, id) = q.recv();
            q.reply(&id, json!({"status": 7}));
        });
        assert!(matches!(client.unwrap().query_status(), Err(QmpError::Protocol(_))));
        server.join().unwrap();
    }

    #[test]
    fn silent_server_times_out() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (client, server) = start(SHORT, move |q| {
            q.handshake();
            q.recv();
            let _ = done_rx.recv(); // stay connected and silent
        });
        let mut client = client.unwrap();
        let start = Instant::now();
        assert!(matches!(client.query_status(), Err(QmpError::Timeout)));
        let took = start.elapsed();
        assert!(took >= SHORT && took < SHORT * 5, "took {took:?}");
        drop(done_tx);
        server.join().unwrap();
    }

    #[test]
    fn silent_greeting_times_out() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (client, server) = start(SHORT, move |_| {
            let _ = done_rx.recv();
        });
        assert!(matches!(client, Err(QmpError::Timeout)));
        drop(done_tx);
        server.join().unwrap();
    }

    #[test]
    fn a_stream_of_events_cannot_extend_the_deadline() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            q.recv();
            // Chatter until the client goes away; never reply.
            for _ in 0..200 {
                q.send(r#"{"event": "RTC_CHANGE", "data": {"offset": 1}}"#);
                thread::sleep(Duration::from_millis(10));
            }
        });
        let mut client = client.unwrap();
        let start = Instant::now();
        assert!(matches!(client.query_status(), Err(QmpError::Timeout)));
        let took = start.elapsed();
        // Unbounded, it would last the server's 2 s of chatter.
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert!(!client.take_events().is_empty(), "events were queued meanwhile");
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn a_late_event_does_not_restart_the_clock() {
        let timeout = Duration::from_millis(300);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (client, server) = start(timeout, move |q| {
            q.handshake();
            q.recv();
            thread::sleep(Duration::from_millis(250));
            q.send(r#"{"event": "RTC_CHANGE", "data": {"offset": 1}}"#);
            let _ = done_rx.recv();
        });
        let mut client = client.unwrap();
        let start = Instant::now();
        assert!(matches!(client.query_status(), Err(QmpError::Timeout)));
        // A per-read timeout would end at 250 + 300 ms.
        let took = start.elapsed();
        assert!(took >= timeout && took < Duration::from_millis(500), "took {took:?}");
        drop(done_tx);
        server.join().unwrap();
    }

    #[test]
    fn wait_event_queues_others_and_returns_the_named_one() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            q.send(r#"{"event": "RESET", "data": {"guest": false}}"#);
            q.send(r#"{"event": "STOP"}"#);
        });
        let mut client = client.unwrap();
        let stop = client.wait_event("STOP", SHORT).unwrap().unwrap();
        assert_eq!(stop, QmpEvent { name: "STOP".into(), data: Value::Null, timestamp_us: None });
        let queued = client.take_events();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].name, "RESET");
        server.join().unwrap();
    }

    #[test]
    fn wait_event_returns_an_already_queued_event_without_reading() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (client, server) = start(SHORT, move |q| {
            q.handshake();
            let (_, id) = q.recv();
            q.send(r#"{"event": "STOP"}"#);
            q.reply(&id, json!({}));
            let _ = done_rx.recv();
        });
        let mut client = client.unwrap();
        client.stop().unwrap();
        let start = Instant::now();
        assert!(client.wait_event("STOP", Duration::from_secs(5)).unwrap().is_some());
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(done_tx);
        server.join().unwrap();
    }

    #[test]
    fn wait_event_times_out_with_none_and_keeps_a_partial_line() {
        let (step_tx, step_rx) = std::sync::mpsc::channel::<()>();
        let (client, server) = start(SHORT, move |q| {
            q.handshake();
            q.send_raw(br#"{"event": "SHUT"#);
            step_rx.recv().unwrap();
            q.send_raw(b"DOWN\", \"data\": {\"guest\": true}}\r\n");
        });
        let mut client = client.unwrap();
        let start = Instant::now();
        assert_eq!(client.wait_event("SHUTDOWN", Duration::from_millis(100)).unwrap(), None);
        assert!(start.elapsed() >= Duration::from_millis(100));
        step_tx.send(()).unwrap();
        let event = client.wait_event("SHUTDOWN", SHORT).unwrap().unwrap();
        assert_eq!(event.data["guest"], true);
        server.join().unwrap();
    }

    #[test]
    fn a_schema_sized_line_is_read_whole() {
        let (client, server) = start(SHORT, |q| {
            q.handshake();
            let (_, id) = q.recv();
            let schema: Vec<Value> = (0..5000).map(|i| json!({"name": format!("type-{i}"), "meta-type": "object"})).collect();
            let line = json!({"return": schema, "id": id}).to_string();
            assert!(line.len() > 200_000);
            q.send(&line);
        });
        let schema = client.unwrap().execute("query-qmp-schema", None).unwrap();
        assert_eq!(schema.as_array().unwrap().len(), 5000);
        server.join().unwrap();
    }

    #[test]
    fn an_overlong_line_is_protocol_error_and_skipped() {
        let (client, server) = start(Duration::from_secs(10), |q| {
            q.handshake();
            let (_, id) = q.recv();
            let chunk = vec![b'x'; 1024 * 1024];
            for _ in 0..=MAX_LINE_BYTES / chunk.len() + 1 {
                q.send_raw(&chunk);
            }
            q.send_raw(b"\n");
            q.reply(&id, json!({}));
            let (_, id) = q.recv();
            q.reply(&id, json!({"status": "running", "running": true}));
        });
        let mut client = client.unwrap();
        assert!(matches!(client.stop(), Err(QmpError::Protocol(t)) if t.contains("longer than")));
        assert!(client.query_status().unwrap().running);
        server.join().unwrap();
    }

    #[test]
    fn parse_message_classifies_lines() {
        assert!(matches!(parse_message(GREETING.as_bytes()), Ok(Message::Greeting)));
        assert!(matches!(parse_message(br#"{"return": {}, "id": 3}"#), Ok(Message::Reply { id: Some(Value::Number(_)), result: Ok(_) })));
        assert!(matches!(parse_message(br#"{"error": {"class": "X"}}"#), Err(QmpError::Protocol(_))));
        assert!(matches!(parse_message(br#"{"event": 5}"#), Err(QmpError::Protocol(_))));
        assert!(matches!(parse_message(br#"[1, 2]"#), Err(QmpError::Protocol(_))));
        assert!(matches!(parse_message(br#"{"surprise": 1}"#), Err(QmpError::Protocol(_))));
        // An absurd timestamp is dropped, not overflowed.
        let Ok(Message::Event(e)) = parse_message(br#"{"event": "X", "timestamp": {"seconds": 9223372036854775807, "microseconds": 1}}"#)
        else {
            panic!("event expected");
        };
        assert_eq!(e.timestamp_us, None);
    }

    #[test]
    fn excerpt_is_short_and_survives_split_utf8() {
        let long = "é".repeat(200);
        let text = excerpt(long.as_bytes());
        assert!(text.chars().count() <= EXCERPT_BYTES + 1);
        assert!(text.ends_with('…'));
    }

    /// xorshift64*: deterministic, dependency-free randomness for the fuzz tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random line: raw bytes, or a real QMP message with bytes mutated.
    fn random_line(rng: &mut Rng) -> Vec<u8> {
        const SEEDS: &[&str] = &[
            GREETING,
            r#"{"return": {"status": "running", "running": true}, "id": 2}"#,
            r#"{"error": {"class": "GenericError", "desc": "x"}, "id": 2}"#,
            r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#,
            r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
        ];
        let mut line: Vec<u8> = if rng.below(3) == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec()
        };
        for _ in 0..rng.below(6) {
            if line.is_empty() {
                break;
            }
            let i = rng.below(line.len());
            match rng.below(3) {
                0 => line[i] = rng.next() as u8,
                1 => line.truncate(i),
                _ => line.insert(i, b"{}[]\":,\\\n"[rng.below(9)]),
            }
        }
        line
    }

    #[test]
    fn random_lines_never_panic_the_parser() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let _ = parse_message(&random_line(&mut rng));
        }
    }

    #[test]
    fn random_byte_streams_never_panic_the_client() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for round in 0..200 {
            let lines: Vec<Vec<u8>> = (0..rng.below(20)).map(|_| random_line(&mut rng)).collect();
            let greet_properly = round % 2 == 0;
            let (client, server) = start(Duration::from_millis(100), move |q| {
                if greet_properly {
                    q.handshake();
                }
                for mut line in lines {
                    line.push(b'\n');
                    q.send_raw(&line);
                }
                // Then EOF, so the client cannot wait forever.
            });
            if let Ok(mut client) = client {
                for _ in 0..25 {
                    match client.query_status() {
                        Err(QmpError::Closed) => break,
                        _ => continue,
                    }
                }
                let _ = client.wait_event("SHUTDOWN", Duration::from_millis(10));
                let _ = client.take_events();
            }
            server.join().unwrap();
        }
    }

    #[test]
    fn zero_timeout_is_rejected_not_a_panic() {
        let (client, server) = UnixStream::pair().unwrap();
        assert!(matches!(QmpClient::from_stream(client, Duration::ZERO), Err(QmpError::Io(_))));
        drop(server);
    }

    #[test]
    fn error_messages_are_sentence_case_without_trailing_period() {
        let errors = [
            QmpError::Connect(io::Error::from(io::ErrorKind::NotFound)),
            QmpError::Io(io::Error::from(io::ErrorKind::Other)),
            QmpError::Timeout,
            QmpError::Closed,
            QmpError::Protocol("x".into()),
            QmpError::Command { class: "C".into(), desc: "d".into() },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.chars().next().unwrap().is_uppercase(), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            // The source's text is not repeated in the message.
            if let Some(source) = std::error::Error::source(&e) {
                assert!(!text.contains(&source.to_string()), "{text}");
            }
        }
    }
}
