//! Time bridged networking adds to a VM start, against a start without
//! networking, side by side in one run:
//!
//! - `start/isolated`: one NIC that reaches nothing (no host work);
//! - `start/bridged_warm`: another VM keeps the VLAN up, so the start adds a
//!   tap on the bridge and a DHCP hosts reload;
//! - `start/bridged_cold`: the first VM on the VLAN, so the start also makes
//!   the bridge and starts dnsmasq (and the stop takes them down again).
//!
//! The bench moves itself into a network namespace of its own before any
//! thread starts, so it touches none of the host's interfaces (needs root).
//! Run: cargo bench -p vman-core --bench network

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vman_core::{Accel, Manager, NetworkMode, NetworkSpec, OpenOptions, TemplateSpec, VmSpec};

fn open(dir: &std::path::Path, network: NetworkMode) -> Manager {
    Manager::open(dir, &OpenOptions { accel: Some(Accel::Tcg), network: Some(network), ..OpenOptions::default() }).expect("open")
}

fn time_starts(vman: &Manager, vm: &str, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        vman.start(vm).expect("start");
        total += t.elapsed();
        vman.force_stop(vm).expect("stop");
    }
    total
}

fn bench(c: &mut Criterion) {
    // SAFETY: unshare(2) with CLONE_NEWNET, before this process starts any
    // thread of its own, so every later thread and child inherits it.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("skipping: needs root for a network namespace ({})", std::io::Error::last_os_error());
        return;
    }
    assert!(Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("ip").success());
    let dir = tempfile::tempdir().expect("tempdir");
    let isolated = open(dir.path(), NetworkMode::Isolated);
    isolated.create_template(&TemplateSpec::new("t", 1, 128, 1)).expect("template");
    for (net, vlan) in [("warm", 100), ("cold", 200)] {
        isolated.create_network(&NetworkSpec::new(net, vlan, format!("10.{}.0.0/24", vlan / 10))).expect("network");
    }
    for (vm, net) in [("iso", "cold"), ("keeper", "warm"), ("w", "warm"), ("c", "cold")] {
        isolated.create_vm(&VmSpec::new(vm, "t").nic(net)).expect("vm");
    }
    let bridged = open(dir.path(), NetworkMode::Bridged);
    bridged.start("keeper").expect("keeper keeps VLAN 100 up");

    let mut group = c.benchmark_group("network");
    group.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    group.bench_function("start/isolated", |b| b.iter_custom(|n| time_starts(&isolated, "iso", n)));
    group.bench_function("start/bridged_warm", |b| b.iter_custom(|n| time_starts(&bridged, "w", n)));
    group.bench_function("start/bridged_cold", |b| b.iter_custom(|n| time_starts(&bridged, "c", n)));
    group.finish();
    bridged.force_stop("keeper").expect("stop keeper");
}

criterion_group!(benches, bench);
criterion_main!(benches);
