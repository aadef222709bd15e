//! Driver process of the comparative harness (benches/compare/): raw QEMU
//! (`driver qemu`) or vman from Rust (`driver vman-rust`).
//!
//! It reads one JSON request per line on stdin and answers one JSON line on
//! stdout; it times each operation itself with a monotonic clock, so the
//! pipe costs nothing (see benches/compare/README.md for the protocol and
//! exactly what each operation times, and BENCHMARKS.md).
//!
//! Raw QEMU runs with vman's exact argument vector: at `setup` the driver
//! starts one vman VM of the same spec, reads its QEMU's /proc/<pid>/cmdline,
//! stops it, and keeps that argv with only what is per-process rewritten:
//! the descriptors vman passes (QMP and serial listening sockets, which this
//! driver binds and passes the same way; the kernel and initrd, named by
//! path), the run directory, the pidfile and the boot disk (an overlay the
//! driver makes with qemu-img). Run it from benches/compare/run.py.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vman_core::{Accel, BootSpec, ImageSpec, Manager, OpenOptions, TemplateSpec, VmSpec};

#[path = "../raw_qemu.rs"]
mod raw_qemu;

type Res<T> = Result<T, String>;

/// The serial log vman's argv names in the run directory (`logfile=`).
const SERIAL_LOG: &str = "serial.log";

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn str_arg<'a>(req: &'a Value, key: &str) -> Res<&'a str> {
    req.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing string {key:?}"))
}

/// What every implementation boots: the same kernel, initrd, command line and size.
struct Guest {
    kernel: String,
    initrd: String,
    cmdline: String,
    memory_mib: u64,
    base: Option<String>,
}

impl Guest {
    fn from(req: &Value) -> Res<Guest> {
        Ok(Guest {
            kernel: str_arg(req, "kernel")?.into(),
            initrd: str_arg(req, "initrd")?.into(),
            cmdline: str_arg(req, "cmdline")?.into(),
            memory_mib: req.get("memory_mib").and_then(Value::as_u64).unwrap_or(256),
            base: req.get("base").and_then(Value::as_str).map(String::from),
        })
    }
}

fn open_vman(state: &Path, guest: &Guest) -> Res<Manager> {
    let vman = Manager::open(state, &OpenOptions { accel: Some(Accel::Tcg), ..OpenOptions::default() }).map_err(err)?;
    vman.create_template(&TemplateSpec::new("t", 1, guest.memory_mib, 1)).map_err(err)?;
    if let Some(base) = &guest.base {
        vman.register_image(&ImageSpec::new("base", base)).map_err(err)?;
    }
    Ok(vman)
}

fn vm_spec(name: &str, disk: &str, guest: &Guest) -> VmSpec {
    let spec = VmSpec::new(name, "t").boot(BootSpec::kernel(&guest.kernel).initrd(&guest.initrd).cmdline(&guest.cmdline));
    if disk == "linked" { spec.image("base") } else { spec }
}

trait Driver {
    /// Times one operation; returns seconds.
    fn op(&mut self, op: &str, req: &Value) -> Res<f64>;
    fn cleanup(&mut self);
}

// ---------------------------------------------------------------- vman-rust

struct VmanDriver {
    vman: Manager,
    guest: Guest,
}

impl Driver for VmanDriver {
    fn op(&mut self, op: &str, req: &Value) -> Res<f64> {
        let name = str_arg(req, "name")?;
        let timeout = Duration::from_secs_f64(req.get("timeout").and_then(Value::as_f64).unwrap_or(60.0));
        let t = Instant::now();
        match op {
            "create" => {
                let spec = vm_spec(name, str_arg(req, "disk")?, &self.guest);
                let t = Instant::now();
                self.vman.create_vm(&spec).map_err(err)?;
                return Ok(t.elapsed().as_secs_f64());
            }
            "start" => drop(self.vman.start(name).map_err(err)?),
            "force_stop" => drop(self.vman.force_stop(name).map_err(err)?),
            "ready" => drop(self.vman.wait_for_console(name, "VMAN-GUEST-READY", timeout).map_err(err)?),
            "graceful_stop" => drop(self.vman.stop(name, timeout).map_err(err)?),
            "delete" => self.vman.delete_vm(name, true).map_err(err)?,
            _ => return Err(format!("unknown op {op:?}")),
        }
        Ok(t.elapsed().as_secs_f64())
    }

