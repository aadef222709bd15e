//! The operating system as vman uses it, in one place each: pidfds and what
//! `/proc` says about other processes.

pub(crate) mod pidfd;
pub(crate) mod proc;

pub(crate) use pidfd::{Pidfd, Reaped};
