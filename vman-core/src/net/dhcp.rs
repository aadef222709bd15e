//! DHCP on bridged networks: one dnsmasq per bridge that serves exactly the
//! MAC → IP pairs it is given, and nothing else.
//!
//! Each network has a run directory (mode 0700) that holds everything of its
//! server:
//!
//! | file            | written by | what                                         |
//! |-----------------|------------|----------------------------------------------|
//! | `hosts.conf`    | vman       | one `dhcp-host=MAC,IP` line per allocation    |
//! | `dnsmasq.pid`   | dnsmasq    | the daemon's pid                             |
//! | `leases`        | dnsmasq    | its lease database (vman prunes it at start) |
//! | `dnsmasq.log`   | dnsmasq    | its log (kept by [`DhcpServer::stop`])       |
//!
//! dnsmasq daemonizes itself, so it outlives the embedding process like QEMU
//! does. Its `dhcp-range` is `static`: there is no dynamic pool, so a MAC
//! without a `dhcp-host` line gets no offer at all.
//!
//! # Privileges, and why a change restarts dnsmasq
//!
//! dnsmasq parses packets from guests, so it must not keep root: after
//! binding its sockets it becomes `nobody:nogroup` with only CAP_NET_ADMIN
//! and CAP_NET_RAW (ARP injection and ICMP). A `--dhcp-hostsfile` is read
//! after that drop, at start and on SIGHUP, so `nobody` would have to reach
//! it through the 0700 state directory, which it cannot (dnsmasq logs
//! "cannot read …: Permission denied" and serves no host). Rather than
//! running dnsmasq as root or opening the state directory to `nobody`, the
//! hosts go in a `--conf-file`, which dnsmasq reads as root before it drops
//! privileges. SIGHUP does not re-read a conf-file, so when the hosts (or any
//! option) change, [`DhcpServer::ensure`] restarts dnsmasq (SIGTERM, wait,
//! start; tens of milliseconds). While it is stopped, vman also drops leases
//! that no longer match a host, so an address moved to a new MAC is served at
//! once instead of being refused as "leased to" the old MAC.
//!
//! # Proof before signals
//!
//! A pid from the pidfile is only believed (and signalled, through a pidfd)
//! if `/proc/<pid>/cmdline` is a dnsmasq with this directory's `--pid-file`
//! and `--conf-file`. The pidfile is owned by `nobody` (dnsmasq chowns it),
//! so its content is never trusted on its own. Before a start and on stop,
//! `/proc` is also searched for such a dnsmasq whose pidfile was lost, so
//! that no stale copy keeps answering with old hosts.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sys::{Pidfd, proc};

const HOSTS_FILE: &str = "hosts.conf";
const PID_FILE: &str = "dnsmasq.pid";
const LEASE_FILE: &str = "leases";
const LOG_FILE: &str = "dnsmasq.log";
/// The previous log, kept once when the log passes [`LOG_ROTATE_BYTES`].
const OLD_LOG_FILE: &str = "dnsmasq.log.1";

/// The identity dnsmasq drops to. Explicit, because dnsmasq's default group
/// is `dip`, which on Debian may run the setuid pppd.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

/// dnsmasq raises shorter leases to two minutes; refusing them is clearer.
const MIN_LEASE_SECS: u32 = 120;
const MAX_LEASE_SECS: u32 = 365 * 24 * 3600;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const TERM_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

const LOG_ROTATE_BYTES: u64 = 1 << 20;
/// A larger lease file is not dnsmasq's (65 534 leases take ~6 MiB): it is
/// discarded rather than read.
const MAX_LEASE_FILE_BYTES: u64 = 64 << 20;
/// dnsmasq's stderr is a line or two; more is cut.
const MAX_STDERR_BYTES: usize = 64 << 10;

/// What one network's DHCP server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The bridge to serve on. It must exist when dnsmasq starts, and have an
    /// address inside `network` for dnsmasq to answer on it.
    pub bridge: String,
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// 1..=30.
    pub prefix_len: u8,
    /// Sent as the router option.
    pub gateway: Ipv4Addr,
    /// Sent as the DNS-server option; none is sent if empty.
    pub dns: Vec<Ipv4Addr>,
    /// The only clients that get an address: MAC → IP, unique on both sides.
    pub hosts: Vec<([u8; 6], Ipv4Addr)>,
    /// 120 s to one year.
    pub lease_secs: u32,
}

