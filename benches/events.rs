//! Live-event latency: from a commit to its delivery by
//! `EventStream::next`, for a writer in another thread of this process
//! (its own `Manager`) and for a writer in another process.
//!
//! The writer reads CLOCK_MONOTONIC (nanoseconds, one clock for every
//! process on the host) just before and just after each write
//! (`create_template`), and puts the "before" reading in the template's
//! name; the subscriber reads the clock when `next` returns the event. The
//! commit lies between the two readings, so
//! `delivered − after ≤ commit→delivery ≤ delivered − before`; both
//! bounds are reported. The writer waits 2 ms between writes, so each
//! event is measured on its own, not behind a queue. Target: ≤ 10 ms.
//!
//! Run: cargo bench -p vman-core --bench events

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vman_core::{EventStream, Manager, OpenOptions, TemplateSpec};

const WRITER_ENV: &str = "VMAN_BENCH_EVENTS_WRITER";
const N: usize = 500;
/// Leading samples left out (first statements prepared, caches cold).
const WARMUP: usize = 20;
const PAUSE: Duration = Duration::from_millis(2);

fn now_ns() -> i64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) }, 0);
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

fn open(dir: &Path) -> Manager {
    Manager::open(dir, &OpenOptions::default()).expect("open the state directory")
}

/// Writes `N` events; returns (index, before, after) per write.
fn write_events(vman: &Manager, tag: &str) -> Vec<(usize, i64, i64)> {
    (0..N)
        .map(|i| {
            let before = now_ns();
            vman.create_template(&TemplateSpec::new(format!("{tag}{i}-{before}"), 1, 256, 1)).expect("write");
            let after = now_ns();
            std::thread::sleep(PAUSE);
            (i, before, after)
        })
        .collect()
}

/// Reads `N` events written with `tag`; returns (index, before, delivered).
fn read_events(stream: &EventStream, tag: &str) -> Vec<(usize, i64, i64)> {
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let event = stream.next(Duration::from_secs(30)).expect("stream open").expect("an event within 30 s");
        let delivered = now_ns();
        let Some(rest) = event.object_name.strip_prefix(tag) else { continue };
        let (i, before) = rest.split_once('-').expect("tagged name");
        got.push((i.parse().expect("index"), before.parse().expect("timestamp"), delivered));
    }
    got
}

fn report(case: &str, writes: &[(usize, i64, i64)], reads: &[(usize, i64, i64)]) {
    let mut upper = Vec::new();
    let mut lower = Vec::new();
    let mut call = Vec::new();
    for (&(i, before, after), &(j, before_seen, delivered)) in writes.iter().zip(reads).skip(WARMUP) {
        assert_eq!((i, before), (j, before_seen), "events arrive in commit order");
        upper.push(delivered - before);
        lower.push(delivered - after);
        call.push(after - before);
    }
    let stats = |v: &mut Vec<i64>| {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        format!("median {:8.1} µs  p90 {:8.1} µs  p99 {:8.1} µs", at(0.5), at(0.9), at(0.99))
    };
    println!("{case}: {} events", upper.len());
    println!("  write call start → delivered (upper bound)   {}", stats(&mut upper));
    println!("  write call return → delivered (lower bound)  {}", stats(&mut lower));
    println!("  write call itself                            {}", stats(&mut call));
}

fn main() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        // The other process: write, then report the clock readings.
        let vman = open(Path::new(&dir));
        for (i, before, after) in write_events(&vman, "p") {
            println!("{i} {before} {after}");
        }
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let subscriber = open(dir.path());

    // Another thread of this process, with its own manager.
    let stream = subscriber.subscribe().expect("subscribe");
    let writer = open(dir.path());
    let thread = std::thread::spawn(move || write_events(&writer, "t"));
    let reads = read_events(&stream, "t");
    report("same process, another thread's manager", &thread.join().expect("writer thread"), &reads);

    // Another process.
    let stream = subscriber.subscribe().expect("subscribe");
    let child = Command::new(std::env::current_exe().expect("bench binary"))
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the writer process");
    let reads = read_events(&stream, "p");
    let out = child.wait_with_output().expect("writer process");
    assert!(out.status.success(), "writer process failed");
    let writes: Vec<(usize, i64, i64)> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|line| {
            let line = line.expect("line");
            let mut f = line.split(' ').map(|x| x.parse::<i64>().expect("number"));
            let mut next = || f.next().expect("field");
            (next() as usize, next(), next())
        })
        .collect();
    report("another process", &writes, &reads);
}
