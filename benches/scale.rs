//! Scale of the store from Rust: what a call costs as the store fills.
//!
//! - scale/create: `Manager::create_vm` of a VM with one NIC (so an address
//!   is allocated), as durable as the store makes it (WAL, synchronous =
//!   NORMAL: a commit survives the process being killed). The same call
//!   followed by an `fdatasync` of the WAL is scale/create_synced: that one
//!   sync per commit is exactly what synchronous = FULL adds in WAL mode,
//!   so it is the cost of also surviving a power loss.
//! - scale/get (`Manager::vm`) and scale/list (`Manager::vms`, no filter),
//!   each with n = 0, 1,000 and 10,000 VMs in the store. One store is
//!   filled through the public API and measured at each size on the way up.
//!   At n = 0 the store holds only the VM being read.
//! - scale/open: `Manager::open` of the store holding 10,000 VMs, until it
//!   returns (the reconcile it runs included).
//! - scale/alloc: one address allocated and released (a one-NIC VM created
//!   then deleted) in a /16 that is 0 %, 50 % and 99 % full. The three
//!   networks live in one store and are measured interleaved, so their
//!   ratio is the allocator's own cost, not the database's size.
//!
//! Writes JSON lines to the file named by VMAN_BENCH_OUT (appending), and
//! prints a table. Run: cargo bench -p vman-core --bench scale
//! - VMAN_SCALE_QUICK=1 (or BENCH_QUICK=1): a short run with fewer samples;
//! - VMAN_SCALE_ONLY=store|alloc: one half (store: create/get/list/open);
//! - VMAN_SCALE_PROFILE=get|list|create: fill 10,000 VMs, then repeat one
//!   call for ten seconds and print its wall and CPU time per call (a
//!   target for `perf record -p`); VMAN_SCALE_KEEP=<dir> keeps that store.

use std::fs::OpenOptions as FileOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use vman_core::{MAX_NICS, Manager, NetworkSpec, OpenOptions, TemplateSpec, VmFilter, VmSpec};

const SIZES: [usize; 3] = [0, 1_000, 10_000];
/// A /16 minus network, broadcast and gateway.
const ASSIGNABLE: usize = 65_533;

struct Samples {
    create: usize,
    get: usize,
    list: [usize; 3],
    open: usize,
    alloc: usize,
}

fn samples() -> Samples {
    // scripts/bench --quick sets BENCH_QUICK=1.
    if std::env::var_os("VMAN_SCALE_QUICK").is_some() || std::env::var("BENCH_QUICK").is_ok_and(|q| q == "1") {
        Samples { create: 30, get: 300, list: [50, 10, 3], open: 2, alloc: 30 }
    } else {
        Samples { create: 200, get: 5_000, list: [200, 50, 15], open: 7, alloc: 300 }
    }
}

/// One measured series: appended to VMAN_BENCH_OUT as a JSON line and
/// printed as a row of the table.
fn emit(bench: &str, params: serde_json::Value, samples: &[Duration]) {
    let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{bench:<20} {:<28} median {:>10.1} µs  p10 {:>10.1}  p90 {:>10.1}  ({} samples)",
        params.to_string(),
        pick(0.5) * 1e6,
        pick(0.1) * 1e6,
        pick(0.9) * 1e6,
        secs.len()
    );
    if let Some(path) = std::env::var_os("VMAN_BENCH_OUT") {
        let line = serde_json::json!({"bench": bench, "impl": "vman-rust", "params": params, "unit": "s", "samples": secs});
        let mut file = FileOptions::new().create(true).append(true).open(path).expect("open VMAN_BENCH_OUT");
        writeln!(file, "{line}").expect("write VMAN_BENCH_OUT");
    }
}

fn open(dir: &Path) -> Manager {
    Manager::open(dir, &OpenOptions::default()).expect("open")
}

/// A fixed-seed generator, so every run reads and frees the same VMs.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }
}

fn fill_name(i: usize) -> String {
    format!("vm{i:05}")
}

