//! [`Settings`] and [`SettingKey`]: what a state directory keeps for every
//! process that opens it, and how each value is checked. Pure: no store,
//! no host work beyond looking a user up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::net::mode::{NetworkMode, resolve_mode};
use crate::runtime::Accel;

/// The shortest serial log cap: rotation keeps half of it, and less than
/// a page of output is not worth keeping.
pub const MIN_SERIAL_LOG_CAP_BYTES: u64 = 4096;
/// The largest serial log cap (1 TiB): a cap is there so a chatty guest
/// cannot fill the disk; beyond this it is a unit mistake.
pub const MAX_SERIAL_LOG_CAP_BYTES: u64 = 1 << 40;
/// The serial log cap of a new state directory (4 MiB).
pub const DEFAULT_SERIAL_LOG_CAP_BYTES: u64 = 4 << 20;
/// The QEMU binary of a new state directory, looked up in `PATH`.
pub const DEFAULT_QEMU_BINARY: &str = "qemu-system-x86_64";
/// The dnsmasq binary of a new state directory, looked up in `PATH` and
/// the sbin directories.
pub const DEFAULT_DNSMASQ_BINARY: &str = "dnsmasq";

/// One setting of a state directory, named as the store, the C API, the
/// Python API and `vman settings set KEY VALUE` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKey {
    /// `network`: how NICs reach their networks ([`NetworkMode`]).
    Network,
    /// `accel`: KVM, TCG, or `auto` ([`Accel`]).
    Accel,
    /// `qemu_binary`: the QEMU program.
    QemuBinary,
    /// `dnsmasq_binary`: the DHCP server of bridged networks.
    DnsmasqBinary,
    /// `qemu_user`: who QEMU runs as when vman is root.
    QemuUser,
    /// `serial_log_cap_bytes`: the size at which a VM's serial log rotates.
    SerialLogCapBytes,
}

impl SettingKey {
    /// Every setting, in the order [`Settings::entries`] lists them.
    pub const ALL: [SettingKey; 6] = [
        SettingKey::Network,
        SettingKey::Accel,
        SettingKey::QemuBinary,
        SettingKey::DnsmasqBinary,
        SettingKey::QemuUser,
        SettingKey::SerialLogCapBytes,
    ];

    /// The key's name: `network`, `accel`, `qemu_binary`, `dnsmasq_binary`,
    /// `qemu_user` or `serial_log_cap_bytes`.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKey::Network => "network",
            SettingKey::Accel => "accel",
            SettingKey::QemuBinary => "qemu_binary",
            SettingKey::DnsmasqBinary => "dnsmasq_binary",
            SettingKey::QemuUser => "qemu_user",
            SettingKey::SerialLogCapBytes => "serial_log_cap_bytes",
        }
    }

    /// Whether a change must wait until no VM of the directory has a QEMU.
    /// The bridges, taps and DHCP servers of running VMs were made for the
    /// network mode and dnsmasq they started with, and their files and run
    /// directories belong to the QEMU user they run as; the other settings
    /// apply from each VM's next start.
    pub fn needs_no_running_vm(self) -> bool {
        matches!(self, SettingKey::Network | SettingKey::DnsmasqBinary | SettingKey::QemuUser)
    }

    /// The value a new state directory gets when its creator does not ask.
    /// `network` is `auto` resolved by this process: bridged with
    /// CAP_NET_ADMIN, else user.
    pub(crate) fn default_value(self) -> Result<String> {
        Ok(match self {
            SettingKey::Network => resolve_mode(NetworkMode::Auto).as_str().to_string(),
            SettingKey::Accel => Accel::Auto.as_str().to_string(),
            SettingKey::QemuBinary => DEFAULT_QEMU_BINARY.to_string(),
            SettingKey::DnsmasqBinary => DEFAULT_DNSMASQ_BINARY.to_string(),
            SettingKey::QemuUser => String::new(),
            SettingKey::SerialLogCapBytes => DEFAULT_SERIAL_LOG_CAP_BYTES.to_string(),
        })
    }

    /// Checks `value` for this key and gives the form the directory keeps
    /// (the one two values are compared in): `network` `auto` becomes the
    /// mode this process would use (bridged with CAP_NET_ADMIN, else user);
    /// a number loses its leading zeros; `qemu_user` must exist here (`""`
    /// is the default user).
    pub fn normalize(self, value: &str) -> Result<String> {
        Ok(match self {
            SettingKey::Network => resolve_mode(value.parse()?).as_str().to_string(),
            SettingKey::Accel => value.parse::<Accel>()?.as_str().to_string(),
            SettingKey::QemuBinary => {
                check_binary("QEMU binary", Path::new(value))?;
                value.to_string()
            }
            SettingKey::DnsmasqBinary => {
                check_binary("dnsmasq binary", Path::new(value))?;
                value.to_string()
            }
            SettingKey::QemuUser => {
                if !value.is_empty() {
                    check_qemu_user(value)?;
                }
                value.to_string()
            }
            SettingKey::SerialLogCapBytes => {
                let bytes = value
                    .parse::<u64>()
                    .map_err(|e| Error::invalid_because("serial log cap", format!("{value:?} is not a number of bytes"), e))?;
                check_serial_log_cap(bytes)?;
                bytes.to_string()
            }
        })
    }
}