    fn cleanup(&mut self) {
        if let Ok(vms) = self.vman.vms(&vman_core::VmFilter::default()) {
            for vm in vms {
                let _ = self.vman.delete_vm(&vm.name, true);
            }
        }
    }
}

// ---------------------------------------------------------------- raw QEMU

/// One raw QEMU: its process, pidfd, QMP connection and files.
struct RawVm {
    dir: PathBuf,
    disk: String,
    overlay: Option<PathBuf>,
    child: Option<Child>,
    pidfd: Option<OwnedFd>,
    qmp: Option<(UnixStream, BufReader<UnixStream>)>,
}

struct RawDriver {
    binary: String,
    /// vman's argv after the binary, per disk variant, with placeholders
    /// `@QMP@`, `@SERIAL@`, `@DIR@`, `@DISK@`.
    templates: HashMap<String, Vec<String>>,
    base: Option<String>,
    root: PathBuf,
    vms: HashMap<String, RawVm>,
    /// The user, group and groups vman's QEMU ran as: raw QEMU runs as them too.
    ids: QemuIds,
}

#[derive(Clone, Default)]
struct QemuIds {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
}

impl QemuIds {
    fn of(pid: u32) -> Res<QemuIds> {
        let ids = |key| raw_qemu::status_ids(pid, key);
        Ok(QemuIds { uid: *ids("Uid:").first().ok_or("no Uid")?, gid: *ids("Gid:").first().ok_or("no Gid")?, groups: ids("Groups:") })
    }
}

fn pidfd_open(pid: u32) -> Res<OwnedFd> {
    // SAFETY: pidfd_open reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process of `pidfd` has exited (readable pidfd).
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> Res<()> {
    let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    if n == 1 { Ok(()) } else { Err("QEMU did not exit in time".into()) }
}

/// Reads QMP lines up to the next command's answer (events are skipped).
fn qmp_return(qmp: &mut (UnixStream, BufReader<UnixStream>)) -> Res<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if qmp.1.read_line(&mut line).map_err(err)? == 0 {
            return Err("QMP closed".into());
        }
        if line.contains("\"return\"") {
            return Ok(());
        }
        if line.contains("\"error\"") {
            return Err(format!("QMP: {}", line.trim()));
        }
    }
}

impl RawDriver {
    fn setup(vman: &Manager, guest: &Guest, root: &Path) -> Res<RawDriver> {
        let mut templates = HashMap::new();
        let mut binary = String::new();
        let mut ids = QemuIds::default();
        for disk in ["none", "linked"] {
            if disk == "linked" && guest.base.is_none() {
                continue;
            }
            let (b, t, i) = Self::argv_of(vman, guest, disk)?;
            binary = b;
            ids = i;
            templates.insert(disk.to_string(), t);
        }
        std::fs::create_dir_all(root).map_err(err)?;
        Ok(RawDriver { binary, templates, base: guest.base.clone(), root: root.to_path_buf(), vms: HashMap::new(), ids })
    }

    /// Reads vman's argv from one real start of a VM with boot disk `disk`
    /// and makes a template of it.
    fn argv_of(vman: &Manager, guest: &Guest, disk: &str) -> Res<(String, Vec<String>, QemuIds)> {
        let vm = vman.create_vm(&vm_spec("argv", disk, guest)).map_err(err)?;
        let pid = vman.start("argv").map_err(err)?.pid.ok_or("no pid")?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(err)?;
        let ids = QemuIds::of(pid)?;
        let disk_path = vman.disks(&vman_core::DiskFilter::default()).map_err(err)?.into_iter().find(|d| d.vm.as_deref() == Some(&vm.name));
        vman.force_stop("argv").map_err(err)?;
        let mut args: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let binary = args.remove(0);
        let run_dir = vman.state_dir().join("run");
        let run_dir = run_dir.to_string_lossy();
        let mut prev = String::new();
        let mut template = Vec::new();
        for a in args {
            let mut a = a;
            if prev == "-kernel" {
                a = guest.kernel.clone();
            } else if prev == "-initrd" {
                a = guest.initrd.clone();
            } else if prev == "-chardev" && a.starts_with("socket,id=qmp,fd=") {
                a = a.replacen(a.split(',').nth(2).unwrap_or(""), "fd=@QMP@", 1);
            } else if prev == "-chardev" && a.starts_with("socket,id=serial0,fd=") {
                a = a.replacen(a.split(',').nth(2).unwrap_or(""), "fd=@SERIAL@", 1);
            } else if prev == "-blockdev"
                && let Some(d) = &disk_path
            {
                a = a.replace(&d.path, "@DISK@");
            }
            // The VM's run directory (<state>/run/<short id>) becomes ours.
            if let Some(i) = a.find(&*run_dir) {
                let rest = &a[i + run_dir.len() + 1..];
                let short = rest.split('/').next().unwrap_or("");
                a = a.replace(&format!("{run_dir}/{short}"), "@DIR@");
            }
            prev = a.clone();
            template.push(a);
        }
        vman.delete_vm("argv", true).map_err(err)?;
        Ok((binary, template, ids))
    }

