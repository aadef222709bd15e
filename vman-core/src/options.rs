//! [`OpenOptions`]: how a process opens a state directory, each field
//! checked where it is set; and where the state directory is by default.
//!
//! Most fields are *requests* about the directory's [`Settings`]: `None`
//! takes what the directory keeps; a value is written into a directory
//! being made, and must equal what an existing one keeps.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::mode::NetworkMode;
use crate::runtime::Accel;
use crate::settings::model::{SettingKey, check_binary, check_qemu_user, check_serial_log_cap};

/// How to open a state directory.
///
/// The settings fields (`accel`, `network`, the binaries, `qemu_user`,
/// `serial_log_cap_bytes`) are requests: `None` (the default) takes the
/// value the directory keeps; a value becomes the directory's when
/// [`Manager::open`](crate::Manager::open) makes it, and is refused with
/// [`ErrorKind::SettingConflict`](crate::ErrorKind::SettingConflict) when
/// an existing directory keeps another (see [`Settings`](crate::Settings)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenOptions {
    /// How long a write waits for another thread's or process's write lock.
    /// This process's own, not a setting of the directory.
    pub busy_timeout_ms: u64,
    /// KVM, TCG, or `auto` (KVM only if a probe proves it runs guests).
    pub accel: Option<Accel>,
    /// The QEMU binary; looked up in `PATH` unless absolute.
    pub qemu_binary: Option<PathBuf>,
    /// The size at which each VM's serial log is rotated.
    pub serial_log_cap_bytes: Option<u64>,
    /// How NICs reach their networks: bridged (needs CAP_NET_ADMIN), user
    /// (QEMU's NAT), isolated, or auto. `auto` asks for nothing in
    /// particular: a new directory keeps bridged if this process has
    /// CAP_NET_ADMIN, else user; an existing one keeps its own.
    pub network: Option<NetworkMode>,
    /// The DHCP server of bridged networks; looked up in `PATH` unless absolute.
    pub dnsmasq_binary: Option<PathBuf>,
    /// The user QEMU runs as when the embedding process is root (see
    /// [`Settings::qemu_user`](crate::Settings::qemu_user)).
    pub qemu_user: Option<String>,
    /// Whether a missing state directory is made (the default). When false,
    /// opening a directory that holds no vman database is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and nothing is
    /// created: a mistyped path is refused rather than becoming a new,
    /// empty directory.
    pub create: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout_ms: 10_000,
            accel: None,
            qemu_binary: None,
            serial_log_cap_bytes: None,
            network: None,
            dnsmasq_binary: None,
            qemu_user: None,
            create: true,
        }
    }
}

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
        self.qemu_binary.as_deref().map_or(Ok(()), |p| check_binary("QEMU binary", p))?;
        self.serial_log_cap_bytes.map_or(Ok(()), check_serial_log_cap)?;
        self.dnsmasq_binary.as_deref().map_or(Ok(()), |p| check_binary("dnsmasq binary", p))?;
        self.qemu_user.as_deref().map_or(Ok(()), check_qemu_user)
    }

    /// The settings this opener asks for, as text in their keys' order
    /// (checked by [`validate`](Self::validate), not yet normalized).
    /// `network: auto` asks for nothing.
    pub(crate) fn requests(&self) -> Vec<(SettingKey, String)> {
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let asked = [
            (SettingKey::Network, self.network.filter(|m| *m != NetworkMode::Auto).map(|m| m.as_str().to_string())),
            (SettingKey::Accel, self.accel.map(|a| a.as_str().to_string())),
            (SettingKey::QemuBinary, self.qemu_binary.as_deref().map(text)),
            (SettingKey::DnsmasqBinary, self.dnsmasq_binary.as_deref().map(text)),
            (SettingKey::QemuUser, self.qemu_user.clone()),
            (SettingKey::SerialLogCapBytes, self.serial_log_cap_bytes.map(|b| b.to_string())),
        ];
        asked.into_iter().filter_map(|(key, value)| value.map(|v| (key, v))).collect()
    }

    /// Asks for [`accel`](Self::accel).
    pub fn set_accel(&mut self, accel: Accel) -> &mut Self {
        self.accel = Some(accel);
        self
    }

    /// Asks for [`network`](Self::network).
    pub fn set_network(&mut self, mode: NetworkMode) -> &mut Self {
        self.network = Some(mode);
        self
    }

    /// Sets [`create`](Self::create).
    pub fn set_create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Asks for [`qemu_user`](Self::qemu_user): a user that exists on this host.
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

    /// Asks for [`qemu_binary`](Self::qemu_binary): a non-empty UTF-8 path
    /// or program name.
    pub fn set_qemu_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("QEMU binary", &path)?;
        self.qemu_binary = Some(path);
        Ok(self)
    }

    /// Asks for [`serial_log_cap_bytes`](Self::serial_log_cap_bytes):
    /// [`MIN_SERIAL_LOG_CAP_BYTES`](crate::MIN_SERIAL_LOG_CAP_BYTES)..=[`MAX_SERIAL_LOG_CAP_BYTES`](crate::MAX_SERIAL_LOG_CAP_BYTES).
    pub fn set_serial_log_cap_bytes(&mut self, bytes: u64) -> Result<&mut Self> {
        check_serial_log_cap(bytes)?;
        self.serial_log_cap_bytes = Some(bytes);
        Ok(self)
    }

    /// Asks for [`dnsmasq_binary`](Self::dnsmasq_binary): a non-empty UTF-8
    /// path or program name.
    pub fn set_dnsmasq_binary(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        let path = path.into();
        check_binary("dnsmasq binary", &path)?;
        self.dnsmasq_binary = Some(path);
        Ok(self)
    }
}

fn check_busy_timeout_ms(ms: u64) -> Result<()> {
    if !(1..=MAX_BUSY_TIMEOUT_MS).contains(&ms) {
        return Err(Error::invalid("busy timeout", format!("{ms} ms is outside 1..={MAX_BUSY_TIMEOUT_MS} ms")));
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
