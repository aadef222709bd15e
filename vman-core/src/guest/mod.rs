//! Guest configuration: what a VM's guest is given (its SSH keys).

pub(crate) mod keys;
pub(crate) mod ssh_key;
