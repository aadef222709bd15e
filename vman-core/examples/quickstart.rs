//! A template, a VLAN network and two VMs with addresses, then the history.
//! Run: cargo run -p vman-core --example quickstart [STATE_DIR]

use vman_core::{Manager, NetworkSpec, NicSpec, OpenOptions, TemplateSpec, VmSpec};

fn main() -> vman_core::Result<()> {
    let dir = std::env::args().nth(1).map_or_else(|| std::env::temp_dir().join("vman-quickstart"), Into::into);
    let vman = Manager::open(&dir, &OpenOptions::default())?;
    for vm in ["qs-web", "qs-db"] {
        if vman.vm(vm).is_ok() {
            vman.delete_vm(vm, false)?;
        }
    }
    if vman.template("qs-small").is_err() {
        vman.create_template(&TemplateSpec::new("qs-small", 1, 512, 10))?;
    }
    if vman.network("qs-lan").is_err() {
        vman.create_network(&NetworkSpec::new("qs-lan", 3200, "10.32.0.0/24"))?;
    }
    let web = vman.create_vm(&VmSpec::new("qs-web", "qs-small").nic("qs-lan"))?;
    let db = vman.create_vm(&VmSpec::new("qs-db", "qs-small").with_nic(NicSpec::on("qs-lan").ip("10.32.0.100")))?;
    for vm in [&web, &db] {
        println!("{} {} {} {}", vm.name, vm.state, vm.nics[0].ip, vm.nics[0].mac);
    }
    for event in vman.recent_events(5)? {
        println!("{} {} {} {}", event.object_kind.as_str(), event.object_name, event.action, event.details);
    }
    Ok(())
}
