//! The C ABI of vman over `vman-core`. cbindgen turns this crate into
//! `include/vman.h`; see that header for the conventions every function
//! follows (status returns, out-params, ownership, thread safety).
//!
//! One module per C "class". Every `extern "C"` body runs inside
//! `guard::call` or `guard::get`, so no panic crosses into C.

#[macro_use]
mod record;

mod batch;
mod cancel;
mod console;
mod disk;
mod error;
mod event;
mod guard;
mod host;
mod image;
mod lifecycle;
mod manager;
mod network;
mod reconcile;
mod settings;
mod snapshot;
mod ssh_key;
mod template;
mod vm;

use std::ffi::c_char;

pub use batch::*;
pub use cancel::*;
pub use console::*;
pub use disk::*;
pub use error::{VmanStatus, vman_last_error_message, vman_status_name};
pub use event::*;
pub use host::*;
pub use image::*;
pub use lifecycle::*;
pub use manager::*;
pub use network::*;
pub use reconcile::*;
pub use settings::*;
pub use snapshot::*;
pub use ssh_key::*;
pub use template::*;
pub use vm::*;

/// The items every `record!` declares, as source text for cbindgen, which
/// does not expand macros: the header test adds them to the crate's own.
/// Not part of the C ABI.
///
/// cbindgen:ignore
#[doc(hidden)]
pub const RECORD_ITEMS: &[&str] = &[
    template::VmanTemplate::HEADER,
    network::VmanNetwork::HEADER,
    network::VmanAllocation::HEADER,
    vm::VmanVm::HEADER,
    vm::VmanNic::HEADER,
    event::VmanEvent::HEADER,
    disk::VmanDisk::HEADER,
    image::VmanImage::HEADER,
    snapshot::VmanSnapshot::HEADER,
    reconcile::VmanReconcileReport::HEADER,
    ssh_key::VmanSshKey::HEADER,
    ssh_key::VmanVmSshKey::HEADER,
    settings::VmanSettings::HEADER,
    host::VmanHostStats::HEADER,
    host::VmanVmStats::HEADER,
    host::VmanHostHealth::HEADER,
    host::VmanHealthCheck::HEADER,
    batch::VmanBatch::HEADER,
    batch::VmanNames::HEADER,
];

/// The library's version, e.g. "0.1.0": static, never free it. Equal to the
/// header's VMAN_VERSION when header and library match. Thread-safe; never
/// fails, and does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn vman_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version contains NUL"),
    };
    VERSION.as_ptr()
}