impl std::fmt::Display for SettingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SettingKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<SettingKey> {
        SettingKey::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = SettingKey::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid("setting", format!("{s:?} is not one of {}", known.join(", ")))
        })
    }
}

/// The settings of a state directory: written when it is made (from its
/// creator's [`OpenOptions`](crate::OpenOptions), else the defaults), read
/// by every process that opens it, changed with
/// [`Manager::set_setting`](crate::Manager::set_setting).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Settings {
    /// How NICs reach their networks: bridged, user or isolated (never
    /// `auto`: that is resolved when the value is set).
    pub network: NetworkMode,
    /// KVM, TCG, or `auto` (KVM only if a probe proves it runs guests; the
    /// answer is cached per host boot).
    pub accel: Accel,
    /// The QEMU binary; looked up in `PATH` unless absolute.
    pub qemu_binary: PathBuf,
    /// The DHCP server of bridged networks; looked up in `PATH` unless absolute.
    pub dnsmasq_binary: PathBuf,
    /// The user QEMU runs as when vman is root. `None`: `vman-qemu` if that
    /// user exists, else `nobody`. QEMU never runs as root unless this
    /// names root. Ignored when vman is not root (QEMU then runs as vman's
    /// user).
    pub qemu_user: Option<String>,
    /// Each VM's serial log is rotated when it passes this size, so a chatty
    /// guest cannot fill the disk (at most ~1.5× this is kept per VM).
    pub serial_log_cap_bytes: u64,
}

impl Settings {
    /// The value of `key` as the directory keeps it and
    /// [`Manager::set_setting`](crate::Manager::set_setting) takes it
    /// (`qemu_user`: `""` for the default).
    pub fn get(&self, key: SettingKey) -> String {
        match key {
            SettingKey::Network => self.network.as_str().to_string(),
            SettingKey::Accel => self.accel.as_str().to_string(),
            SettingKey::QemuBinary => self.qemu_binary.to_string_lossy().into_owned(),
            SettingKey::DnsmasqBinary => self.dnsmasq_binary.to_string_lossy().into_owned(),
            SettingKey::QemuUser => self.qemu_user.clone().unwrap_or_default(),
            SettingKey::SerialLogCapBytes => self.serial_log_cap_bytes.to_string(),
        }
    }

    /// Every setting as `(key, value)`, in [`SettingKey::ALL`]'s order.
    pub fn entries(&self) -> Vec<(SettingKey, String)> {
        SettingKey::ALL.into_iter().map(|k| (k, self.get(k))).collect()
    }

