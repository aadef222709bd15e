//! The runtime as the host fills: start latency with 0 and 30 VMs already
//! running, the embedding process's memory with 0, 10 and 30 running VMs,
//! and event fan-out to 1 and 10 subscribers.
//!
//! - runtime/start {"running": 0|30}: `Manager::start` of a probe VM, call
//!   → returned running (QMP answered), then force stop. Interleaved: a
//!   few starts with nothing else running, 30 idle VMs started, a few
//!   starts again, the 30 stopped; repeated. Target: start with 30 ≤ 1.1×
//!   start with 0 (ratio of medians). Each vman start is paired with a raw
//!   QEMU start of the same probe with vman's argv (impl "qemu"): what the
//!   host itself charges a start with 30 QEMUs alive.
//! - runtime/memory {"running": 0|10|30}: this process's RSS after a
//!   warm-up start, then with 10 and with 30 VMs running (one sample per
//!   round). Target: (memory[30] − memory[0]) / 30 ≤ 1 MB.
//! - events/fanout {"subscribers": 1|10}: a write (`create_template`) →
//!   the last of the subscribers' threads has the event, from the write
//!   call's start (an upper bound: it includes the write itself).
//!
//! The probe VM has a blank disk (SeaBIOS finds nothing to boot), as in
//! benches/runtime.rs. The 30 idle VMs boot a 36-byte multiboot guest that
//! halts with interrupts off (see `halting_guest`), so they cost the host
//! next to no CPU.
//!
//! Writes JSON lines to `$VMAN_BENCH_OUT` (see benches/README or the issue's
//! result format) and prints a table.
//! Run: cargo bench -p vman-core --bench runtime_scale

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a failed run

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[path = "raw_qemu.rs"]
mod raw_qemu;
#[path = "support.rs"]
mod support;
use support::{Cleanup, Series, emit, median};

use vman_core::{Accel, BootSpec, Manager, NetworkMode, OpenOptions, TemplateSpec, VmSpec};

const IDLE: usize = 30;
/// Rounds of (starts with 0, 30 started, starts with 30, 30 stopped):
/// many short rounds, so a load that drifts (a build next door) falls on
/// both sides alike. `VMAN_BENCH_ROUNDS` overrides.
const ROUNDS: usize = 10;
/// Probe starts per round and per count of running VMs.
const STARTS_PER_ROUND: usize = 2;
const FANOUT_SAMPLES: usize = 200;

fn options() -> OpenOptions {
    OpenOptions { accel: Some(Accel::Tcg), network: Some(NetworkMode::Isolated), ..OpenOptions::default() }
}

pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// The cheapest guest to keep running: a multiboot image (a.out kludge,
/// loaded at 1 MiB) whose code is `cli; hlt; jmp .-1`. Its vCPU sleeps for
/// good, so QEMU's host threads sleep too: the 30 running VMs cost the host
/// their memory and their threads, next to no CPU.
fn halting_guest() -> Vec<u8> {
    const MAGIC: u32 = 0x1BAD_B002;
    const FLAGS: u32 = 1 << 16; // the load addresses below are valid
    let header = [MAGIC, FLAGS, 0u32.wrapping_sub(MAGIC.wrapping_add(FLAGS)), 0x10_0000, 0x10_0000, 0, 0, 0x10_0020];
    let mut image: Vec<u8> = header.iter().flat_map(|w| w.to_le_bytes()).collect();
    image.extend([0xFA, 0xF4, 0xEB, 0xFD]);
    image
}

/// One probe start (call → running), then a force stop (not measured).
fn timed_start(vman: &Manager, name: &str) -> f64 {
    let t = Instant::now();
    let vm = vman.start(name).expect("start the probe");
    let took = t.elapsed().as_secs_f64();
    std::hint::black_box(vm);
    vman.force_stop(name).expect("stop the probe");
    took
}