/// Why the DHCP server could not be started, reloaded or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The dnsmasq binary does not exist: the host lacks a feature, not a
    /// fault of the call.
    #[error("No dnsmasq at {}; install dnsmasq-base (Debian) for DHCP on bridged networks", binary.display())]
    Missing { binary: PathBuf },
    /// The configuration was refused before anything was touched.
    #[error("Invalid DHCP configuration: {reason}")]
    Invalid { reason: String },
    /// dnsmasq exited instead of serving; `message` is its own stderr.
    #[error("Cannot start dnsmasq: {message}")]
    Start { message: String },
    /// A file or process operation failed.
    #[error("Cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DhcpError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> DhcpError {
        DhcpError::Io { op, path: path.into(), source }
    }

    fn invalid(reason: impl Into<String>) -> DhcpError {
        DhcpError::Invalid { reason: reason.into() }
    }
}

/// The dnsmasq of one network, identified by its run directory.
///
/// Holds no process handle: every call finds the daemon again through the
/// pidfile and proves it, so any number of `DhcpServer`s (or processes) may
/// name the same directory. Calls on one directory must be serialized by the
/// caller (vman holds the network's lock).
#[derive(Debug, Clone)]
pub struct DhcpServer {
    dir: PathBuf,
    binary: PathBuf,
}

/// A dnsmasq proven to be this directory's, held by a pidfd.
#[derive(Debug)]
struct Running {
    pid: u32,
    pidfd: Pidfd,
    args: Vec<OsString>,
}

impl DhcpServer {
    /// `dir` is created (0700) on the first [`ensure`](Self::ensure); a
    /// relative one is made absolute now, as dnsmasq moves to `/` before it
    /// writes its pidfile and log. `binary` is a path or a name looked up in
    /// `PATH`.
    pub fn new(dir: PathBuf, binary: PathBuf) -> DhcpServer {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        DhcpServer { dir, binary }
    }