fn wal_of(dir: &Path) -> std::fs::File {
    std::fs::File::open(dir.join("vman.db-wal")).expect("open the WAL")
}

/// create (NORMAL and synced, interleaved), get and list at the store's current size `n`.
fn measure_size(vman: &Manager, dir: &Path, n: usize, s: &Samples, list_samples: usize) {
    let params = serde_json::json!({"n": n});
    let wal = wal_of(dir);
    let (mut normal, mut synced) = (Vec::new(), Vec::new());
    for i in 0..s.create {
        let spec = VmSpec::new(format!("probe{i}"), "t").nic("n");
        let t = Instant::now();
        std::hint::black_box(vman.create_vm(&spec).expect("create"));
        normal.push(t.elapsed());
        let spec = VmSpec::new(format!("synced{i}"), "t").nic("n");
        let t = Instant::now();
        std::hint::black_box(vman.create_vm(&spec).expect("create"));
        wal.sync_data().expect("fdatasync");
        synced.push(t.elapsed());
    }
    for i in 0..s.create {
        vman.delete_vm(&format!("probe{i}"), false).expect("delete");
        vman.delete_vm(&format!("synced{i}"), false).expect("delete");
    }
    emit("scale/create", params.clone(), &normal);
    emit("scale/create_synced", params.clone(), &synced);

    // At n = 0 there is nothing to read: read the one VM made for it.
    let single = (n == 0).then(|| vman.create_vm(&VmSpec::new(fill_name(0), "t").nic("n")).expect("create"));
    let mut rng = Lcg(0x5eed);
    let names: Vec<String> = (0..s.get).map(|_| fill_name(rng.below(n.max(1)))).collect();
    let mut get = Vec::with_capacity(names.len());
    for name in &names {
        let t = Instant::now();
        std::hint::black_box(vman.vm(name).expect("get"));
        get.push(t.elapsed());
    }
    emit("scale/get", params.clone(), &get);
    if single.is_some() {
        vman.delete_vm(&fill_name(0), false).expect("delete");
    }

    let mut list = Vec::with_capacity(list_samples);
    for _ in 0..list_samples {
        let t = Instant::now();
        let vms = std::hint::black_box(vman.vms(&VmFilter::default()).expect("list"));
        list.push(t.elapsed());
        assert_eq!(vms.len(), n);
    }
    emit("scale/list", params, &list);
}

fn scale(s: &Samples) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("t", 1, 512, 1)).expect("template");
    vman.create_network(&NetworkSpec::new("n", 16, "10.16.0.0/16")).expect("network");
    let mut filled = 0;
    for (size, list_samples) in SIZES.into_iter().zip(s.list) {
        let t = Instant::now();
        while filled < size {
            vman.create_vm(&VmSpec::new(fill_name(filled), "t").nic("n")).expect("fill");
            filled += 1;
        }
        if size > 0 {
            eprintln!("filled to {size} VMs in {:.1} s", t.elapsed().as_secs_f64());
        }
        measure_size(&vman, dir.path(), size, s, list_samples);
    }
    drop(vman);
    let mut opens = Vec::new();
    for _ in 0..s.open {
        let t = Instant::now();
        let vman = open(dir.path());
        opens.push(t.elapsed());
        drop(vman);
    }
    emit("scale/open", serde_json::json!({"n": filled}), &opens);
}

/// Fills network `net` with VMs of 16 NICs until `addresses` are held.
fn fill_addresses(vman: &Manager, net: &str, addresses: usize, names: &mut Vec<String>) {
    let mut left = addresses;
    while left > 0 {
        let nics = left.min(MAX_NICS);
        let mut spec = VmSpec::new(format!("{net}-{}", names.len()), "t");
        for _ in 0..nics {
            spec = spec.nic(net);
        }
        vman.create_vm(&spec).expect("fill");
        names.push(spec.name);
        left -= nics;
    }
}

