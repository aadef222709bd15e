//! What a guest is given to configure itself: SSH keys and the cloud-init seed.

pub(crate) mod seed;
