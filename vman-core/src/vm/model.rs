//! VM records: what a VM is made of, independent of whether QEMU runs it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::guest::ssh_key::VmSshKey;
use crate::name::validate_name;
use crate::net::mac::MacAddr;
use crate::net::model::parse_ipv4;
use crate::storage::model::Firmware;
use crate::vm::state::VmState;

/// A VM may have at most this many NICs (PCI slots left after the basics).
pub const MAX_NICS: usize = 16;

/// What to create a VM from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The VM's name, unique among live VMs (see [`validate_name`]).
    pub name: String,
    /// Name of the size template.
    pub template: String,
    /// Its NICs, at most [`MAX_NICS`]; the first gets slot 0.
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// What the VM boots directly. Without one, its firmware boots from
    /// its first disk (or its CD-ROM, see `boot_from_cdrom`).
    #[serde(default)]
    pub boot: Option<BootSpec>,
    /// A registered image the VM boots from: it gets a boot disk that is a
    /// linked clone of it, sized by the template.
    #[serde(default)]
    pub image: Option<String>,
    /// Without an image: give the VM an empty boot disk of the template's
    /// size (to install an OS onto from a CD-ROM).
    #[serde(default)]
    pub blank_disk: bool,
    /// The firmware; by default the image's, else BIOS.
    #[serde(default)]
    pub firmware: Option<Firmware>,
    /// An ISO in the VM's CD-ROM drive (absolute path; a regular file).
    #[serde(default)]
    pub cdrom: Option<String>,
    /// Boot from the CD-ROM before the disk (installs).
    #[serde(default)]
    pub boot_from_cdrom: bool,
    /// A graphical console; off by default.
    #[serde(default)]
    pub display: Display,
    /// Give the guest a cloud-init NoCloud seed (hostname, SSH keys, its
    /// addresses) at each start.
    #[serde(default)]
    pub cloud_init: bool,
    /// The caller's own `#cloud-config` user-data, merged into the seed's.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Names of SSH keys of the catalogue to give the VM, at most
    /// [`MAX_VM_SSH_KEYS`](crate::MAX_VM_SSH_KEYS), each once; the VM keeps its own copies.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

impl VmSpec {
    /// A VM named `name` with the sizes of template `template`, no NIC and
    /// no boot source.
    pub fn new(name: impl Into<String>, template: impl Into<String>) -> VmSpec {
        VmSpec { name: name.into(), template: template.into(), ..VmSpec::default() }
    }

    /// Boots `kernel` directly (QEMU's `-kernel`), with an optional initrd
    /// and kernel command line.
    pub fn boot(mut self, boot: BootSpec) -> VmSpec {
        self.boot = Some(boot);
        self
    }

    /// Boots from a linked clone of the registered image `image`.
    pub fn image(mut self, image: impl Into<String>) -> VmSpec {
        self.image = Some(image.into());
        self
    }

    /// Puts the ISO at `iso` in the CD-ROM drive.
    pub fn cdrom(mut self, iso: impl Into<String>) -> VmSpec {
        self.cdrom = Some(iso.into());
        self
    }

    /// Gives the guest a cloud-init seed, with the caller's `user_data`
    /// (`#cloud-config`) merged in if given.
    pub fn cloud_init(mut self, user_data: Option<String>) -> VmSpec {
        self.cloud_init = true;
        self.user_data = user_data;
        self
    }

    /// Adds a NIC with an automatically allocated address and MAC.
    pub fn nic(mut self, network: impl Into<String>) -> VmSpec {
        self.nics.push(NicSpec::on(network));
        self
    }

    /// Adds a NIC as `nic` describes it (e.g. with a fixed address or MAC).
    pub fn with_nic(mut self, nic: NicSpec) -> VmSpec {
        self.nics.push(nic);
        self
    }

