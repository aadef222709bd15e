//! Virtual machines: their records (`model`), the state machine (`state`),
//! and their lifecycle on real QEMU (`lifecycle`).

pub(crate) mod lifecycle;
pub(crate) mod model;
pub(crate) mod qemu;
pub(crate) mod recover;
pub(crate) mod state;
