//! IP allocation cost in a /16 that is empty versus 99 % full.
//!
//! The allocator must not slow down as a network fills: the 99 % case is
//! quoted as a ratio against the empty case measured in the same run. Each
//! sample creates a VM record whose NICs take addresses (the real user path:
//! template lookup, VM row, allocation, NIC rows, event, one transaction) and
//! deletes it outside the timed region, so the fill level stays constant.
//!
//! The full network is fragmented on purpose: it is filled completely, then
//! 41 random VMs of 16 NICs are deleted, leaving 656 free addresses in 41
//! holes spread over the /16, so allocation cannot ride on one free extent.
//!
//! Run: cargo bench -p vman-core --bench ipam

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vman_core::{MAX_NICS, Manager, NetworkSpec, OpenOptions, TemplateSpec, VmSpec};

const ASSIGNABLE: usize = 65_533; // a /16 minus network, broadcast, gateway

fn manager(dir: &std::path::Path) -> Manager {
    let vman = Manager::open(dir, &OpenOptions::default()).expect("open");
    vman.create_template(&TemplateSpec::new("t", 1, 512, 1)).expect("template");
    vman.create_network(&NetworkSpec::new("n", 16, "10.16.0.0/16")).expect("network");
    vman
}

/// Fills the /16 with VMs of 16 NICs, then frees 41 random VMs (~1 %).
fn fill_99_percent(vman: &Manager) {
    let mut left = ASSIGNABLE;
    let mut vms = Vec::new();
    while left > 0 {
        let nics = left.min(MAX_NICS);
        let mut spec = VmSpec::new(format!("fill{}", vms.len()), "t");
        for _ in 0..nics {
            spec = spec.nic("n");
        }
        vman.create_vm(&spec).expect("fill");
        vms.push(spec.name);
        left -= nics;
    }
    // A fixed-seed LCG picks the victims, so every run frees the same holes.
    let mut seed: u64 = 0x5eed;
    for _ in 0..41 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let victim = (seed >> 33) as usize % vms.len();
        vman.delete_vm(&vms.swap_remove(victim), false).expect("free");
    }
    let held = vman.allocations("n").expect("allocations").len();
    assert!((ASSIGNABLE * 98 / 100..ASSIGNABLE).contains(&held), "held {held}");
    eprintln!("99% case: {held} of {ASSIGNABLE} addresses held ({:.2} %)", held as f64 * 100.0 / ASSIGNABLE as f64);
}

fn time_create(vman: &Manager, nics: usize, iters: u64) -> Duration {
    let mut spec = VmSpec::new("probe", "t");
    for _ in 0..nics {
        spec = spec.nic("n");
    }
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let vm = vman.create_vm(&spec).expect("create");
        total += start.elapsed();
        std::hint::black_box(vm);
        vman.delete_vm("probe", false).expect("delete");
    }
    total
}

fn bench(c: &mut Criterion) {
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let full_dir = tempfile::tempdir().expect("tempdir");
    let empty = manager(empty_dir.path());
    let full = manager(full_dir.path());
    let start = Instant::now();
    fill_99_percent(&full);
    eprintln!("filled in {:.1} s", start.elapsed().as_secs_f64());

    let mut group = c.benchmark_group("ipam_slash16");
    group.measurement_time(Duration::from_secs(4));
    for nics in [1usize, 16] {
        for (label, vman) in [("empty", &empty), ("99pct_full", &full)] {
            group.bench_with_input(BenchmarkId::new(format!("create_vm_{nics}nic"), label), &nics, |b, &nics| {
                b.iter_custom(|iters| time_create(vman, nics, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