    /// Gives the VM the SSH key named `key` of the catalogue.
    pub fn ssh_key(mut self, key: impl Into<String>) -> VmSpec {
        self.ssh_keys.push(key.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<Vec<ParsedNic>> {
        validate_name("VM name", &self.name)?;
        validate_name("template name", &self.template)?;
        if self.nics.len() > MAX_NICS {
            return Err(Error::invalid("NICs", format!("{} given; at most {MAX_NICS}", self.nics.len())));
        }
        if let Some(boot) = &self.boot {
            boot.validate()?;
        }
        if let Some(image) = &self.image {
            validate_name("image name", image)?;
            if self.blank_disk {
                return Err(Error::invalid("boot disk", "a VM boots from an image or a blank disk, not both"));
            }
        }
        if let Some(iso) = &self.cdrom {
            crate::storage::path::open_source("CD-ROM image", iso)?;
        }
        if self.boot_from_cdrom && self.cdrom.is_none() {
            return Err(Error::invalid("boot order", "booting from the CD-ROM needs an ISO in it"));
        }
        if let Some(user_data) = &self.user_data {
            if !self.cloud_init {
                return Err(Error::invalid("user-data", "user-data is given to the guest through cloud-init; ask for cloud_init too"));
            }
            crate::guest::seed::validate_user_data(user_data)?;
        }
        crate::guest::ssh_key::validate_key_names(&self.ssh_keys)?;
        let parsed = self.nics.iter().map(NicSpec::parse).collect::<Result<Vec<_>>>()?;
        for (i, a) in parsed.iter().enumerate() {
            for b in &parsed[i + 1..] {
                if a.mac.is_some() && a.mac == b.mac {
                    return Err(Error::invalid("MAC address", "two NICs of one VM ask for the same MAC"));
                }
                if a.network == b.network && a.ip.is_some() && a.ip == b.ip {
                    return Err(Error::invalid("IP address", "two NICs of one VM ask for the same address"));
                }
            }
        }
        Ok(parsed)
    }
}

/// The longest kernel command line accepted (x86's COMMAND_LINE_SIZE).
pub const MAX_CMDLINE_LEN: usize = 2048;

/// Direct kernel boot: QEMU loads the kernel (and initrd) itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Absolute path of the kernel image on the host.
    pub kernel: String,
    /// Absolute path of the initial ramdisk, if any.
    #[serde(default)]
    pub initrd: Option<String>,
    /// The kernel command line: at most [`MAX_CMDLINE_LEN`] bytes, no NUL.
    #[serde(default)]
    pub cmdline: String,
}

impl BootSpec {
    /// Boots the kernel image at `kernel` (an absolute host path), with no
    /// initrd and an empty command line.
    pub fn kernel(kernel: impl Into<String>) -> BootSpec {
        BootSpec { kernel: kernel.into(), initrd: None, cmdline: String::new() }
    }

    /// A boot source from optional parts, as callers with keyword arguments
    /// pass them: none at all means no direct boot; an initrd or command
    /// line without a kernel is refused.
    pub fn from_parts(kernel: Option<String>, initrd: Option<String>, cmdline: Option<String>) -> Result<Option<BootSpec>> {
        match (kernel, initrd, cmdline) {
            (Some(kernel), initrd, cmdline) => Ok(Some(BootSpec { kernel, initrd, cmdline: cmdline.unwrap_or_default() })),
            (None, None, None) => Ok(None),
            (None, _, _) => Err(Error::invalid("boot", "an initrd or command line needs a kernel")),
        }
    }

    /// Adds the initial ramdisk at `initrd` (an absolute host path).
    pub fn initrd(mut self, initrd: impl Into<String>) -> BootSpec {
        self.initrd = Some(initrd.into());
        self
    }

    /// Sets the kernel command line (at most [`MAX_CMDLINE_LEN`] bytes, no NUL).
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> BootSpec {
        self.cmdline = cmdline.into();
        self
    }

