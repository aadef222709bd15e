//! What a guest is given to configure itself: its SSH keys and the
//! cloud-init NoCloud seed.

pub(crate) mod keys;
pub(crate) mod seed;
pub(crate) mod ssh_key;

use std::path::PathBuf;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::store;
use crate::vm::model::Vm;

/// Writes the VM's cloud-init seed for this start (so it always says what
/// the VM is now: its keys, addresses and user-data) and returns its path.
/// The instance id is the VM's id, so cloud-init's first-boot work runs once.
pub(crate) fn seed_for(ctx: &Inner, vm: &Vm) -> Result<PathBuf> {
    let mut nics = Vec::with_capacity(vm.nics.len());
    for nic in &vm.nics {
        let network =
            ctx.store().read(|tx| store::network_by_name(tx, &nic.network))?.ok_or_else(|| Error::not_found("network", &nic.network))?;
        nics.push(seed::SeedNic {
            mac: nic.mac,
            set_name: None,
            address: nic.ip,
            prefix_len: nic.prefix_len,
            gateway: nic.gateway,
            dns: network.dns,
        });
    }
    let config = seed::SeedConfig {
        instance_id: vm.id.clone(),
        hostname: seed::hostname_for(&vm.name),
        ssh_keys: vm.ssh_keys.iter().map(|k| k.public_key.clone()).collect(),
        user_data: vm.user_data.clone(),
        nics,
    };
    let files = seed::render(&config)?;
    let path = seed_path(ctx, &vm.id);
    seed::write_image(&path, &files)?;
    ctx.runtime().share_with_qemu(&path, false)?;
    Ok(path)
}

/// Where a VM's seed image is written.
pub(crate) fn seed_path(ctx: &Inner, vm_id: &str) -> PathBuf {
    ctx.state_dir().join("seeds").join(format!("{vm_id}.img"))
}
