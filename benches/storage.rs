//! Storage against its reference, side by side in one run:
//!
//! - linked clone: `Manager::create_vm` of a VM whose boot disk is a linked
//!   clone of a registered image (two durable commits, the overlay, its
//!   permissions) against `qemu-img create -f qcow2 -F qcow2 -b base` of the
//!   same overlay alone. Interleaved A B A B…, so both see the same machine.
//!   Target: ≤ 1.1×.
//! - hot-plug latency: `Manager::attach_disk` on a running guest, from the
//!   call to the guest's kernel showing the disk in /sys/block (a shell loop
//!   in the guest polls for it and prints a line on the serial console),
//!   and `detach_disk` from the call to its return (the guest released it).
//!   Under TCG, so it measures guest speed as much as vman.
//!
//! Run: cargo bench -p vman-core --bench storage

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vman_core::{Accel, DiskSpec, ImageSpec, Manager, NetworkMode, OpenOptions, TemplateSpec, VmSpec};

const CLONES: usize = 60;
const PLUGS: usize = 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn spread(v: &[Duration]) -> (Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    (s[s.len() / 10], s[s.len() * 9 / 10])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn guest() -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/build.sh");
    let out = Command::new(script).output().expect("tests/guest/build.sh");
    assert!(out.status.success(), "guest build failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (dir.join("vmlinuz"), dir.join("initrd.img"))
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let options = OpenOptions { accel: Some(Accel::Tcg), network: Some(NetworkMode::Isolated), ..OpenOptions::default() };
    let m = Manager::open(dir.path().join("state"), &options).expect("open");
    m.create_template(&TemplateSpec::new("t", 1, 256, 1)).expect("template");

    // ---- linked clone ----------------------------------------------------
    let base = dir.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("256M").status().expect("qemu-img").success());
    let image = m.register_image(&ImageSpec::new("base", base.to_str().expect("utf-8"))).expect("register");
    let raw_overlay = dir.path().join("raw-overlay.qcow2");
    let (mut vman, mut raw) = (Vec::new(), Vec::new());
    for i in 0..CLONES {
        let t = Instant::now();
        m.create_vm(&VmSpec::new(format!("c{i}"), "t").image("base")).expect("create");
        vman.push(t.elapsed());
        m.delete_vm(&format!("c{i}"), false).expect("delete");

        let t = Instant::now();
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &image.path])
            .arg(&raw_overlay)
            .arg((1u64 << 30).to_string())
            .status()
            .expect("qemu-img")
            .success();
        raw.push(t.elapsed());
        assert!(ok);
        std::fs::remove_file(&raw_overlay).expect("rm");
    }
    // The first few of each warm caches; leave them out.
    let (vman, raw) = (vman[5..].to_vec(), raw[5..].to_vec());
    let (v, r) = (median(vman.clone()), median(raw.clone()));
    println!("linked clone, {} interleaved pairs:", vman.len());
    println!("  qemu-img create (overlay alone): median {} (p10 {}, p90 {})", ms(r), ms(spread(&raw).0), ms(spread(&raw).1));
    println!("  vman create_vm with a clone:     median {} (p10 {}, p90 {})", ms(v), ms(spread(&vman).0), ms(spread(&vman).1));
    println!("  ratio vman / qemu-img: {:.3} (target <= 1.1)", v.as_secs_f64() / r.as_secs_f64());

    // ---- hot-plug latency --------------------------------------------------
    let (kernel, initrd) = guest();
    let boot =
        vman_core::BootSpec::kernel(kernel.to_string_lossy()).initrd(initrd.to_string_lossy()).cmdline("console=ttyS0 quiet panic=-1");
    m.create_vm(&VmSpec::new("g", "t").boot(boot)).expect("vm");
    m.create_disk(&DiskSpec::new("hot", 64 << 20)).expect("disk");
    m.start("g").expect("start");
    m.wait_for_console("g", "^VMAN-GUEST-READY$", Duration::from_secs(120)).expect("boot");
    let (mut plug, mut unplug) = (Vec::new(), Vec::new());
    for _ in 0..PLUGS {
        let mut console = m.console("g").expect("console");
        let wait = Duration::from_secs(60);
        console.write_all(b"while [ ! -e /sys/block/vda ]; do :; done; echo PLUG-SEEN\n", wait).expect("write");
        // Let the loop start before the disk comes.
        console.read_until("while", wait).expect("echo");
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        m.attach_disk("g", "hot").expect("attach");
        console.read_until(r"(?m)^PLUG-SEEN", wait).expect("seen");
        plug.push(t.elapsed());
        drop(console);
        let t = Instant::now();
        m.detach_disk("g", "hot", Duration::from_secs(60)).expect("detach");
        unplug.push(t.elapsed());
    }
    m.force_stop("g").expect("stop");
    println!("hot-plug under TCG, {PLUGS} rounds:");
    println!(
        "  attach_disk call -> guest sees /sys/block/vda: median {} (p10 {}, p90 {})",
        ms(median(plug.clone())),
        ms(spread(&plug).0),
        ms(spread(&plug).1)
    );
    println!(
        "  detach_disk call -> guest released, call returns: median {} (p10 {}, p90 {})",
        ms(median(unplug.clone())),
        ms(spread(&unplug).0),
        ms(spread(&unplug).1)
    );
}
