//! What the runtime benches share: their result series (the issue-11 JSON
//! lines and a printed table) and the clean-up of their QEMUs (included by
//! path from benches/runtime.rs and benches/runtime_scale.rs).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// One measured series, as one JSON line of `$VMAN_BENCH_OUT`.
pub struct Series {
    pub imp: &'static str,
    pub bench: &'static str,
    pub params: serde_json::Value,
    /// "s" or "bytes".
    pub unit: &'static str,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn new(bench: &'static str, imp: &'static str, params: serde_json::Value, unit: &'static str) -> Series {
        Series { imp, bench, params, unit, samples: Vec::new() }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// Appends every series to `$VMAN_BENCH_OUT` (when set) and prints a table.
pub fn emit(all: &[Series]) {
    if let Some(path) = std::env::var_os("VMAN_BENCH_OUT") {
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open VMAN_BENCH_OUT");
        for s in all {
            let line = serde_json::json!({"bench": s.bench, "impl": s.imp, "params": s.params, "unit": s.unit, "samples": s.samples});
            writeln!(out, "{line}").expect("write VMAN_BENCH_OUT");
        }
    }
    println!("{:<26} {:<10} {:<30} {:>6} {:>14} {:>14} {:>14}", "bench", "impl", "params", "n", "median", "min", "max");
    for s in all {
        let (scale, unit) = if s.unit == "s" { (1e3, "ms") } else { (1.0 / 1024.0, "KiB") };
        let min = s.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<26} {:<10} {:<30} {:>6} {:>11.3} {unit:<3}{:>11.3} {unit:<3}{:>11.3} {unit}",
            s.bench,
            s.imp,
            s.params.to_string(),
            s.samples.len(),
            median(&s.samples) * scale,
            min * scale,
            max * scale
        );
    }
}

/// Kills, on drop, every process whose command line contains `needle` (a
/// path inside the bench's own state directory): a bench that fails
/// half-way leaves no QEMU behind.
pub struct Cleanup(pub String);

impl Cleanup {
    /// Everything under `dir`.
    pub fn under(dir: PathBuf) -> Cleanup {
        Cleanup(format!("{}/", dir.display()))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if pid as u32 != std::process::id() && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&self.0) {
                // SAFETY: kill(2) on a process proven to be this bench's.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
