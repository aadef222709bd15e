//! The QEMU runtime against raw QEMU, side by side in one run.
//!
//! - start: `Manager::start` (call → running, QMP answered) against spawning
//!   `qemu-system-x86_64` with exactly the argv vman used (read back from
//!   /proc) → QMP `query-status` answered. Target: ≤ 1.15×.
//! - force stop: `Manager::force_stop` against raw QMP `quit` → process exit.
//!   Target: ≤ 20 ms.
//! - death detection: `kill -9` of QEMU → the event on a live stream.
//!   Target: ≤ 100 ms.
//! - management memory per running VM: the embedding process's RSS growth
//!   per VM started (QEMU's own memory is QEMU's, in both setups).
//!
//! Both sides run under TCG with no guest to boot (firmware only), so the
//! numbers are about process management, not guest speed.
//! Run: cargo bench -p vman-core --bench runtime

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vman_core::{Accel, Manager, OpenOptions, TemplateSpec, VmSpec};

fn manager(dir: &Path) -> Manager {
    let vman = Manager::open(dir, &OpenOptions { accel: Some(Accel::Tcg), ..OpenOptions::default() }).expect("open");
    vman.create_template(&TemplateSpec::new("t", 1, 128, 1)).expect("template");
    vman
}

/// The QMP exchange a raw QEMU user does: greeting, capabilities, one query.
fn qmp_ready(sock: &Path) -> UnixStream {
    let stream = UnixStream::connect(sock).expect("connect QMP");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting");
    let mut w = stream.try_clone().expect("clone");
    for cmd in [r#"{"execute":"qmp_capabilities"}"#, r#"{"execute":"query-status"}"#] {
        writeln!(w, "{cmd}").expect("send");
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

/// Spawns raw QEMU with vman's argv and waits for QMP to answer, as a user
/// of plain QEMU would; returns the QMP connection and the daemon's pid.
fn spawn_raw(binary: &str, args: &[String], qmp: &Path, pidfile: &Path) -> (UnixStream, u32) {
    let _ = std::fs::remove_file(qmp);
    assert!(Command::new(binary).args(args).status().expect("spawn").success());
    let conn = qmp_ready(qmp);
    let pid = std::fs::read_to_string(pidfile).expect("pid").trim().parse().expect("pid");
    (conn, pid)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vman = manager(&dir.path().join("state"));
    vman.create_vm(&VmSpec::new("bench", "t")).expect("vm");

    // The exact argv vman uses, moved to a directory of its own for the raw runs.
    let pid = vman.start("bench").expect("start").pid.expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    vman.force_stop("bench").expect("stop");
    let run_dir = vman.state_dir().join("run");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("raw dir");
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).replace(&*run_dir.to_string_lossy(), &raw_dir.to_string_lossy()))
        .collect();
    let binary = args.remove(0);
    let short = std::fs::read_dir(&run_dir).expect("run").flatten().find(|e| e.path().is_dir()).expect("vm dir").file_name();
    let raw_vm = raw_dir.join(&short);
    std::fs::create_dir_all(&raw_vm).expect("raw vm dir");
    let raw_qmp = raw_vm.join("qmp.sock");
    let raw_pidfile: PathBuf = raw_vm.join("qemu.pid");

    let mut group = c.benchmark_group("runtime");
    group.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));

    group.bench_function("start/raw_qemu_spawn_to_qmp", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let (mut qmp, pid) = spawn_raw(&binary, &args, &raw_qmp, &raw_pidfile);
                total += t.elapsed();
                let _ = writeln!(qmp, r#"{{"execute":"quit"}}"#);
                wait_gone(pid);
            }
            total
        })
    });
    group.bench_function("start/vman", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let vm = vman.start("bench").expect("start");
                total += t.elapsed();
                std::hint::black_box(vm);
                vman.force_stop("bench").expect("stop");
            }
            total
        })
    });
    group.bench_function("force_stop/raw_qmp_quit_to_exit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut qmp, pid) = spawn_raw(&binary, &args, &raw_qmp, &raw_pidfile);
                let t = Instant::now();
                let _ = writeln!(qmp, r#"{{"execute":"quit"}}"#);
                let mut sink = String::new();
                let _ = BufReader::new(qmp).read_line(&mut sink);
                // Exit as a parent would see it: the pidfd becomes readable
                // when the process exits, before its reaper collects it.
                // SAFETY: pidfd_open reads no memory of ours.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as i32, 0) } as i32;
                if fd >= 0 {
                    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd, count 1.
                    unsafe { libc::poll(&mut p, 1, 5000) };
                    // SAFETY: fd came from pidfd_open above.
                    unsafe { libc::close(fd) };
                }
                total += t.elapsed();
                wait_gone(pid);
            }
            total
        })
    });
    group.bench_function("force_stop/vman", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                vman.start("bench").expect("start");
                let t = Instant::now();
                vman.force_stop("bench").expect("stop");
                total += t.elapsed();
            }
            total
        })
    });
    group.bench_function("death_detection/kill9_to_event", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pid = vman.start("bench").expect("start").pid.expect("pid");
                let stream = vman.subscribe().expect("subscribe");
                let t = Instant::now();
                // SAFETY: kill(2) on the pid vman just started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                let event = stream.next(Duration::from_secs(5)).expect("stream open").expect("death event");
                total += t.elapsed();
                assert_eq!(event.details["to"], "error");
            }
            total
        })
    });
    group.finish();

    // Management memory: RSS growth of this process per running VM.
    const N: usize = 8;
    for i in 0..N {
        vman.create_vm(&VmSpec::new(format!("m{i}"), "t")).expect("vm");
    }
    vman.start("m0").expect("warm-up start");
    vman.force_stop("m0").expect("stop");
    let before = rss_kib();
    for i in 0..N {
        vman.start(&format!("m{i}")).expect("start");
    }
    let after = rss_kib();
    eprintln!(
        "management memory: {} KiB RSS for {N} running VMs = {:.1} KiB per VM (process RSS {after} KiB)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / N as f64
    );
    for i in 0..N {
        vman.force_stop(&format!("m{i}")).expect("stop");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
