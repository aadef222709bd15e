//! QEMU's argument vector for a VM. A pure function: no shell, no I/O, so
//! every choice here is visible in a unit test.

use std::ffi::OsString;

use std::path::PathBuf;

use serde_json::json;

use crate::runtime::Accel;
use crate::runtime::paths::RunPaths;
use crate::storage::devices::{blockdev, device, root_ports};
use crate::storage::model::Disk;
use crate::vm::model::Display;
use crate::vm::model::Vm;

/// How a NIC reaches a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NicBackend {
    /// A hub of its own: the guest sees the NIC, nothing is on the wire.
    Isolated,
    /// A persistent tap on the VLAN's bridge.
    Tap { ifname: String },
    /// QEMU's user-mode NAT on the NIC's own subnet, giving the guest its
    /// allocated address by DHCP; `forwards` are (host port, guest port).
    User { net: ipnet::Ipv4Net, host: std::net::Ipv4Addr, guest: std::net::Ipv4Addr, dns: std::net::Ipv4Addr, forwards: Vec<(u16, u16)> },
}

/// QEMU option values are comma-separated lists; a literal comma is written
/// twice. Paths under a state directory may contain commas.
pub(crate) fn opt_escape(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_str(p: &std::path::Path) -> String {
    opt_escape(&p.to_string_lossy())
}

/// The descriptors a QEMU inherits from vman (see `process::Inherited`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QemuFds {
    /// A listening unix socket for QMP.
    pub qmp: i32,
    /// A listening unix socket for the serial console.
    pub serial: i32,
    pub kernel: Option<i32>,
    pub initrd: Option<i32>,
    /// The ISO in the CD-ROM drive, put in fdset [`CDROM_FDSET`].
    pub cdrom: Option<i32>,
    /// An open queue of each tap, by interface name: QEMU then needs no
    /// access to `/dev/net/tun`.
    pub taps: Vec<(String, i32)>,
}

/// How QEMU names an inherited file: it opens the path anew, which for an
/// unprivileged QEMU needs no access to the file's directory.
pub(crate) fn fd_path(fd: i32) -> String {
    format!("/proc/self/fd/{fd}")
}

/// QEMU's seccomp filter: no obsolete system calls, no new privileges
/// (set*id), no fork/exec, no scheduler or resource-limit changes. A guest
/// that escapes into QEMU is left with a process that can do little more
/// than the VM itself.
pub(crate) const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// What a VM's QEMU gets besides its NICs: its disks in slot order (all
/// attached), a cloud-init seed, and the UEFI variable store and code.
#[derive(Debug, Clone, Default)]
pub(crate) struct Storage {
    pub disks: Vec<Disk>,
    pub seed: Option<PathBuf>,
    pub uefi: Option<Uefi>,
}

