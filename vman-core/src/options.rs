//! [`OpenOptions`]: how a process opens a state directory, each field
//! checked where it is set; and where the state directory is by default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::mode::NetworkMode;
use crate::runtime::Accel;

/// How to open a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenOptions {
    /// How long a write waits for another thread's or process's write lock.
    pub busy_timeout_ms: u64,
    /// KVM, TCG, or `auto` (KVM only if a probe proves it runs guests).
    pub accel: Accel,
    /// The QEMU binary; looked up in `PATH` unless absolute.
    pub qemu_binary: PathBuf,
    /// Each VM's serial log is rotated when it passes this size, so a chatty
    /// guest cannot fill the disk (at most ~1.5× this is kept per VM).
    pub serial_log_cap_bytes: u64,
    /// How NICs reach their networks: bridged (needs CAP_NET_ADMIN), user
    /// (QEMU's NAT), isolated, or auto (bridged if privileged, else user).
    pub network: NetworkMode,
    /// The DHCP server of bridged networks; looked up in `PATH` unless absolute.
    pub dnsmasq_binary: PathBuf,
    /// The user QEMU runs as when the embedding process is root. `None`:
    /// `vman-qemu` if that user exists, else `nobody`. QEMU never runs as
    /// root unless this names root. Ignored when vman is not root (QEMU then
    /// runs as the embedding process's user).
    pub qemu_user: Option<String>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout_ms: 10_000,
            accel: Accel::Auto,
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            serial_log_cap_bytes: 4 << 20,
            network: NetworkMode::Auto,
            dnsmasq_binary: PathBuf::from("dnsmasq"),
            qemu_user: None,
        }
    }
}

/// The shortest serial log cap: rotation keeps half of it, and less than
/// a page of output is not worth keeping.
pub const MIN_SERIAL_LOG_CAP_BYTES: u64 = 4096;
/// The largest serial log cap (1 TiB): a cap is there so a chatty guest
/// cannot fill the disk; beyond this it is a unit mistake.
pub const MAX_SERIAL_LOG_CAP_BYTES: u64 = 1 << 40;
/// The longest busy timeout (an hour). Zero is refused too: it would make
/// every write fail as soon as another thread or process writes.
pub const MAX_BUSY_TIMEOUT_MS: u64 = 3_600_000;

impl OpenOptions {
    /// Checks every field, as [`Manager::open`](crate::Manager::open) does
    /// before it touches the disk. The `set_*` methods check one field each,
    /// so a bad value is refused where it is given (the C option setters use
    /// them).
    pub fn validate(&self) -> Result<()> {
        check_busy_timeout_ms(self.busy_timeout_ms)?;
        check_binary("QEMU binary", &self.qemu_binary)?;
        check_serial_log_cap(self.serial_log_cap_bytes)?;
        check_binary("dnsmasq binary", &self.dnsmasq_binary)?;
        self.qemu_user.as_deref().map_or(Ok(()), check_qemu_user)
    }

    /// Sets [`qemu_user`](Self::qemu_user): a user that exists on this host.
    pub fn set_qemu_user(&mut self, user: &str) -> Result<&mut Self> {
        check_qemu_user(user)?;
        self.qemu_user = Some(user.to_string());
        Ok(self)
    }

    /// Sets [`busy_timeout_ms`](Self::busy_timeout_ms): 1..=[`MAX_BUSY_TIMEOUT_MS`].
    pub fn set_busy_timeout_ms(&mut self, ms: u64) -> Result<&mut Self> {
        check_busy_timeout_ms(ms)?;
        self.busy_timeout_ms = ms;
        Ok(self)
    }

    /// Sets [`qemu_binary`](Self::qemu_binary): a non-empty path or program name.
    pub fn set_qemu_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("QEMU binary", &path)?;
        self.qemu_binary = path;
        Ok(self)
    }

    /// Sets [`serial_log_cap_bytes`](Self::serial_log_cap_bytes):
    /// [`MIN_SERIAL_LOG_CAP_BYTES`]..=[`MAX_SERIAL_LOG_CAP_BYTES`].
    pub fn set_serial_log_cap_bytes(&mut self, bytes: u64) -> Result<&mut Self> {
        check_serial_log_cap(bytes)?;
        self.serial_log_cap_bytes = bytes;
        Ok(self)
    }

    /// Sets [`dnsmasq_binary`](Self::dnsmasq_binary): a non-empty path or program name.
    pub fn set_dnsmasq_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("dnsmasq binary", &path)?;
        self.dnsmasq_binary = path;
        Ok(self)
    }
}

fn check_qemu_user(user: &str) -> Result<()> {
    crate::runtime::check_user(user)
}

fn check_busy_timeout_ms(ms: u64) -> Result<()> {
    if !(1..=MAX_BUSY_TIMEOUT_MS).contains(&ms) {
        return Err(Error::invalid("busy timeout", format!("{ms} ms is outside 1..={MAX_BUSY_TIMEOUT_MS} ms")));
    }
    Ok(())
}

fn check_serial_log_cap(bytes: u64) -> Result<()> {
    if !(MIN_SERIAL_LOG_CAP_BYTES..=MAX_SERIAL_LOG_CAP_BYTES).contains(&bytes) {
        return Err(Error::invalid(
            "serial log cap",
            format!("{bytes} bytes is outside {MIN_SERIAL_LOG_CAP_BYTES}..={MAX_SERIAL_LOG_CAP_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_binary(what: &'static str, path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if bytes.contains(&0) {
        return Err(Error::invalid(what, "must not contain NUL"));
    }
    Ok(())
}

/// Where vman keeps state when the embedding program names no directory:
/// `$VMAN_STATE_DIR`, else `/var/lib/vman` for root, else
/// `$XDG_STATE_HOME/vman`, else `~/.local/state/vman`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMAN_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/vman");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("vman");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/vman")
}