    /// Makes a dnsmasq serve exactly `cfg`, returning its pid.
    ///
    /// If this directory's dnsmasq already runs with the same options and
    /// hosts, nothing is done. Otherwise a running one is stopped, the hosts
    /// file written, stale leases dropped, and dnsmasq started; the call
    /// returns once it serves (or with its error).
    pub fn ensure(&self, cfg: &DhcpConfig) -> Result<u32, DhcpError> {
        cfg.validate()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| DhcpError::io("create DHCP directory", &self.dir, e))?;
        let argv = self.argv(cfg);
        let hosts = hosts_conf(&cfg.hosts);
        let hosts_path = self.path(HOSTS_FILE);
        if let Some(running) = self.find_running() {
            let same_hosts = fs::read(&hosts_path).is_ok_and(|h| h == hosts.as_bytes());
            if same_hosts && running.args == argv {
                return Ok(running.pid);
            }
            log::info!("restarting dnsmasq {} of {} for a new configuration", running.pid, self.dir.display());
        }
        // Every dnsmasq of this directory goes, including one whose pidfile
        // was lost: it would keep answering with its old hosts.
        self.terminate_all()?;
        // Only written while no dnsmasq runs: a running one always has the
        // file's content, so the comparison above cannot miss a change.
        write_atomic(&hosts_path, hosts.as_bytes())?;
        self.prune_leases(&cfg.hosts)?;
        self.rotate_log();
        self.start(&argv)
    }

    /// The pid of this directory's dnsmasq, if one runs.
    pub fn running_pid(&self) -> Option<u32> {
        self.find_running().map(|r| r.pid)
    }

    /// Stops this directory's dnsmasq (SIGTERM, then SIGKILL after 5 s), and
    /// any copy whose pidfile was lost, then removes its pid, hosts and lease
    /// files; the log stays. Doing it again, or with nothing running, is not
    /// an error.
    pub fn stop(&self) -> Result<(), DhcpError> {
        self.terminate_all()?;
        for name in [PID_FILE, HOSTS_FILE, LEASE_FILE] {
            let path = self.path(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DhcpError::io("remove", path, e)),
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The whole command line, `argv[0]` included. Hosts are not on it: they
    /// are in the conf-file (no ARG_MAX limit, not shown by `ps`).
    fn argv(&self, cfg: &DhcpConfig) -> Vec<OsString> {
        let opt = |name: &str, value: &OsStr| {
            let mut o = OsString::from(name);
            o.push(value);
            o
        };
        let mut a: Vec<OsString> = vec![self.binary.clone().into_os_string()];
        // A conf-file of our own keeps /etc/dnsmasq.conf out.
        a.push(opt("--conf-file=", self.path(HOSTS_FILE).as_os_str()));
        a.push(opt("--pid-file=", self.path(PID_FILE).as_os_str()));
        a.push(opt("--dhcp-leasefile=", self.path(LEASE_FILE).as_os_str()));
        a.push(opt("--log-facility=", self.path(LOG_FILE).as_os_str()));
        a.extend(
            [
                "--port=0".to_string(), // no DNS
                "--no-hosts".to_string(),
                "--no-resolv".to_string(),
                format!("--interface={}", cfg.bridge),
                "--bind-interfaces".to_string(),
                "--except-interface=lo".to_string(),
                format!("--dhcp-range={},static,{},{}", cfg.network, cfg.netmask(), cfg.lease_secs),
                "--dhcp-authoritative".to_string(),
                format!("--dhcp-option=option:router,{}", cfg.gateway),
            ]
            .map(OsString::from),
        );
        if !cfg.dns.is_empty() {
            let list: Vec<String> = cfg.dns.iter().map(Ipv4Addr::to_string).collect();
            a.push(format!("--dhcp-option=option:dns-server,{}", list.join(",")).into());
        }
        a.push(format!("--user={USER}").into());
        a.push(format!("--group={GROUP}").into());
        a
    }

    /// This directory's dnsmasq, if the pidfile names a live process whose
    /// command line proves it. The pidfd is opened before the check and the
    /// process re-checked alive after, so the answer is about the process
    /// the pidfd holds, never a successor that reused the pid.
    fn find_running(&self) -> Option<Running> {
        self.prove(proc::read_pidfile(&self.path(PID_FILE))?)
    }

    fn prove(&self, pid: u32) -> Option<Running> {
        let pid_arg = prefixed("--pid-file=", &self.path(PID_FILE));
        let conf_arg = prefixed("--conf-file=", &self.path(HOSTS_FILE));
        let (pidfd, args) = proc::prove(pid, |args| is_dnsmasq_with(args, &self.binary, &pid_arg, &conf_arg))?;
        Some(Running { pid, pidfd, args })
    }

    /// Stops every process proven to be this directory's dnsmasq: the one
    /// its pidfile names, and any other found in `/proc` (a pidfile can be
    /// lost, e.g. to a cleaned run directory, while its daemon runs on).
    fn terminate_all(&self) -> Result<(), DhcpError> {
        for running in self.find_in_proc() {
            self.terminate(&running)?;
        }
        Ok(())
    }

    /// Every live process whose command line proves it this directory's
    /// dnsmasq. Reads each `/proc/<pid>/cmdline` once: a few milliseconds,
    /// paid only when dnsmasq is (re)started or stopped.
    fn find_in_proc(&self) -> Vec<Running> {
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(running) = self.prove(pid) {
                found.push(running);
            }
        }
        found
    }

    /// SIGTERM, wait; SIGKILL, wait. Waiting is on the pidfd, so it ends the
    /// moment the process does.
    fn terminate(&self, running: &Running) -> Result<(), DhcpError> {
        let exited = |timeout| running.pidfd.wait(timeout).map_err(|e| DhcpError::io("wait for dnsmasq of", &self.dir, e));
        if running.pidfd.kill(libc::SIGTERM).is_ok() && exited(TERM_TIMEOUT)? {
            return Ok(());
        }
        log::warn!("dnsmasq {} of {} ignored SIGTERM; killing it", running.pid, self.dir.display());
        let _ = running.pidfd.kill(libc::SIGKILL);
        if exited(KILL_TIMEOUT)? {
            return Ok(());
        }
        Err(DhcpError::io("stop dnsmasq of", &self.dir, io::Error::from(io::ErrorKind::TimedOut)))
    }

    /// Runs dnsmasq and waits for its launcher to exit: dnsmasq reports any
    /// start-up error to it through a pipe, and it exits 0 only once the
    /// daemon has written its pidfile and serves.
    fn start(&self, argv: &[OsString]) -> Result<u32, DhcpError> {
        let pid_path = self.path(PID_FILE);
        match fs::remove_file(&pid_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(DhcpError::io("remove stale", pid_path, e)),
        }
        let mut child =
            Command::new(&self.binary).args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(
                |e| match e.kind() {
                    io::ErrorKind::NotFound => DhcpError::Missing { binary: self.binary.clone() },
                    _ => DhcpError::io("run", &self.binary, e),
                },
            )?;
        let launcher = Pidfd::open(child.id()).map_err(|e| DhcpError::io("watch", &self.binary, e));
        let finished = launcher.and_then(|fd| fd.wait(START_TIMEOUT).map_err(|e| DhcpError::io("wait for", &self.binary, e)));
        if !matches!(finished, Ok(true)) {
            let _ = child.kill();
            let _ = child.wait();
            finished?;
            return Err(DhcpError::Start { message: format!("it did not finish starting within {} s", START_TIMEOUT.as_secs()) });
        }
        let status = child.wait().map_err(|e| DhcpError::io("wait for", &self.binary, e))?;
        let stderr = child.stderr.take().map(|s| read_available(s.into())).unwrap_or_default();
        if !status.success() {
            return Err(DhcpError::Start { message: dnsmasq_message(&stderr, status.code()) });
        }
        match self.find_running() {
            Some(running) => Ok(running.pid),
            None => Err(DhcpError::Start {
                message: format!(
                    "it reported success but no dnsmasq runs for {}; see {}",
                    pid_path.display(),
                    self.path(LOG_FILE).display()
                ),
            }),
        }
    }

    /// Keeps only the leases of current hosts. Run while dnsmasq is stopped
    /// (it rewrites the file from memory while it runs).
    fn prune_leases(&self, hosts: &[([u8; 6], Ipv4Addr)]) -> Result<(), DhcpError> {
        let path = self.path(LEASE_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(DhcpError::io("open", path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_LEASE_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| DhcpError::io("read", &path, e))?;
        let kept = if bytes.len() as u64 > MAX_LEASE_FILE_BYTES {
            log::warn!("{} is over {MAX_LEASE_FILE_BYTES} bytes; discarding it", path.display());
            String::new()
        } else {
            prune_lease_text(&String::from_utf8_lossy(&bytes), hosts)
        };
        if kept.as_bytes() != bytes {
            write_atomic(&path, kept.as_bytes())?;
        }
        Ok(())
    }

    /// Keeps one old log when the log has grown past 1 MiB. Best effort: a
    /// log that cannot be rotated only keeps growing.
    fn rotate_log(&self) {
        let log = self.path(LOG_FILE);
        if fs::metadata(&log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES)
            && let Err(e) = fs::rename(&log, self.path(OLD_LOG_FILE))
        {
            log::warn!("cannot rotate {}: {e}", log.display());
        }
    }
}

impl DhcpConfig {
    fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix_len))
    }

    /// Refuses what dnsmasq would refuse, silently adjust, or misserve.
    fn validate(&self) -> Result<(), DhcpError> {
        validate_bridge(&self.bridge)?;
        if !(1..=30).contains(&self.prefix_len) {
            return Err(DhcpError::invalid(format!("prefix /{} is outside /1../30", self.prefix_len)));
        }
        let m = mask(self.prefix_len);
        let net = u32::from(self.network);
        if net & !m != 0 {
            return Err(DhcpError::invalid(format!("{}/{} has host bits set", self.network, self.prefix_len)));
        }
        let is_host = |ip: Ipv4Addr| {
            let ip = u32::from(ip);
            ip & m == net && ip != net && ip != net | !m
        };
        if !is_host(self.gateway) {
            return Err(DhcpError::invalid(format!("gateway {} is not a host of {}/{}", self.gateway, self.network, self.prefix_len)));
        }
        if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&self.lease_secs) {
            return Err(DhcpError::invalid(format!("lease time {} s is outside {MIN_LEASE_SECS}..={MAX_LEASE_SECS} s", self.lease_secs)));
        }
        for (i, (mac, ip)) in self.hosts.iter().enumerate() {
            let mac_text = format_mac(mac);
            if mac[0] & 1 != 0 {
                return Err(DhcpError::invalid(format!("{mac_text} is a multicast MAC")));
            }
            if !is_host(*ip) || *ip == self.gateway {
                return Err(DhcpError::invalid(format!(
                    "{ip} of {mac_text} is not a host address of {}/{} other than the gateway",
                    self.network, self.prefix_len
                )));
            }
            for (other_mac, other_ip) in &self.hosts[..i] {
                if other_mac == mac {
                    return Err(DhcpError::invalid(format!("{mac_text} is listed twice")));
                }
                if other_ip == ip {
                    return Err(DhcpError::invalid(format!("{ip} is given to both {} and {mac_text}", format_mac(other_mac))));
                }
            }
        }
        Ok(())
    }
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0)
}