    /// The settings the store holds. Keys this vman does not know (a newer
    /// one's) are left alone; a missing or unreadable value is a bug or a
    /// hand edit.
    pub(crate) fn from_stored(stored: &BTreeMap<String, String>) -> Result<Settings> {
        let value =
            |key: SettingKey| stored.get(key.as_str()).ok_or_else(|| Error::Internal(format!("the state directory has no setting {key}")));
        let unreadable = |key: SettingKey, e: Error| Error::Internal(format!("setting {key} of the state directory is unreadable: {e}"));
        let cap = value(SettingKey::SerialLogCapBytes)?;
        Ok(Settings {
            network: value(SettingKey::Network)?.parse().map_err(|e| unreadable(SettingKey::Network, e))?,
            accel: value(SettingKey::Accel)?.parse().map_err(|e| unreadable(SettingKey::Accel, e))?,
            qemu_binary: PathBuf::from(value(SettingKey::QemuBinary)?),
            dnsmasq_binary: PathBuf::from(value(SettingKey::DnsmasqBinary)?),
            qemu_user: Some(value(SettingKey::QemuUser)?.clone()).filter(|u| !u.is_empty()),
            serial_log_cap_bytes: cap
                .parse()
                .map_err(|_| unreadable(SettingKey::SerialLogCapBytes, Error::invalid("serial log cap", format!("{cap:?}"))))?,
        })
    }
}

pub(crate) fn check_qemu_user(user: &str) -> Result<()> {
    crate::runtime::check_user(user)
}

pub(crate) fn check_serial_log_cap(bytes: u64) -> Result<()> {
    if !(MIN_SERIAL_LOG_CAP_BYTES..=MAX_SERIAL_LOG_CAP_BYTES).contains(&bytes) {
        return Err(Error::invalid(
            "serial log cap",
            format!("{bytes} bytes is outside {MIN_SERIAL_LOG_CAP_BYTES}..={MAX_SERIAL_LOG_CAP_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A program's path or name: not empty, no NUL, UTF-8 (the store keeps it
/// as text).
pub(crate) fn check_binary(what: &'static str, path: &Path) -> Result<()> {
    let Some(text) = path.to_str() else {
        return Err(Error::invalid(what, "must be UTF-8"));
    };
    if text.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if text.contains('\0') {
        return Err(Error::invalid(what, "must not contain NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_an_unknown_key_names_the_known_ones() {
        for key in SettingKey::ALL {
            assert_eq!(key.as_str().parse::<SettingKey>().unwrap(), key);
        }
        let err = "acceleration".parse::<SettingKey>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("serial_log_cap_bytes"), "{err}");
    }

    #[test]
    fn values_are_checked_and_kept_in_one_form() {
        assert_eq!(SettingKey::Accel.normalize("tcg").unwrap(), "tcg");
        assert_eq!(SettingKey::SerialLogCapBytes.normalize("0065536").unwrap(), "65536");
        assert_eq!(SettingKey::QemuUser.normalize("").unwrap(), "");
        assert_eq!(SettingKey::Network.normalize("isolated").unwrap(), "isolated");
        // auto is never kept: it becomes what this process would use.
        assert_ne!(SettingKey::Network.normalize("auto").unwrap(), "auto");
        for (key, bad) in [
            (SettingKey::Accel, "hvf"),
            (SettingKey::Network, "nat"),
            (SettingKey::SerialLogCapBytes, "4095"),
            (SettingKey::SerialLogCapBytes, "-1"),
            (SettingKey::SerialLogCapBytes, "4 MiB"),
            (SettingKey::QemuBinary, ""),
            (SettingKey::DnsmasqBinary, "a\0b"),
            (SettingKey::QemuUser, "no-such-user-here"),
        ] {
            assert_eq!(key.normalize(bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{key} {bad:?}");
        }
    }

    #[test]
    fn stored_settings_read_back_as_they_were_written() {
        let settings = Settings {
            network: NetworkMode::User,
            accel: Accel::Tcg,
            qemu_binary: "/opt/qemu/bin/qemu-system-x86_64".into(),
            dnsmasq_binary: "dnsmasq".into(),
            qemu_user: None,
            serial_log_cap_bytes: 65536,
        };
        let stored: BTreeMap<String, String> = settings.entries().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();
        assert_eq!(Settings::from_stored(&stored).unwrap(), settings);
        let mut missing = stored.clone();
        missing.remove("accel");
        assert_eq!(Settings::from_stored(&missing).unwrap_err().kind(), crate::ErrorKind::Internal);
        let mut newer = stored;
        newer.insert("a_later_setting".into(), "x".into());
        assert_eq!(Settings::from_stored(&newer).unwrap(), settings, "keys of a newer vman are left alone");
    }
}