/// OVMF's read-only code and the VM's own copy of its variable store.
#[derive(Debug, Clone)]
pub(crate) struct Uefi {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// The id of every VM's CD-ROM drive (on the q35 AHCI controller; empty
/// unless an ISO is in it).
pub(crate) const CDROM_ID: &str = "cd0";
/// The fdset the ISO of a start is in; a live change adds a set of its own.
const CDROM_FDSET: u32 = 1;
/// How vman's CD-ROM fdsets are marked, so a change can remove the old ones.
pub(crate) const CDROM_OPAQUE: &str = "vman-cdrom";
const CDROM_NODE: &str = "cdrom0";

/// The arguments after the binary name.
pub(crate) fn qemu_argv(
    vm: &Vm,
    accel: Accel,
    paths: &RunPaths,
    fds: &QemuFds,
    serial_log: &std::path::Path,
    nics: &[NicBackend],
    storage: &Storage,
) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("guest={},debug-threads=on", vm.name),
        "-uuid".into(),
        vm.id.clone(),
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        accel.as_str().into(),
        "-smp".into(),
        vm.vcpus.to_string(),
        "-m".into(),
        format!("{}M", vm.memory_mib),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-boot".into(),
        "strict=on".into(),
        "-sandbox".into(),
        SANDBOX.into(),
        "-pidfile".into(),
        paths.pidfile.to_string_lossy().into_owned(),
        "-chardev".into(),
        format!("socket,id=qmp,fd={},server=on,wait=off", fds.qmp),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
        "-chardev".into(),
        format!("socket,id=serial0,fd={},server=on,wait=off,logfile={},logappend=on", fds.serial, path_str(serial_log)),
        "-serial".into(),
        "chardev:serial0".into(),
        "-msg".into(),
        "timestamp=on".into(),
    ];
    if let Some(boot) = &vm.boot {
        a.extend(["-kernel".into(), fds.kernel.map_or_else(|| boot.kernel.clone(), fd_path)]);
        if let Some(initrd) = &boot.initrd {
            a.extend(["-initrd".into(), fds.initrd.map_or_else(|| initrd.clone(), fd_path)]);
        }
        if !boot.cmdline.is_empty() {
            a.extend(["-append".into(), boot.cmdline.clone()]);
        }
    }
    a.extend(storage_args(vm, paths, fds, storage));
    for (nic, backend) in vm.nics.iter().zip(nics) {
        let id = format!("net{}", nic.index);
        let netdev = match backend {
            NicBackend::Isolated => format!("hubport,id={id},hubid={}", nic.index),
            // vhost=off: vhost-net needs /dev/vhost-net and buys nothing under TCG.
            NicBackend::Tap { ifname } => match fds.taps.iter().find(|(name, _)| name == ifname) {
                Some((_, fd)) => format!("tap,id={id},fd={fd},vhost=off"),
                None => format!("tap,id={id},ifname={ifname},script=no,downscript=no,vhost=off"),
            },
            NicBackend::User { net, host, guest, dns, forwards } => {
                let mut user = format!("user,id={id},net={net},host={host},dhcpstart={guest},dns={dns}");
                for (host_port, guest_port) in forwards {
                    user.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"));
                }
                user
            }
        };
        a.extend(["-netdev".into(), netdev]);
        a.extend(["-device".into(), format!("virtio-net-pci,netdev={id},mac={}", nic.mac)]);
    }
    a.into_iter().map(OsString::from).collect()
}

