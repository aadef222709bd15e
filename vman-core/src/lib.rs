//! vman: an embeddable virtual-machine manager.
//!
//! Open a state directory with [`Manager::open`], then define size
//! [templates](TemplateSpec), VLAN [networks](NetworkSpec) with automatic IP
//! allocation, and [VMs](VmSpec). All state lives in one SQLite database in
//! the state directory, shared safely by threads and processes.
//!
//! ```
//! use vman_core::{Manager, OpenOptions, TemplateSpec, NetworkSpec, VmSpec, NicSpec};
//!
//! # fn main() -> vman_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let vman = Manager::open(dir.path(), &OpenOptions::default())?;
//! vman.create_template(&TemplateSpec::new("small", 1, 512, 10))?;
//! vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24"))?;
//! let vm = vman.create_vm(
//!     &VmSpec::new("web1", "small").nic("lan").with_nic(NicSpec::on("lan").ip("10.100.0.50")),
//! )?;
//! assert_eq!(vm.nics[0].ip.to_string(), "10.100.0.2"); // first free after the gateway
//! assert_eq!(vm.nics[1].ip.to_string(), "10.100.0.50");
//! vman.delete_vm("web1", false)?; // releases both addresses
//! assert!(vman.allocations("lan")?.is_empty());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod batch;
mod cancel;
mod console;
mod context;
pub mod convert;
mod error;
mod event;
mod guest;
mod host;
mod manager;
mod name;
mod net;
mod options;
mod reconcile;
mod runtime;
mod settings;
mod storage;
mod store;
mod subscription;
mod sys;
mod template;
mod vm;

/// Low-level host networking (bridges, taps) that the runtime builds on;
/// public for embedders that manage their own interfaces, and for tests.
pub use net::linux as hostnet;

pub use batch::model::{Batch, BatchSpec, MAX_BATCH_SIZE};
pub use batch::state::BatchState;
pub use cancel::{CHECK_INTERVAL, Cancel};
pub use console::{CONSOLE_MATCH_MAX, CONSOLE_READ_MAX, CONSOLE_UNTIL_MAX, Console};
pub use error::{DatabaseError, Error, ErrorKind, Result};
pub use event::{Event, ObjectKind};
pub use guest::ssh_key::{MAX_COMMENT_LEN, MAX_PUBLIC_KEY_LEN, MAX_RSA_BITS, MAX_VM_SSH_KEYS, MIN_RSA_BITS, SshKey, SshKeyType, VmSshKey};
pub use host::health::{HealthCheck, HostHealth};
pub use host::stats::{HostStats, STATS_SAMPLE, VmStats};
pub use manager::{MAX_EVENT_LIMIT, Manager};
pub use name::{MAX_NAME_LEN, validate_name};
pub use net::mac::MacAddr;
pub use net::mode::NetworkMode;
pub use net::mode::SSH_PORT;
pub use net::model::{AddrRange, Network, NetworkSpec};
pub use options::{MAX_BUSY_TIMEOUT_MS, OpenOptions, default_state_dir};
pub use reconcile::{Drift, ReconcileReport};
pub use runtime::{Accel, DEFAULT_QEMU_USER};
pub use settings::model::{
    DEFAULT_DNSMASQ_BINARY, DEFAULT_QEMU_BINARY, DEFAULT_SERIAL_LOG_CAP_BYTES, MAX_SERIAL_LOG_CAP_BYTES, MIN_SERIAL_LOG_CAP_BYTES,
    SettingKey, Settings,
};
pub use storage::model::{
    Disk, DiskFilter, DiskFormat, DiskSpec, Firmware, Image, ImageSpec, ImportSpec, MAX_DISK_BYTES, MAX_DISKS, MIN_DISK_BYTES, Snapshot,
};
pub use storage::state::DiskState;
pub use subscription::EventStream;
pub use template::{Template, TemplateSpec};
pub use vm::model::{Allocation, BootSpec, Display, MAX_CMDLINE_LEN, MAX_NICS, Nic, NicSpec, PortForward, Vm, VmFilter, VmSpec};
pub use vm::state::VmState;

/// The values an API call takes when its caller does not say, the same in
/// every language: the C and Python façades read them from here.
pub mod defaults {
    use std::time::Duration;

    /// How long a graceful stop waits for the guest to power off before it
    /// is forced.
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
    /// How many bytes of a VM's console output a tail returns.
    pub const CONSOLE_TAIL_BYTES: usize = 64 * 1024;
    /// How long `wait_for_console` and `Console::read_until` wait.
    pub const CONSOLE_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
    /// How many events a history query returns.
    pub const HISTORY_LIMIT: u32 = 100;
    /// How long a detach from a running VM waits for the guest to release
    /// the disk.
    pub const DETACH_TIMEOUT: Duration = Duration::from_secs(30);
    /// The number of a batch's first VM.
    pub const BATCH_FIRST: u32 = 1;
}

/// vman's version, the same in the C header and the Python package.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn manager_is_send_and_sync() {
        assert_send_sync::<super::Manager>();
    }

    #[test]
    fn a_console_can_move_between_threads() {
        assert_send_sync::<super::Console>();
    }
}