    fn vm(&mut self, name: &str) -> Res<&mut RawVm> {
        self.vms.get_mut(name).ok_or_else(|| format!("no VM {name:?}"))
    }

    fn start(&mut self, name: &str) -> Res<f64> {
        let vm = self.vms.get(name).ok_or_else(|| format!("no VM {name:?}"))?;
        let dir = vm.dir.clone();
        let disk = vm.overlay.clone();
        let template = self.templates.get(&vm.disk).ok_or_else(|| format!("no argv for disk {:?}", vm.disk))?;
        let t = Instant::now();
        // What vman does too: listening sockets made here, passed to QEMU.
        let _ = std::fs::remove_file(dir.join("qmp.sock"));
        let _ = std::fs::remove_file(dir.join("serial.sock"));
        let qmp_l = UnixListener::bind(dir.join("qmp.sock")).map_err(err)?;
        let serial_l = UnixListener::bind(dir.join("serial.sock")).map_err(err)?;
        let (qfd, sfd) = (qmp_l.as_raw_fd(), serial_l.as_raw_fd());
        let dir_s = dir.to_string_lossy().into_owned();
        let disk_s = disk.map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
        let args: Vec<String> = template
            .iter()
            .map(|a| {
                a.replace("@QMP@", &qfd.to_string())
                    .replace("@SERIAL@", &sfd.to_string())
                    .replace("@DIR@", &dir_s)
                    .replace("@DISK@", &disk_s)
            })
            .collect();
        let stderr = std::fs::File::create(dir.join("qemu.stderr")).map_err(err)?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let QemuIds { uid, gid, groups } = self.ids.clone();
        // SAFETY: only async-signal-safe calls between fork and exec, on values made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                for fd in [qfd, sfd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // QEMU's user, as vman runs it.
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0 || libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(err)?;
        let pidfd = pidfd_open(child.id())?;
        let stream = UnixStream::connect(dir.join("qmp.sock")).map_err(err)?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(err)?;
        let mut qmp = (stream.try_clone().map_err(err)?, BufReader::new(stream));
        // Both commands go out behind the connect, as vman sends them: QEMU
        // answers them in order after its greeting, so the reference is the
        // fastest exchange a raw QEMU user can have (one wait, not three).
        writeln!(qmp.0, r#"{{"execute":"qmp_capabilities"}}"#).map_err(err)?;
        writeln!(qmp.0, r#"{{"execute":"query-status"}}"#).map_err(err)?;
        let mut greeting = String::new();
        qmp.1.read_line(&mut greeting).map_err(err)?;
        if greeting.is_empty() {
            let e = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
            return Err(format!("QEMU failed: {}", e.trim()));
        }
        qmp_return(&mut qmp)?;
        qmp_return(&mut qmp)?;
        let s = t.elapsed().as_secs_f64();
        drop((qmp_l, serial_l));
        let vm = self.vm(name)?;
        vm.child = Some(child);
        vm.pidfd = Some(pidfd);
        vm.qmp = Some(qmp);
        Ok(s)
    }

    /// `cmd` over QMP, then the process's exit (pidfd readable).
    fn stop(&mut self, name: &str, cmd: &str, timeout: Duration) -> Res<f64> {
        let vm = self.vm(name)?;
        let mut qmp = vm.qmp.take().ok_or("not running")?;
        let pidfd = vm.pidfd.take().ok_or("not running")?;
        let t = Instant::now();
        writeln!(qmp.0, "{cmd}").map_err(err)?;
        wait_exit(&pidfd, timeout)?;
        let s = t.elapsed().as_secs_f64();
        if let Some(mut child) = vm.child.take() {
            let _ = child.wait();
        }
        Ok(s)
    }

    fn ready(&mut self, name: &str, timeout: Duration) -> Res<f64> {
        let vm = self.vm(name)?;
        let log = vm.dir.join(SERIAL_LOG);
        let t = Instant::now();
        while t.elapsed() < timeout {
            if std::fs::read(&log).is_ok_and(|b| b.windows(16).any(|w| w == b"VMAN-GUEST-READY")) {
                return Ok(t.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("no VMAN-GUEST-READY".into())
    }
}

impl Driver for RawDriver {
    fn op(&mut self, op: &str, req: &Value) -> Res<f64> {
        let name = str_arg(req, "name")?;
        let timeout = Duration::from_secs_f64(req.get("timeout").and_then(Value::as_f64).unwrap_or(60.0));
        match op {
            "create" => {
                let dir = self.root.join(name);
                std::fs::create_dir_all(&dir).map_err(err)?;
                let t = Instant::now();
                let disk = str_arg(req, "disk")?.to_string();
                let overlay = if disk == "linked" {
                    let base = self.base.as_deref().ok_or("no base image")?;
                    let path = dir.join("disk.qcow2");
                    let out = Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base])
                        .arg(&path)
                        .arg("1G")
                        .output()
                        .map_err(err)?;
                    if !out.status.success() {
                        return Err(format!("qemu-img: {}", String::from_utf8_lossy(&out.stderr).trim()));
                    }
                    Some(path)
                } else {
                    None
                };
                let s = t.elapsed().as_secs_f64();
                // QEMU runs as vman's QEMU user: its directory (pidfile,
                // serial log) and its overlay are that user's.
                for path in std::iter::once(&dir).chain(overlay.as_ref()) {
                    std::os::unix::fs::chown(path, Some(self.ids.uid), Some(self.ids.gid)).map_err(err)?;
                }
                self.vms.insert(name.into(), RawVm { dir, disk, overlay, child: None, pidfd: None, qmp: None });
                Ok(s)
            }
            "start" => self.start(name),
            "force_stop" => self.stop(name, r#"{"execute":"quit"}"#, timeout),
            "graceful_stop" => self.stop(name, r#"{"execute":"system_powerdown"}"#, timeout),
            "ready" => self.ready(name, timeout),
            "delete" => {
                let vm = self.vms.remove(name).ok_or("no VM")?;
                let t = Instant::now();
                if let Some(o) = &vm.overlay {
                    std::fs::remove_file(o).map_err(err)?;
                }
                let s = t.elapsed().as_secs_f64();
                let _ = std::fs::remove_dir_all(&vm.dir);
                Ok(s)
            }
            _ => Err(format!("unknown op {op:?}")),
        }
    }

    fn cleanup(&mut self) {
        for (_, vm) in self.vms.drain() {
            if let Some(mut child) = vm.child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn reply(out: &mut impl Write, v: Value) {
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() {
    // `cargo bench` passes `--bench`; the harness passes the implementation.
    let which = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    if which != "qemu" && which != "vman-rust" {
        eprintln!("usage: compare_driver qemu|vman-rust  (JSON lines on stdin; see benches/compare/README.md)");
        return;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut driver: Option<Box<dyn Driver>> = None;
    let mut _keep: Option<Manager> = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let req: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                reply(&mut out, json!({"ok": false, "error": format!("bad request: {e}")}));
                continue;
            }
        };
        let op = req.get("op").and_then(Value::as_str).unwrap_or("").to_string();
        if op == "quit" {
            break;
        }
        let result: Res<Value> = if op == "setup" {
            (|| {
                let guest = Guest::from(&req)?;
                let state = PathBuf::from(str_arg(&req, "state")?);
                let vman = open_vman(&state.join("vman"), &guest)?;
                let d: Box<dyn Driver> = if which == "qemu" {
                    let raw = RawDriver::setup(&vman, &guest, &state.join("raw"))?;
                    _keep = Some(vman);
                    Box::new(raw)
                } else {
                    Box::new(VmanDriver { vman, guest })
                };
                driver = Some(d);
                Ok(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
            })()
        } else {
            match driver.as_mut() {
                Some(d) => d.op(&op, &req).map(|s| json!({"ok": true, "s": s})),
                None => Err("setup first".into()),
            }
        };
        reply(&mut out, result.unwrap_or_else(|e| json!({"ok": false, "error": e})));
    }
    if let Some(mut d) = driver {
        d.cleanup();
    }
}