/// Firmware, display, root ports, disks, CD-ROM and seed.
fn storage_args(vm: &Vm, paths: &RunPaths, fds: &QemuFds, storage: &Storage) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if let Some(uefi) = &storage.uefi {
        a.extend(["-drive".into(), format!("if=pflash,format=raw,unit=0,readonly=on,file={}", path_str(&uefi.code))]);
        a.extend(["-drive".into(), format!("if=pflash,format=raw,unit=1,file={}", path_str(&uefi.vars))]);
    }
    match vm.display {
        Display::None => {}
        Display::VncUnix => a.extend(["-device".into(), "VGA".into(), "-vnc".into(), format!("unix:{}", path_str(&paths.vnc))]),
        // The first free display from 5900 on: QEMU binds it, so no port
        // is chosen and then lost to a race; vman reads it back over QMP.
        Display::VncTcp => a.extend(["-device".into(), "VGA".into(), "-vnc".into(), "127.0.0.1:0,to=99".into()]),
    }
    for port in root_ports() {
        a.extend(["-device".into(), port]);
    }
    // bootindex: with a kernel QEMU boots it directly; otherwise the first
    // disk, or the CD-ROM when asked first. `-boot strict=on`: nothing else.
    let direct = vm.boot.is_some();
    let (disk_boot, cd_boot) = match (direct, vm.boot_from_cdrom) {
        (true, _) => (None, None),
        (false, true) => (Some(2), Some(1)),
        (false, false) => (Some(1), Some(2)),
    };
    for (i, disk) in storage.disks.iter().enumerate() {
        let slot = disk.slot.unwrap_or(i as u32);
        a.extend(["-blockdev".into(), blockdev(disk).to_string()]);
        a.extend(["-device".into(), device(disk, slot, if i == 0 { disk_boot } else { None }).to_string()]);
    }
    let mut cd = json!({"driver": "ide-cd", "bus": "ide.0", "id": CDROM_ID});
    if let Some(iso) = &vm.cdrom {
        let file = match fds.cdrom {
            Some(fd) => {
                a.extend(["-add-fd".into(), format!("fd={fd},set={CDROM_FDSET},opaque={CDROM_OPAQUE}")]);
                format!("/dev/fdset/{CDROM_FDSET}")
            }
            None => iso.clone(),
        };
        a.extend(["-blockdev".into(), cdrom_blockdev(&file).to_string()]);
        cd["drive"] = json!(CDROM_NODE);
        if let Some(index) = cd_boot {
            cd["bootindex"] = json!(index);
        }
    }
    a.extend(["-device".into(), cd.to_string()]);
    if let Some(seed) = &storage.seed {
        let node = json!({"driver": "raw", "node-name": "seed", "read-only": true,
                          "file": {"driver": "file", "filename": seed, "read-only": true}});
        a.extend(["-blockdev".into(), node.to_string()]);
        // Read-only virtio, in the last slot of the root bus: guests probe
        // it after the disks behind the root ports, so it never takes a
        // disk's name (it is the last vdX).
        let dev = json!({"driver": "virtio-blk-pci", "bus": "pcie.0", "addr": "0x1e", "id": "seed", "drive": "seed", "serial": "cidata"});
        a.extend(["-device".into(), dev.to_string()]);
    }
    a
}

