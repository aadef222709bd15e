//! The operating system as vman uses it, in one place each: pidfds, what
//! `/proc` says about other processes, and running a helper program.

pub(crate) mod command;
pub(crate) mod pidfd;
pub(crate) mod proc;

pub(crate) use pidfd::{Pidfd, Reaped};