fn alloc(s: &Samples) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vman = open(dir.path());
    vman.create_template(&TemplateSpec::new("t", 1, 512, 1)).expect("template");
    for (name, vlan, cidr) in [("n0", 10, "10.10.0.0/16"), ("n50", 50, "10.50.0.0/16"), ("n99", 99, "10.99.0.0/16")] {
        vman.create_network(&NetworkSpec::new(name, vlan, cidr)).expect("network");
    }
    let t = Instant::now();
    let mut names = Vec::new();
    fill_addresses(&vman, "n50", ASSIGNABLE / 2, &mut names);
    names.clear();
    fill_addresses(&vman, "n99", ASSIGNABLE, &mut names);
    // Free 41 VMs of 16 NICs (~1 %) at random, so the free addresses are
    // holes spread over the /16 rather than one extent at its end.
    let mut rng = Lcg(0x5eed);
    for _ in 0..41 {
        let victim = rng.below(names.len());
        vman.delete_vm(&names.swap_remove(victim), false).expect("free");
    }
    let held = vman.allocations("n99").expect("allocations").len();
    assert!((ASSIGNABLE * 98 / 100..ASSIGNABLE).contains(&held), "held {held}");
    eprintln!("filled the /16s in {:.1} s ({held} of {ASSIGNABLE} held in n99)", t.elapsed().as_secs_f64());

    let levels = [(0, "n0"), (50, "n50"), (99, "n99")];
    let mut series: Vec<Vec<Duration>> = vec![Vec::new(); levels.len()];
    for _ in 0..s.alloc {
        for ((_, net), samples) in levels.iter().zip(series.iter_mut()) {
            let spec = VmSpec::new("probe", "t").nic(*net);
            let t = Instant::now();
            std::hint::black_box(vman.create_vm(&spec).expect("allocate"));
            vman.delete_vm("probe", false).expect("release");
            samples.push(t.elapsed());
        }
    }
    for ((fill, _), samples) in levels.iter().zip(&series) {
        emit("scale/alloc", serde_json::json!({"fill": fill}), samples);
    }
}

/// Fills 10,000 VMs, then repeats one call for ten seconds: a target for
/// `perf record` (VMAN_SCALE_PROFILE=get|list|create).
fn profile(what: &str) {
    // VMAN_SCALE_KEEP names a directory to fill and keep, for a look inside.
    let kept = std::env::var_os("VMAN_SCALE_KEEP");
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = kept.as_ref().map_or(temp.path(), Path::new);
    let vman = open(dir);
    vman.create_template(&TemplateSpec::new("t", 1, 512, 1)).expect("template");
    vman.create_network(&NetworkSpec::new("n", 16, "10.16.0.0/16")).expect("network");
    for i in 0..10_000 {
        vman.create_vm(&VmSpec::new(fill_name(i), "t").nic("n")).expect("fill");
    }
    eprintln!("filled; profiling {what}");
    let cpu = thread_cpu();
    let (t, mut i) = (Instant::now(), 0usize);
    while t.elapsed() < Duration::from_secs(10) {
        match what {
            "get" => drop(std::hint::black_box(vman.vm(&fill_name(i % 10_000)).expect("get"))),
            "list" => drop(std::hint::black_box(vman.vms(&VmFilter::default()).expect("list"))),
            _ => {
                vman.create_vm(&VmSpec::new(format!("probe{i}"), "t").nic("n")).expect("create");
            }
        }
        i += 1;
    }
    let cpu = thread_cpu() - cpu;
    eprintln!(
        "{i} calls, {:.1} µs wall, {:.1} µs CPU each",
        t.elapsed().as_secs_f64() * 1e6 / i as f64,
        cpu.as_secs_f64() * 1e6 / i as f64
    );
}

/// CPU time of this thread: steadier than wall time on a shared machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: it only
    // checks that the program builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let s = samples();
    if let Ok(what) = std::env::var("VMAN_SCALE_PROFILE") {
        profile(&what);
        return;
    }
    let which = std::env::var("VMAN_SCALE_ONLY").unwrap_or_default();
    if which.is_empty() || which == "store" {
        scale(&s);
    }
    if which.is_empty() || which == "alloc" {
        alloc(&s);
    }
}