/// An ISO as a read-only raw block node (also what a live CD-ROM change inserts).
pub(crate) fn cdrom_blockdev(iso: &str) -> serde_json::Value {
    json!({"driver": "raw", "node-name": CDROM_NODE, "read-only": true, "file": {"driver": "file", "filename": iso, "read-only": true}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mac::MacAddr;
    use crate::vm::model::{BootSpec, Nic};
    use crate::vm::state::VmState;
    use std::path::Path;

    fn vm() -> Vm {
        Vm {
            id: "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e".into(),
            name: "web1".into(),
            template: "small".into(),
            vcpus: 2,
            memory_mib: 256,
            disk_gib: 1,
            state: VmState::Created,
            nics: vec![Nic {
                index: 0,
                network: "lan".into(),
                vlan: 100,
                ip: "10.0.0.2".parse().unwrap(),
                prefix_len: 24,
                gateway: "10.0.0.1".parse().unwrap(),
                mac: MacAddr([0x52, 0x54, 0, 1, 2, 3]),
                host_interface: None,
            }],
            boot: Some(BootSpec::kernel("/k").initrd("/i").cmdline("console=ttyS0 a,b")),
            pid: None,
            accel: None,
            last_error: None,
            port_forwards: Vec::new(),
            firmware: crate::Firmware::Bios,
            cdrom: None,
            boot_from_cdrom: false,
            display: Display::None,
            display_address: None,
            cloud_init: false,
            user_data: None,
            ssh_keys: Vec::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    const FDS: QemuFds = QemuFds { qmp: 5, serial: 6, kernel: Some(7), initrd: None, cdrom: None, taps: Vec::new() };

    fn argv(state: &str) -> Vec<String> {
        let paths = RunPaths::new(Path::new(state), &vm().id);
        let log = paths.dir.join("serial.log");
        qemu_argv(&vm(), Accel::Tcg, &paths, &FDS, &log, &[NicBackend::Isolated], &Storage::default())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn after<'a>(argv: &'a [String], flag: &str) -> &'a str {
        let i = argv.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} missing"));
        &argv[i + 1]
    }

    #[test]
    fn sizes_identity_and_boot_come_from_the_vm() {
        let a = argv("/s/run");
        assert_eq!(after(&a, "-uuid"), "0190f3b2-7c4e-7a11-9d3e-5f6a7b8c9d0e");
        assert_eq!(after(&a, "-smp"), "2");
        assert_eq!(after(&a, "-m"), "256M");
        assert_eq!(after(&a, "-accel"), "tcg");
        // The kernel comes through the descriptor vman opened; the initrd
        // was given none here, so QEMU opens its path.
        assert_eq!(after(&a, "-kernel"), "/proc/self/fd/7");
        assert_eq!(after(&a, "-initrd"), "/i");
        // -append is its own argv element: commas and spaces need no escaping.
        assert_eq!(after(&a, "-append"), "console=ttyS0 a,b");
        assert!(a.contains(&"virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03".to_string()));
        assert!(a.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn qemu_is_sandboxed_and_never_daemonizes_itself() {
        let a = argv("/s/run");
        assert_eq!(after(&a, "-sandbox"), "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        // Under that filter QEMU could not fork or setsid: vman does both.
        assert!(!a.contains(&"-daemonize".to_string()));
    }

    #[test]
    fn qmp_and_serial_use_the_sockets_vman_made() {
        let a = argv("/s/run");
        let chardevs: Vec<&String> = a.windows(2).filter(|w| w[0] == "-chardev").map(|w| &w[1]).collect();
        assert_eq!(chardevs[0], "socket,id=qmp,fd=5,server=on,wait=off");
        assert_eq!(after(&a, "-mon"), "chardev=qmp,mode=control");
        assert!(chardevs[1].starts_with("socket,id=serial0,fd=6,server=on,wait=off,logfile="), "{}", chardevs[1]);
    }

    #[test]
    fn tap_and_user_backends() {
        let paths = RunPaths::new(Path::new("/s/run"), &vm().id);
        let log = paths.dir.join("serial.log");
        let tap = qemu_argv(&vm(), Accel::Tcg, &paths, &FDS, &log, &[NicBackend::Tap { ifname: "vt0".into() }], &Storage::default());
        let tap: Vec<String> = tap.into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(after(&tap, "-netdev"), "tap,id=net0,ifname=vt0,script=no,downscript=no,vhost=off");
        // With the tap opened by vman, QEMU gets its descriptor instead.
        let fds = QemuFds { taps: vec![("vt0".into(), 9)], ..FDS };
        let tap = qemu_argv(&vm(), Accel::Tcg, &paths, &fds, &log, &[NicBackend::Tap { ifname: "vt0".into() }], &Storage::default());
        let tap: Vec<String> = tap.into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(after(&tap, "-netdev"), "tap,id=net0,fd=9,vhost=off");
        let user = NicBackend::User {
            net: "10.0.0.0/24".parse().unwrap(),
            host: "10.0.0.1".parse().unwrap(),
            guest: "10.0.0.2".parse().unwrap(),
            dns: "10.0.0.254".parse().unwrap(),
            forwards: vec![(2222, 22)],
        };
        let user: Vec<String> = qemu_argv(&vm(), Accel::Tcg, &paths, &FDS, &log, &[user], &Storage::default())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            after(&user, "-netdev"),
            "user,id=net0,net=10.0.0.0/24,host=10.0.0.1,dhcpstart=10.0.0.2,dns=10.0.0.254,hostfwd=tcp:127.0.0.1:2222-:22"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled_inside_option_lists() {
        let a = argv("/s,x/run");
        let serial = a.windows(2).filter(|w| w[0] == "-chardev").nth(1).map(|w| w[1].clone()).unwrap();
        assert!(serial.contains("logfile=/s,,x/run/9d3e5f6a7b8c9d0e/serial.log,"), "{serial}");
        // -pidfile takes a plain path, not an option list.
        assert_eq!(after(&a, "-pidfile"), "/s,x/run/9d3e5f6a7b8c9d0e/qemu.pid");
    }
}