/// An interface name as the kernel allows it (≤ 15 bytes), narrowed to
/// characters that mean nothing to dnsmasq (`,` separates, `*` matches).
fn validate_bridge(name: &str) -> Result<(), DhcpError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || !name.chars().all(ok_char) {
        return Err(DhcpError::invalid(format!("bridge name {name:?} must be 1 to 15 of A-Z a-z 0-9 - _ .")));
    }
    Ok(())
}

fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The conf-file with the hosts, sorted by address so that the same set
/// always gives the same bytes.
fn hosts_conf(hosts: &[([u8; 6], Ipv4Addr)]) -> String {
    let mut sorted: Vec<&([u8; 6], Ipv4Addr)> = hosts.iter().collect();
    sorted.sort_by_key(|(mac, ip)| (*ip, *mac));
    let mut out = String::from("# Written by vman: the only clients this dnsmasq serves. Read at start.\n");
    for (mac, ip) in sorted {
        out.push_str(&format!("dhcp-host={},{ip}\n", format_mac(mac)));
    }
    out
}

/// dnsmasq lease lines are `<expiry> <mac> <ip> <name|*> <client-id|*>`;
/// lines whose MAC and IP are not a current host go, and so does anything
/// else (DHCPv6 `duid` lines, garbage).
fn prune_lease_text(text: &str, hosts: &[([u8; 6], Ipv4Addr)]) -> String {
    let wanted: Vec<(String, Ipv4Addr)> = hosts.iter().map(|(mac, ip)| (format_mac(mac), *ip)).collect();
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let keep = f.len() >= 3
            && f[0].parse::<u64>().is_ok()
            && f[2].parse::<Ipv4Addr>().is_ok_and(|ip| wanted.iter().any(|(m, i)| m.eq_ignore_ascii_case(f[1]) && *i == ip));
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn prefixed(option: &str, path: &Path) -> Vec<u8> {
    let mut v = option.as_bytes().to_vec();
    v.extend_from_slice(path.as_os_str().as_bytes());
    v
}

/// Whether `args` run dnsmasq (`argv[0]` named like `binary` or `dnsmasq*`)
/// with exactly our pid-file and conf-file options.
fn is_dnsmasq_with(args: &[OsString], binary: &Path, pid_arg: &[u8], conf_arg: &[u8]) -> bool {
    let Some(arg0) = args.first() else { return false };
    let name = Path::new(arg0).file_name().map(OsStr::as_bytes).unwrap_or_default();
    let ours = binary.file_name().map(OsStr::as_bytes);
    let is_dnsmasq = name.starts_with(b"dnsmasq") || (ours.is_some() && ours == Some(name));
    let has = |want: &[u8]| args[1..].iter().any(|a| a.as_bytes() == want);
    is_dnsmasq && has(pid_arg) && has(conf_arg)
}

/// dnsmasq's words, e.g. "dnsmasq: unknown interface vmbr9" → "unknown
/// interface vmbr9", with its exit code's meaning if it said nothing.
fn dnsmasq_message(stderr: &[u8], code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> =
        text.lines().map(|l| l.trim()).map(|l| l.strip_prefix("dnsmasq: ").unwrap_or(l)).filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        return lines.iter().rev().take(5).rev().copied().collect::<Vec<_>>().join("; ");
    }
    match code {
        // dnsmasq(8), EXIT CODES.
        Some(1) => "it exited with status 1 (configuration problem) and said nothing".into(),
        Some(2) => "it exited with status 2 (network access problem) and said nothing".into(),
        Some(3) => "it exited with status 3 (filesystem problem) and said nothing".into(),
        Some(c) => format!("it exited with status {c} and said nothing"),
        None => "it was killed by a signal".into(),
    }
}

