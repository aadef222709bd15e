//! Disk and image records: what callers ask for and what the store holds.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::name::validate_name;
pub use crate::storage::state::DiskState;

/// The largest disk or image accepted: 64 TiB (the template limit).
pub const MAX_DISK_BYTES: u64 = crate::template::MAX_DISK_GIB * GIB;
/// The smallest disk: one MiB (anything smaller is a typo, not a disk).
pub const MIN_DISK_BYTES: u64 = 1024 * 1024;
/// A VM may have at most this many disks attached (one PCIe root port each).
pub const MAX_DISKS: usize = 16;

pub(crate) const GIB: u64 = 1024 * 1024 * 1024;

/// How a disk's bytes are laid out in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// QEMU's copy-on-write format: sparse, snapshots, backing files.
    #[default]
    Qcow2,
    /// A plain image: byte for byte what the guest sees; no snapshots.
    Raw,
}

impl DiskFormat {
    /// Every format, in declaration order.
    pub const ALL: [DiskFormat; 2] = [DiskFormat::Qcow2, DiskFormat::Raw];

    /// `qcow2` or `raw`, as qemu-img and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DiskFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<DiskFormat> {
        DiskFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| Error::invalid("disk format", format!("{s:?} is not one of qcow2, raw")))
    }
}

// The state enum stays free of the error type (so errors can name
// states); parsing, which answers errors, lives here.
impl std::str::FromStr for DiskState {
    type Err = Error;

    fn from_str(s: &str) -> Result<DiskState> {
        DiskState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            Error::invalid(
                "disk state",
                format!("{s:?} is not one of creating, available, attaching, attached, detaching, deleting, error"),
            )
        })
    }
}

/// What a VM's firmware is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS, QEMU's default legacy BIOS.
    #[default]
    Bios,
    /// OVMF (UEFI), for images that boot only through an EFI system partition.
    Uefi,
}

impl Firmware {
    /// Every firmware, in declaration order.
    pub const ALL: [Firmware; 2] = [Firmware::Bios, Firmware::Uefi];

    /// `bios` or `uefi`.
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

impl std::str::FromStr for Firmware {
    type Err = Error;

    fn from_str(s: &str) -> Result<Firmware> {
        Firmware::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| Error::invalid("firmware", format!("{s:?} is not one of bios, uefi")))
    }
}

/// A new, empty disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// The disk's name, unique among disks (see [`validate_name`]).
    pub name: String,
    /// Its size in bytes, [`MIN_DISK_BYTES`]..=[`MAX_DISK_BYTES`], a multiple of 512.
    pub size_bytes: u64,
    /// Its format; qcow2 unless asked.
    #[serde(default)]
    pub format: DiskFormat,
}

impl DiskSpec {
    /// A qcow2 disk `name` of `size_bytes` bytes.
    pub fn new(name: impl Into<String>, size_bytes: u64) -> DiskSpec {
        DiskSpec { name: name.into(), size_bytes, format: DiskFormat::Qcow2 }
    }

    /// Sets the format.
    pub fn format(mut self, format: DiskFormat) -> DiskSpec {
        self.format = format;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("disk name", &self.name)?;
        check_size(self.size_bytes)
    }
}

pub(crate) fn check_size(size_bytes: u64) -> Result<()> {
    if !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(&size_bytes) {
        return Err(Error::invalid("disk size", format!("{size_bytes} bytes is outside {MIN_DISK_BYTES}..={MAX_DISK_BYTES}")));
    }
    if !size_bytes.is_multiple_of(512) {
        return Err(Error::invalid("disk size", format!("{size_bytes} bytes is not a multiple of 512")));
    }
    Ok(())
}

/// An existing image file made into a disk ([`Manager::import_disk`](crate::Manager::import_disk))
/// or registered as a base image ([`ImageSpec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    /// The new disk's or image's name.
    pub name: String,
    /// Absolute path of a regular file (not a device node, not through a
    /// symlink).
    pub source: String,
    /// Its format. `None`: probed, but an image that names a backing file
    /// is refused (it could make vman read any file on the host).
    #[serde(default)]
    pub format: Option<DiskFormat>,
    /// `true` (the default): the file is copied into the state directory.
    /// `false`: it is used where it is, and never removed by vman.
    #[serde(default = "yes")]
    pub copy: bool,
}

fn yes() -> bool {
    true
}