    fn validate(&self) -> Result<()> {
        check_boot_file("kernel", &self.kernel)?;
        if let Some(initrd) = &self.initrd {
            check_boot_file("initrd", initrd)?;
        }
        if self.cmdline.len() > MAX_CMDLINE_LEN || self.cmdline.contains('\0') {
            return Err(Error::invalid("kernel command line", format!("must be at most {MAX_CMDLINE_LEN} bytes with no NUL")));
        }
        Ok(())
    }
}

fn check_boot_file(what: &'static str, path: &str) -> Result<()> {
    let p = std::path::Path::new(path);
    if !p.is_absolute() || path.contains('\0') {
        return Err(Error::invalid(what, format!("{path:?} must be an absolute path")));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Error::invalid(what, format!("{path} is not a regular file"))),
        Err(e) => Err(Error::invalid_because(what, format!("{path} cannot be read"), e)),
    }
}

/// One NIC of a [`VmSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The name of the network the NIC joins.
    pub network: String,
    /// A fixed address; allocated automatically when absent.
    #[serde(default)]
    pub ip: Option<String>,
    /// A fixed MAC; generated under 52:54:00 when absent.
    #[serde(default)]
    pub mac: Option<String>,
}

impl NicSpec {
    /// A NIC on network `network`, its address and MAC chosen by vman.
    pub fn on(network: impl Into<String>) -> NicSpec {
        NicSpec { network: network.into(), ip: None, mac: None }
    }

    /// Asks for address `ip` (a dotted quad): a free host of the network
    /// that is neither its gateway nor reserved.
    pub fn ip(mut self, ip: impl Into<String>) -> NicSpec {
        self.ip = Some(ip.into());
        self
    }

    /// Asks for MAC `mac` (`aa:bb:cc:dd:ee:ff`, unicast, not zero), which no
    /// other NIC in the store may have.
    pub fn mac(mut self, mac: impl Into<String>) -> NicSpec {
        self.mac = Some(mac.into());
        self
    }

    fn parse(&self) -> Result<ParsedNic> {
        validate_name("network name", &self.network)?;
        Ok(ParsedNic {
            network: self.network.clone(),
            ip: self.ip.as_deref().map(|s| parse_ipv4("IP address", s)).transpose()?,
            mac: self.mac.as_deref().map(MacAddr::parse_unicast).transpose()?,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedNic {
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
}

/// Which VMs [`crate::Manager::vms`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmFilter {
    /// Only VMs in this state; `None` for any. Deleted VMs are never listed.
    #[serde(default)]
    pub state: Option<VmState>,
    /// Only VMs whose name starts with this, compared byte for byte
    /// (case-sensitive); `None` for any name.
    #[serde(default)]
    pub name_prefix: Option<String>,
}

/// A stored VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Vm {
    /// A UUIDv7: unique forever, sorts by creation time.
    pub id: String,
    /// The VM's name, unique among live VMs; freed when it is deleted.
    pub name: String,
    /// The template it was made from; its sizes are copied into the VM, so a
    /// later template change does not resize a VM behind its back.
    pub template: String,
    /// Virtual CPUs, 1..=255, copied from the template.
    pub vcpus: u32,
    /// Guest memory in MiB, 16..=4 Mi (4 TiB), copied from the template.
    pub memory_mib: u64,
    /// Root disk size in GiB, 1..=64 Ki (64 TiB), copied from the template.
    pub disk_gib: u64,
    /// Where the VM is in its lifecycle.
    pub state: VmState,
    /// Its NICs in slot order: `nics[i].index == i`.
    pub nics: Vec<Nic>,
    /// What QEMU boots directly; `None`: its firmware looks for a disk.
    pub boot: Option<BootSpec>,
    /// The QEMU process id while the VM has one.
    pub pid: Option<u32>,
    /// The accelerator QEMU runs (or last ran) with: `kvm` or `tcg`.
    pub accel: Option<String>,
    /// Why the last start failed or QEMU died, if it did.
    pub last_error: Option<String>,
    /// Host ports forwarded to the guest (user-mode networking), while it runs.
    pub port_forwards: Vec<PortForward>,
    /// SeaBIOS or OVMF.
    pub firmware: Firmware,
    /// The ISO in its CD-ROM drive, if any.
    pub cdrom: Option<String>,
    /// Whether it boots from the CD-ROM before its disk.
    pub boot_from_cdrom: bool,
    /// Its graphical console.
    pub display: Display,
    /// Where its VNC server listens while it runs: `unix:<path>` or
    /// `127.0.0.1:<port>`.
    pub display_address: Option<String>,
    /// Whether it gets a cloud-init seed.
    pub cloud_init: bool,
    /// The caller's own user-data merged into the seed.
    pub user_data: Option<String>,
    /// Its own copies of the SSH keys it was given, in the order given.
    pub ssh_keys: Vec<VmSshKey>,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
    /// When its state last changed (at first, when it was created), in
    /// Unix milliseconds.
    pub updated_at_ms: i64,
}

/// A VM's graphical console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Display {
    /// None: the serial console only.
    #[default]
    None,
    /// VNC on a unix socket in the VM's run directory.
    VncUnix,
    /// VNC on 127.0.0.1, on a free port chosen at each start.
    VncTcp,
}

impl Display {
    /// Every display, in declaration order.
    pub const ALL: [Display; 3] = [Display::None, Display::VncUnix, Display::VncTcp];