/// Reads what the pipe holds now, without waiting for writers that may
/// still have it open. The launcher has exited, so its words are in there.
fn read_available(fd: OwnedFd) -> Vec<u8> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Vec::new();
    }
    let mut file = File::from(fd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < MAX_STDERR_BYTES {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break, // WouldBlock: nothing more now.
        }
    }
    out
}

/// Replaces `path` with `content` (mode 0600) by writing a temporary file
/// next to it and renaming it over, so readers see the old or the new file,
/// never a part.
fn write_atomic(path: &Path, content: &[u8]) -> Result<(), DhcpError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let tmp = PathBuf::from(tmp);
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(content))
        .map_err(|e| DhcpError::io("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| DhcpError::io("replace", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::split_cmdline;
    use std::time::Instant;

    const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
    const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

    fn cfg() -> DhcpConfig {
        DhcpConfig {
            bridge: "vmbr100".into(),
            network: Ipv4Addr::new(10, 100, 0, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 100, 0, 1),
            dns: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(9, 9, 9, 9)],
            hosts: vec![(B, Ipv4Addr::new(10, 100, 0, 11)), (A, Ipv4Addr::new(10, 100, 0, 10))],
            lease_secs: 3600,
        }
    }

    fn server() -> DhcpServer {
        DhcpServer::new(PathBuf::from("/s/run/net-7"), PathBuf::from("/usr/sbin/dnsmasq"))
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter().map(|a| a.to_str().unwrap().to_string()).collect()
    }

    #[test]
    fn argv_serves_only_a_static_range_on_the_bridge_without_dns() {
        let argv = strings(&server().argv(&cfg()));
        assert_eq!(argv[0], "/usr/sbin/dnsmasq");
        for want in [
            "--conf-file=/s/run/net-7/hosts.conf",
            "--pid-file=/s/run/net-7/dnsmasq.pid",
            "--dhcp-leasefile=/s/run/net-7/leases",
            "--log-facility=/s/run/net-7/dnsmasq.log",
            "--port=0",
            "--interface=vmbr100",
            "--bind-interfaces",
            "--except-interface=lo",
            "--dhcp-range=10.100.0.0,static,255.255.255.0,3600",
            "--dhcp-authoritative",
            "--dhcp-option=option:router,10.100.0.1",
            "--dhcp-option=option:dns-server,1.1.1.1,9.9.9.9",
            "--user=nobody",
            "--group=nogroup",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} missing from {argv:?}");
        }
        // One argument per option: nothing a shell would have to split.
        assert!(argv.iter().all(|a| !a.contains(' ')));
        // Hosts live in the conf-file, not on the command line.
        assert!(!argv.iter().any(|a| a.contains("dhcp-host") || a.contains("52:54")));
        assert!(!argv.iter().any(|a| a.contains("hostsfile")));
    }

    #[test]
    fn argv_sends_no_dns_option_when_the_network_has_no_dns() {
        let argv = strings(&server().argv(&DhcpConfig { dns: vec![], ..cfg() }));
        assert!(!argv.iter().any(|a| a.contains("dns-server")));
    }

    #[test]
    fn hosts_conf_has_one_sorted_dhcp_host_line_per_host() {
        let text = hosts_conf(&cfg().hosts);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["dhcp-host=52:54:00:00:00:0a,10.100.0.10", "dhcp-host=52:54:00:00:00:0b,10.100.0.11"]);
        let mut reversed = cfg().hosts;
        reversed.reverse();
        assert_eq!(hosts_conf(&reversed), text, "the order of hosts must not change the file");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            DhcpConfig { bridge: "vmbr1,eth0".into(), ..cfg() },
            DhcpConfig { bridge: "a-very-long-bridge".into(), ..cfg() },
            DhcpConfig { prefix_len: 31, ..cfg() },
            DhcpConfig { network: Ipv4Addr::new(10, 100, 0, 5), ..cfg() },
            DhcpConfig { gateway: Ipv4Addr::new(10, 101, 0, 1), ..cfg() },
            DhcpConfig { gateway: Ipv4Addr::new(10, 100, 0, 255), ..cfg() },
            DhcpConfig { lease_secs: 60, ..cfg() },
            DhcpConfig { hosts: vec![(A, Ipv4Addr::new(10, 100, 1, 10))], ..cfg() },
            DhcpConfig { hosts: vec![(A, Ipv4Addr::new(10, 100, 0, 1))], ..cfg() },
            DhcpConfig { hosts: vec![(A, Ipv4Addr::new(10, 100, 0, 10)), (A, Ipv4Addr::new(10, 100, 0, 12))], ..cfg() },
            DhcpConfig { hosts: vec![(A, Ipv4Addr::new(10, 100, 0, 10)), (B, Ipv4Addr::new(10, 100, 0, 10))], ..cfg() },
            DhcpConfig { hosts: vec![([0x01, 0, 0x5e, 0, 0, 1], Ipv4Addr::new(10, 100, 0, 10))], ..cfg() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(DhcpError::Invalid { .. })), "accepted {c:?}");
        }
        cfg().validate().unwrap();
        DhcpConfig { hosts: vec![], dns: vec![], ..cfg() }.validate().unwrap();
    }

    #[test]
    fn a_relative_directory_is_made_absolute_because_dnsmasq_chdirs_to_root() {
        let s = DhcpServer::new(PathBuf::from("state/run/net-1"), PathBuf::from("dnsmasq"));
        assert!(s.dir.is_absolute());
        assert!(s.dir.ends_with("state/run/net-1"));
        let argv = strings(&s.argv(&cfg()));
        assert!(argv.iter().filter(|a| a.contains("net-1")).all(|a| a.split_once('=').unwrap().1.starts_with('/')));
    }

    #[test]
    fn netmask_follows_the_prefix() {
        assert_eq!(DhcpConfig { prefix_len: 20, network: Ipv4Addr::new(10, 0, 16, 0), ..cfg() }.netmask(), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(mask(1), 0x8000_0000);
    }

    #[test]
    fn cmdline_proof_needs_dnsmasq_with_our_pid_and_conf_files() {
        let s = server();
        let pid_arg = prefixed("--pid-file=", &s.path(PID_FILE));
        let conf_arg = prefixed("--conf-file=", &s.path(HOSTS_FILE));
        let ours = b"/usr/sbin/dnsmasq\0--conf-file=/s/run/net-7/hosts.conf\0--pid-file=/s/run/net-7/dnsmasq.pid\0--port=0\0";
        let args = split_cmdline(ours);
        assert_eq!(args.len(), 4);
        assert!(is_dnsmasq_with(&args, &s.binary, &pid_arg, &conf_arg));
        // The same files of another network.
        let other = split_cmdline(b"dnsmasq\0--conf-file=/s/run/net-8/hosts.conf\0--pid-file=/s/run/net-7/dnsmasq.pid\0");
        assert!(!is_dnsmasq_with(&other, &s.binary, &pid_arg, &conf_arg));
        // Our arguments, another program.
        let stranger = split_cmdline(b"/bin/sleep\0--conf-file=/s/run/net-7/hosts.conf\0--pid-file=/s/run/net-7/dnsmasq.pid\0");
        assert!(!is_dnsmasq_with(&stranger, &s.binary, &pid_arg, &conf_arg));
        // A prefix of our path is not our path.
        let longer = split_cmdline(b"dnsmasq\0--conf-file=/s/run/net-7/hosts.conf.x\0--pid-file=/s/run/net-7/dnsmasq.pid\0");
        assert!(!is_dnsmasq_with(&longer, &s.binary, &pid_arg, &conf_arg));
        // A zombie or kernel thread has an empty command line.
        assert!(split_cmdline(b"").is_empty());
        assert!(!is_dnsmasq_with(&[], &s.binary, &pid_arg, &conf_arg));
    }

    #[test]
    fn a_renamed_binary_is_recognised_by_its_configured_name() {
        let s = DhcpServer::new(PathBuf::from("/d"), PathBuf::from("/opt/bin/dhcpd-x"));
        let args = split_cmdline(b"/opt/bin/dhcpd-x\0--conf-file=/d/hosts.conf\0--pid-file=/d/dnsmasq.pid\0");
        assert!(is_dnsmasq_with(
            &args,
            &s.binary,
            &prefixed("--pid-file=", &s.path(PID_FILE)),
            &prefixed("--conf-file=", &s.path(HOSTS_FILE))
        ));
    }

    #[test]
    fn leases_of_removed_or_moved_hosts_are_pruned() {
        let text = "1700000000 52:54:00:00:00:0a 10.100.0.10 * 01:52:54:00:00:00:0a\n\
                    1700000000 52:54:00:00:00:0B 10.100.0.11 guest *\n\
                    1700000000 52:54:00:00:00:0c 10.100.0.12 * *\n\
                    1700000000 52:54:00:00:00:0a 10.100.0.13 * *\n\
                    duid 00:01:00:01\n\
                    garbage\n";
        let kept = prune_lease_text(text, &cfg().hosts);
        assert_eq!(
            kept,
            "1700000000 52:54:00:00:00:0a 10.100.0.10 * 01:52:54:00:00:00:0a\n1700000000 52:54:00:00:00:0B 10.100.0.11 guest *\n"
        );
    }

    #[test]
    fn dnsmasq_errors_keep_its_words_without_its_name() {
        assert_eq!(dnsmasq_message(b"\ndnsmasq: unknown interface vmbr9\n", Some(2)), "unknown interface vmbr9");
        assert!(dnsmasq_message(b"", Some(3)).contains("filesystem"));
        assert!(dnsmasq_message(b"", None).contains("signal"));
    }

    #[test]
    fn error_messages_are_sentence_case_without_a_trailing_period() {
        let errors = [
            DhcpError::Missing { binary: "/usr/sbin/dnsmasq".into() },
            DhcpError::invalid("x"),
            DhcpError::Start { message: "unknown interface vmbr9".into() },
            DhcpError::io("read", "/x", io::Error::from(io::ErrorKind::NotFound)),
        ];
        for e in errors {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| c.is_ascii_uppercase()) && !m.ends_with('.'), "{m}");
        }
        assert!(DhcpError::Missing { binary: "dnsmasq".into() }.to_string().contains("dnsmasq-base"));
    }

    #[test]
    fn stop_without_a_server_is_a_no_op_and_a_missing_binary_is_typed() {
        let dir = std::env::temp_dir().join(format!("vman-dhcp-stop-{}", std::process::id()));
        let s = DhcpServer::new(dir.clone(), PathBuf::from("/nonexistent/dnsmasq"));
        s.stop().unwrap();
        s.stop().unwrap();
        assert_eq!(s.running_pid(), None);
        // The bridge need not exist: the binary is looked for first.
        let err = s.ensure(&cfg()).unwrap_err();
        assert!(matches!(err, DhcpError::Missing { .. }), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A process whose command line looks like this directory's dnsmasq:
    /// `sh` named `dnsmasq` (argv[0]) with our two options among its
    /// positional parameters. The `; :` keeps sh from exec'ing sleep. Its
    /// own process group, so that [`reap`] can end its sleep too.
    fn fake_dnsmasq(s: &DhcpServer) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let child = Command::new("/bin/sh")
            .arg0("dnsmasq")
            .process_group(0)
            .args(["-c", "sleep 30; :", "x"])
            .arg(format!("--conf-file={}", s.path(HOSTS_FILE).display()))
            .arg(format!("--pid-file={}", s.path(PID_FILE).display()))
            .spawn()
            .unwrap();
        // spawn() returns once exec has begun; the new command line shows
        // in /proc a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fs::read(format!("/proc/{}/cmdline", child.id())).unwrap().starts_with(b"dnsmasq\0") {
            assert!(Instant::now() < deadline, "the fake dnsmasq never showed its command line");
            std::thread::sleep(Duration::from_millis(1));
        }
        child
    }

    fn reap(mut child: std::process::Child) {
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }

    #[test]
    fn stop_ends_a_dnsmasq_whose_pidfile_was_lost_and_spares_other_networks() {
        let root = std::env::temp_dir().join(format!("vman-dhcp-orphan-{}", std::process::id()));
        let ours = DhcpServer::new(root.join("net-1"), PathBuf::from("dnsmasq"));
        let other = DhcpServer::new(root.join("net-2"), PathBuf::from("dnsmasq"));
        let mut orphan = fake_dnsmasq(&ours);
        let mut neighbour = fake_dnsmasq(&other);
        // No pidfile: not "running" as far as the pidfile goes...
        assert_eq!(ours.running_pid(), None);
        // ...but found and ended by stop(), which waits for its exit.
        ours.stop().unwrap();
        let status = orphan.try_wait().unwrap().expect("stop() returned before the orphan exited");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
        assert!(neighbour.try_wait().unwrap().is_none(), "another network's dnsmasq was signalled");
        reap(orphan);
        reap(neighbour);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn running_pid_believes_a_pidfile_only_with_a_matching_command_line() {
        let dir = std::env::temp_dir().join(format!("vman-dhcp-proof-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let s = DhcpServer::new(dir.clone(), PathBuf::from("dnsmasq"));
        let child = fake_dnsmasq(&s);
        let pid = child.id();
        fs::write(dir.join(PID_FILE), format!("{pid}\n")).unwrap();
        assert_eq!(s.running_pid(), Some(pid));
        reap(child);
        assert_eq!(s.running_pid(), None, "a dead process is not running");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stranger_named_by_the_pidfile_is_never_taken_for_dnsmasq() {
        let dir = std::env::temp_dir().join(format!("vman-dhcp-stranger-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let s = DhcpServer::new(dir.clone(), PathBuf::from("dnsmasq"));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        fs::write(dir.join(PID_FILE), format!("{}\n", child.id())).unwrap();
        assert_eq!(s.running_pid(), None);
        s.stop().unwrap();
        // Still alive: stop() did not signal it.
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