/// The same probe started by raw QEMU with vman's argv (spawn → QMP
/// answered), then QMP quit: the host's own cost of a start.
fn timed_raw_start(recipe: &raw_qemu::RawRecipe) -> f64 {
    let t = Instant::now();
    let (mut child, mut qmp) = recipe.start();
    let took = t.elapsed().as_secs_f64();
    writeln!(qmp, r#"{{"execute":"quit"}}"#).expect("quit");
    raw_qemu::wait_exit(&mut child);
    took
}

fn start_idle(vman: &Manager, names: &[String]) -> Vec<u32> {
    names.iter().map(|n| vman.start(n).expect("start an idle VM").pid.expect("pid")).collect()
}

fn stop_idle(vman: &Manager, names: &[String]) {
    for n in names {
        vman.force_stop(n).expect("stop an idle VM");
    }
}

/// Lets freshly started idle guests reach their idle loop, and says how
/// much CPU they then use together (in cores).
fn settle(pids: &[u32]) -> f64 {
    let ms = std::env::var("VMAN_BENCH_SETTLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    std::thread::sleep(Duration::from_millis(ms));
    let before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    // SAFETY: sysconf reads no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (after - before) as f64 / hz / t.elapsed().as_secs_f64()
}

fn fanout(dir: &Path, subscribers: usize) -> Vec<f64> {
    let writer = Manager::open(dir, &options()).expect("open");
    let vman = Manager::open(dir, &options()).expect("open");
    let start = Arc::new(Barrier::new(subscribers + 1));
    let threads: Vec<_> = (0..subscribers)
        .map(|_| {
            let stream = vman.subscribe().expect("subscribe");
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut got = Vec::with_capacity(FANOUT_SAMPLES);
                while got.len() < FANOUT_SAMPLES {
                    let event = stream.next(Duration::from_secs(30)).expect("stream").expect("an event within 30 s");
                    let at = Instant::now();
                    if event.object_name.starts_with(&format!("f{subscribers}-")) {
                        got.push(at);
                    }
                }
                got
            })
        })
        .collect();
    start.wait();
    let mut before = Vec::with_capacity(FANOUT_SAMPLES);
    for i in 0..FANOUT_SAMPLES {
        let t = Instant::now();
        writer.create_template(&TemplateSpec::new(format!("f{subscribers}-{i}"), 1, 128, 1)).expect("write");
        before.push(t);
        // Each event on its own, not behind a queue.
        std::thread::sleep(Duration::from_millis(3));
    }
    let got: Vec<Vec<Instant>> = threads.into_iter().map(|t| t.join().expect("subscriber")).collect();
    (0..FANOUT_SAMPLES).skip(10).map(|i| got.iter().map(|g| g[i]).max().unwrap().duration_since(before[i]).as_secs_f64()).collect()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let _cleanup = Cleanup::under(state.clone());
    let vman = Manager::open(&state, &options()).expect("open");
    vman.create_template(&TemplateSpec::new("t", 1, 128, 1)).expect("template");
    let halt = dir.path().join("halt.elf");
    std::fs::write(&halt, halting_guest()).expect("write the halting guest");
    vman.create_vm(&VmSpec { blank_disk: true, ..VmSpec::new("probe", "t") }).expect("probe");
    let idle_spec = |name: String| VmSpec { boot: Some(BootSpec::kernel(halt.to_string_lossy())), ..VmSpec::new(name, "t") };
    let idle: Vec<String> = (0..IDLE).map(|i| format!("idle{i}")).collect();
    for n in &idle {
        vman.create_vm(&idle_spec(n.clone())).expect("idle VM");
    }

    // Memory: after a warm-up start, with 0, 10 and 30 running.
    let mut mem = [Vec::new(), Vec::new(), Vec::new()];
    let pid = vman.start("probe").expect("warm-up start").pid.expect("pid");
    let recipe = raw_qemu::RawRecipe::of(pid, None, None);
    vman.force_stop("probe").expect("stop the probe");
    let mut starts = [Vec::new(), Vec::new()];
    let mut raw = [Vec::new(), Vec::new()];
    let mut cpu = Vec::new();
    let rounds = std::env::var("VMAN_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(ROUNDS);
    for round in 0..rounds {
        for _ in 0..STARTS_PER_ROUND {
            starts[0].push(timed_start(&vman, "probe"));
            raw[0].push(timed_raw_start(&recipe));
        }
        mem[0].push(rss_bytes() as f64);
        let mut pids = start_idle(&vman, &idle[..10]);
        mem[1].push(rss_bytes() as f64);
        pids.extend(start_idle(&vman, &idle[10..]));
        mem[2].push(rss_bytes() as f64);
        cpu.push(settle(&pids));
        for _ in 0..STARTS_PER_ROUND {
            starts[1].push(timed_start(&vman, "probe"));
            raw[1].push(timed_raw_start(&recipe));
        }
        stop_idle(&vman, &idle);
        eprintln!("round {round}: {IDLE} idle guests used {:.2} cores", cpu[round]);
    }
    drop(vman);

    let fan1 = fanout(&state, 1);
    let fan10 = fanout(&state, 10);

    let series = vec![
        Series {
            imp: "vman-rust",
            bench: "runtime/start",
            params: serde_json::json!({"running": 0}),
            unit: "s",
            samples: starts[0].clone(),
        },
        Series {
            imp: "vman-rust",
            bench: "runtime/start",
            params: serde_json::json!({"running": 30}),
            unit: "s",
            samples: starts[1].clone(),
        },
        Series { imp: "qemu", bench: "runtime/start", params: serde_json::json!({"running": 0}), unit: "s", samples: raw[0].clone() },
        Series { imp: "qemu", bench: "runtime/start", params: serde_json::json!({"running": 30}), unit: "s", samples: raw[1].clone() },
        Series {
            imp: "vman-rust",
            bench: "runtime/memory",
            params: serde_json::json!({"running": 0}),
            unit: "bytes",
            samples: mem[0].clone(),
        },
        Series {
            imp: "vman-rust",
            bench: "runtime/memory",
            params: serde_json::json!({"running": 10}),
            unit: "bytes",
            samples: mem[1].clone(),
        },
        Series {
            imp: "vman-rust",
            bench: "runtime/memory",
            params: serde_json::json!({"running": 30}),
            unit: "bytes",
            samples: mem[2].clone(),
        },
        Series { imp: "vman-rust", bench: "events/fanout", params: serde_json::json!({"subscribers": 1}), unit: "s", samples: fan1 },
        Series { imp: "vman-rust", bench: "events/fanout", params: serde_json::json!({"subscribers": 10}), unit: "s", samples: fan10 },
    ];
    emit(&series);
    println!(
        "start with {IDLE} running / with 0: vman {:.3}× (target ≤ 1.1×), raw QEMU {:.3}×",
        median(&series[1].samples) / median(&series[0].samples),
        median(&series[3].samples) / median(&series[2].samples)
    );
    println!(
        "memory per running VM: {:.1} KiB (target ≤ 1024 KiB); first round alone: {:.1} KiB",
        (median(&series[6].samples) - median(&series[4].samples)) / IDLE as f64 / 1024.0,
        (series[6].samples[0] - series[4].samples[0]) / IDLE as f64 / 1024.0
    );
}
