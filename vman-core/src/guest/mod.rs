//! What vman tells a guest about itself: its SSH keys and the cloud-init
//! NoCloud seed.

pub(crate) mod keys;
pub(crate) mod ssh_key;

use std::path::PathBuf;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::vm::model::Vm;

/// Writes the VM's cloud-init seed for this start and returns its path.
pub(crate) fn seed_for(ctx: &Inner, vm: &Vm) -> Result<PathBuf> {
    let _ = ctx;
    Err(Error::Unsupported { what: format!("cloud-init seeds (VM {:?}) are not built yet", vm.name), source: None })
}