impl ImportSpec {
    /// Copies `source` in as `name`, its format probed.
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> ImportSpec {
        ImportSpec { name: name.into(), source: source.into(), format: None, copy: true }
    }

    /// Says the file's format instead of probing it.
    pub fn format(mut self, format: DiskFormat) -> ImportSpec {
        self.format = Some(format);
        self
    }

    /// Uses the file in place instead of copying it.
    pub fn in_place(mut self) -> ImportSpec {
        self.copy = false;
        self
    }
}

/// Which disks [`Manager::disks`](crate::Manager::disks) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFilter {
    /// Only disks attached to this VM (by name).
    #[serde(default)]
    pub vm: Option<String>,
    /// Only disks in this state.
    #[serde(default)]
    pub state: Option<DiskState>,
}

/// A stored disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Disk {
    /// The store's id, never reused.
    pub id: i64,
    /// Its name, unique among disks.
    pub name: String,
    /// qcow2 or raw.
    pub format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub size_bytes: u64,
    /// The file's absolute path.
    pub path: String,
    /// Whether vman owns the file (made or copied in; removed with the
    /// disk) or uses a caller's file in place (never removed).
    pub owned: bool,
    /// For a linked clone, the name of the base image under it.
    pub image: Option<String>,
    /// Where it is in its life.
    pub state: DiskState,
    /// The VM it is attached to, by name.
    pub vm: Option<String>,
    /// Its position on that VM, from 0; the guest's device order follows it.
    pub slot: Option<u32>,
    /// Made with its VM (a boot disk): deleted when the VM is.
    pub delete_with_vm: bool,
    /// Why the last operation on it failed, if it did.
    pub last_error: Option<String>,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The id of the VM it is attached to.
    #[serde(skip)]
    pub(crate) vm_id: Option<String>,
}

/// A base image to register in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The file and how to take it in; `file.name` is the image's name.
    pub file: ImportSpec,
    /// The guest OS, free text (`debian-12`).
    #[serde(default)]
    pub os: String,
    /// The guest architecture; only `x86_64` runs here.
    #[serde(default = "x86_64")]
    pub arch: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// The firmware VMs booted from it need.
    #[serde(default)]
    pub firmware: Firmware,
}

fn x86_64() -> String {
    "x86_64".into()
}

impl ImageSpec {
    /// Registers `source` as image `name` (copied in, format probed, BIOS boot).
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> ImageSpec {
        ImageSpec {
            file: ImportSpec::new(name, source),
            os: String::new(),
            arch: x86_64(),
            description: String::new(),
            firmware: Firmware::Bios,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("image name", &self.file.name)?;
        for (what, text) in [("OS", &self.os), ("description", &self.description)] {
            if text.len() > crate::template::MAX_DESCRIPTION_LEN || text.contains('\0') {
                return Err(Error::invalid(what, format!("must be at most {} bytes with no NUL", crate::template::MAX_DESCRIPTION_LEN)));
            }
        }
        if self.arch != "x86_64" {
            return Err(Error::invalid("architecture", format!("{:?}: only x86_64 guests run on this host", self.arch)));
        }
        Ok(())
    }
}

/// A base image of the catalogue. Its file is never written: VMs boot from
/// linked clones of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Image {
    /// The store's id, never reused.
    pub id: i64,
    /// Its name, unique among images.
    pub name: String,
    /// The guest OS, free text.
    pub os: String,
    /// The guest architecture.
    pub arch: String,
    /// Free text for people.
    pub description: String,
    /// qcow2 or raw.
    pub format: DiskFormat,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
    /// SHA-256 of the file as registered, lower-case hex.
    pub sha256: String,
    /// The firmware its VMs need.
    pub firmware: Firmware,
    /// The file's absolute path.
    pub path: String,
    /// Copied in (removed with the image) or used in place.
    pub owned: bool,
    /// When it was registered, in Unix milliseconds.
    pub created_at_ms: i64,
}

/// A stored snapshot of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Snapshot {
    /// The store's id, never reused.
    pub id: i64,
    /// The VM's name.
    pub vm: String,
    /// The snapshot's name, unique per VM.
    pub name: String,
    /// Taken while the VM ran: it holds the guest's memory too, and a
    /// revert of a running VM resumes it there.
    pub live: bool,
    /// `ready`, or an intent left by a crash: `creating`, `reverting`,
    /// `deleting`, `error`.
    pub state: String,
    /// When it was taken, in Unix milliseconds.
    pub created_at_ms: i64,
}