    /// `none`, `vnc-unix` or `vnc-tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Display::None => "none",
            Display::VncUnix => "vnc-unix",
            Display::VncTcp => "vnc-tcp",
        }
    }
}

impl std::str::FromStr for Display {
    type Err = Error;

    fn from_str(s: &str) -> Result<Display> {
        Display::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| Error::invalid("display", format!("{s:?} is not one of none, vnc-unix, vnc-tcp")))
    }
}

/// A NIC of a stored VM, with its allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Nic {
    /// Position on the VM, from 0; the guest sees NICs in this order.
    pub index: u32,
    /// The name of its network.
    pub network: String,
    /// The network's 802.1Q VLAN id, 1..=4094.
    pub vlan: u16,
    /// Its address, held on the network until the VM is deleted.
    pub ip: Ipv4Addr,
    /// The network's prefix length, 8..=30: the guest's netmask.
    pub prefix_len: u8,
    /// The network's gateway: the guest's default route.
    pub gateway: Ipv4Addr,
    /// Its MAC address, unique in the store.
    pub mac: MacAddr,
    /// The host interface (tap) of this NIC while the VM runs bridged.
    pub host_interface: Option<String>,
}

/// A host port that reaches a guest port (user-mode networking).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PortForward {
    /// The [`index`](Nic::index) of the NIC whose user-mode network
    /// carries the forward.
    pub nic_index: u32,
    /// The TCP port in the guest ([`SSH_PORT`](crate::SSH_PORT)).
    pub guest_port: u16,
    /// Always 127.0.0.1: forwards are reachable from this host only.
    pub host_address: Ipv4Addr,
    /// The TCP port on `host_address`, picked from the free ones at each
    /// start; no two forwards share one.
    pub host_port: u16,
}

/// Who holds an address of a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Allocation {
    /// The network's name.
    pub network: String,
    /// The address held.
    pub ip: Ipv4Addr,
    /// The MAC of the NIC that holds it.
    pub mac: MacAddr,
    /// The holding VM's id (see [`Vm::id`]).
    pub vm_id: String,
    /// The holding VM's name.
    pub vm_name: String,
    /// The holding NIC's [`index`](Nic::index) on its VM.
    pub nic_index: u32,
}

// The state machine (`vm::state`) stays free of the error type, so the error
// type can name states; the checks that answer errors live here.
impl crate::vm::state::VmState {
    /// The check every state change in vman goes through.
    pub(crate) fn check_transition(self, to: VmState, vm: &str) -> Result<()> {
        if self.can_become(to) { Ok(()) } else { Err(Error::InvalidTransition { vm: vm.to_string(), from: self, to }) }
    }
}

impl std::str::FromStr for crate::vm::state::VmState {
    type Err = Error;

    fn from_str(s: &str) -> Result<crate::vm::state::VmState> {
        crate::vm::state::VmState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            Error::invalid("VM state", format!("{s:?} is not one of created, starting, running, paused, stopping, stopped, error, deleted"))
        })
    }
}
