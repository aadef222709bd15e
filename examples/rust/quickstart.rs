//! vman from Rust: a template, a VLAN network, two VMs with addresses, a
//! data disk, the live event stream and the history; with a kernel and an
//! initrd, one VM also boots and answers on its serial console.
//!
//! ```sh
//! cargo run -p vman-core --example quickstart [STATE_DIR [KERNEL INITRD]]
//! GUEST=$(tests/guest/build.sh)   # a small test guest, e.g.
//! cargo run -p vman-core --example quickstart /tmp/qs "$GUEST/vmlinuz" "$GUEST/initrd.img"
//! ```
//!
//! STATE_DIR defaults to a new directory under the system's temporary
//! directory. The example removes what it made, so it can run again on the
//! same directory. The guest must print `VMAN-GUEST-READY` or `login:` on
//! ttyS0 when it is up and run a shell there (the test guest does).

use std::time::Duration;

use vman_core::{BootSpec, DiskFilter, DiskSpec, Manager, NetworkSpec, NicSpec, OpenOptions, TemplateSpec, VmSpec, defaults};

fn main() -> vman_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map_or_else(|| std::env::temp_dir().join(format!("vman-quickstart-{}", std::process::id())), Into::into);
    let vman = Manager::open(&dir, &OpenOptions::default())?;
    println!("state directory {}", vman.state_dir().display());
    // Every change committed from now on, by any process, in order.
    let events = vman.subscribe()?;

    vman.create_template(&TemplateSpec::new("qs-small", 1, 256, 1))?;
    vman.create_network(&NetworkSpec::new("qs-lan", 3303, "10.33.3.0/24").reserve("10.33.3.2-10.33.3.9"))?;
    let mut web = VmSpec::new("qs-web", "qs-small").nic("qs-lan");
    if let [_, kernel, initrd] = args.as_slice() {
        web = web.boot(BootSpec::kernel(kernel.as_str()).initrd(initrd.as_str()).cmdline("console=ttyS0 quiet panic=-1"));
    }
    let web = vman.create_vm(&web)?;
    let db = vman.create_vm(&VmSpec::new("qs-db", "qs-small").with_nic(NicSpec::on("qs-lan").ip("10.33.3.100")))?;
    for vm in [&web, &db] {
        println!("{} {} {} {}", vm.name, vm.state, vm.nics[0].ip, vm.nics[0].mac);
    }
    for a in vman.allocations("qs-lan")? {
        println!("qs-lan: {} held by {} (NIC {})", a.ip, a.vm_name, a.nic_index);
    }

    // A sparse qcow2 disk; qs-db has no QEMU, so it joins at its next start.
    vman.create_disk(&DiskSpec::new("qs-data", 1 << 30))?;
    let data = vman.attach_disk("qs-db", "qs-data")?;
    let (vm, slot) = (data.vm.as_deref().unwrap_or("-"), data.slot.unwrap_or(0));
    println!("disk {}: {} bytes, attached to {vm} at slot {slot}", data.name, data.size_bytes);

    if web.boot.is_some() {
        let vm = vman.start("qs-web")?; // returns once QEMU answers; the guest boots on
        println!("qs-web {} (pid {}, {})", vm.state, vm.pid.unwrap_or(0), vm.accel.as_deref().unwrap_or("-"));
        vman.wait_for_console("qs-web", "VMAN-GUEST-READY|login:", Duration::from_secs(120))?;
        let mut console = vman.console("qs-web")?; // one client at a time
        console.write_all(b"uname -s\n", Duration::from_secs(10))?;
        let answer = console.read_until(r"(?m)^Linux", Duration::from_secs(30))?;
        println!("the guest says {:?}", String::from_utf8_lossy(&answer).lines().last().unwrap_or_default());
        drop(console); // lets the next client in
        let vm = vman.stop("qs-web", defaults::STOP_TIMEOUT)?; // ACPI power button, then forced
        println!("qs-web {}", vm.state);
    }

    for vm in ["qs-web", "qs-db"] {
        vman.delete_vm(vm, false)?; // releases its addresses, keeps its history
    }
    // A disk attached by the caller outlives its VM: it is available again.
    println!("disks left: {:?}", vman.disks(&DiskFilter::default())?.iter().map(|d| d.name.as_str()).collect::<Vec<_>>());
    vman.delete_disk("qs-data")?;
    vman.delete_network("qs-lan")?;
    vman.delete_template("qs-small")?;

    // The stream holds every event since `subscribe`, none dropped.
    while let Some(e) = events.next(Duration::ZERO)? {
        println!("event {} {} {} {}", e.id, e.object_kind.as_str(), e.object_name, e.action);
    }
    // A deleted VM's history stays, found by its id.
    for e in vman.vm_history(&web.id, defaults::HISTORY_LIMIT)? {
        println!("qs-web history: {} {}", e.action, e.details);
    }
    Ok(())
}
