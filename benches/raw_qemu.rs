//! Raw QEMU run as vman runs it, for the benches that compare against it
//! (included by path from benches/runtime.rs, benches/runtime_scale.rs and
//! benches/compare/driver.rs).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// How vman ran a VM's QEMU, to run it the same way by hand.
pub struct RawRecipe {
    binary: String,
    args: Vec<String>,
    /// (descriptor number in the argv, what it is).
    qmp_fd: RawFd,
    serial_fd: RawFd,
    /// Files QEMU got as `/proc/self/fd/N`: (N, path vman opened).
    files: Vec<(RawFd, PathBuf)>,
    run_dir: PathBuf,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    pub serial_log: Option<PathBuf>,
}

/// The numbers of a `/proc/<pid>/status` line (`Uid:`, `Gid:`, `Groups:`).
pub fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(key)).expect("status key");
    line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect()
}

fn fd_after(arg: &str, key: &str) -> Option<RawFd> {
    arg.split(',').find_map(|kv| kv.strip_prefix(key)?.parse().ok())
}

impl RawRecipe {
    /// Reads the running QEMU `pid` of a vman VM: argv, descriptors, user.
    pub fn of(pid: u32, kernel: Option<&Path>, initrd: Option<&Path>) -> RawRecipe {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let mut args: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        let binary = args.remove(0);
        let chardev = |id: &str| args.iter().find(|a| a.starts_with(&format!("socket,id={id},"))).and_then(|a| fd_after(a, "fd="));
        let (qmp_fd, serial_fd) = (chardev("qmp").expect("qmp fd"), chardev("serial0").expect("serial fd"));
        let mut files = Vec::new();
        for (flag, path) in [("-kernel", kernel), ("-initrd", initrd)] {
            if let (Some(i), Some(path)) = (args.iter().position(|a| a == flag), path) {
                let fd = args[i + 1].strip_prefix("/proc/self/fd/").and_then(|n| n.parse().ok()).expect("a file by descriptor");
                files.push((fd, path.to_path_buf()));
            }
        }
        let pidfile = &args[args.iter().position(|a| a == "-pidfile").expect("pidfile") + 1];
        let run_dir = Path::new(pidfile).parent().expect("run dir").to_path_buf();
        let serial_log = args.iter().find_map(|a| a.split(',').find_map(|kv| kv.strip_prefix("logfile=")).map(PathBuf::from));
        let groups = status_ids(pid, "Groups:");
        RawRecipe {
            binary,
            args,
            qmp_fd,
            serial_fd,
            files,
            run_dir,
            uid: status_ids(pid, "Uid:")[0],
            gid: status_ids(pid, "Gid:")[0],
            groups,
            serial_log,
        }
    }

    /// What a raw QEMU user does to start it as vman does: the listening
    /// sockets, the files, a session of its own, QEMU's user. Returns the
    /// child and its QMP connection once `query-status` answered.
    pub fn start(&self) -> (Child, UnixStream) {
        let qmp_path = self.run_dir.join("raw-qmp.sock");
        let serial_path = self.run_dir.join("raw-serial.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let _ = std::fs::remove_file(&serial_path);
        let qmp = UnixListener::bind(&qmp_path).expect("bind qmp");
        let serial = UnixListener::bind(&serial_path).expect("bind serial");
        let mut sources: Vec<(RawFd, OwnedFd)> = vec![(self.qmp_fd, OwnedFd::from(qmp)), (self.serial_fd, OwnedFd::from(serial))];
        for (fd, path) in &self.files {
            sources.push((*fd, OwnedFd::from(std::fs::File::open(path).expect("open boot file"))));
        }
        // Out of the way of the target numbers, so the child's dup2s never
        // overwrite a source before it is used.
        let high: Vec<(RawFd, OwnedFd)> = sources
            .iter()
            .map(|(target, fd)| {
                // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the result is a new descriptor we then own.
                let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200) };
                assert!(dup >= 0);
                // SAFETY: dup is a fresh descriptor owned by nobody else.
                (*target, unsafe { OwnedFd::from_raw_fd(dup) })
            })
            .collect();
        drop(sources);
        let moves: Vec<(RawFd, RawFd)> = high.iter().map(|(t, fd)| (fd.as_raw_fd(), *t)).collect();
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        let mut command = Command::new(&self.binary);
        command.args(&self.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls on values made before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (from, to) in &moves {
                    if libc::dup2(*from, *to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0 || libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn raw QEMU");
        drop(high);
        let conn = qmp_ready(&qmp_path);
        (child, conn)
    }
}

/// The QMP exchange a raw QEMU user does: capabilities and one query, sent
/// behind the connect as vman sends them (QEMU answers after its greeting,
/// in order), so the reference is the fastest exchange QEMU allows.
pub fn qmp_ready(sock: &Path) -> UnixStream {
    let stream = UnixStream::connect(sock).expect("connect QMP");
    let mut w = stream.try_clone().expect("clone");
    writeln!(w, r#"{{"execute":"qmp_capabilities"}}"#).expect("send");
    writeln!(w, r#"{{"execute":"query-status"}}"#).expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting");
    for _ in 0..2 {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("reply");
            if line.contains("\"return\"") {
                break;
            }
        }
    }
    stream
}

/// Waits until the process's pidfd is readable (it exited); reaps it.
pub fn wait_exit(child: &mut Child) -> Instant {
    // SAFETY: pidfd_open reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) } as i32;
    assert!(fd >= 0, "pidfd_open");
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut p, 1, 60_000) };
    let at = Instant::now();
    // SAFETY: fd came from pidfd_open above.
    unsafe { libc::close(fd) };
    child.wait().expect("reap raw QEMU");
    at
}
