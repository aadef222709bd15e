//! QEMU's argument vector for a VM. A pure function: no shell, no I/O, so
//! every choice here is visible in a unit test.

use std::ffi::OsString;

use crate::runtime::Accel;
use crate::runtime::process::RunPaths;
use crate::vm::Vm;

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

/// The arguments after the binary name.
pub(crate) fn qemu_argv(vm: &Vm, accel: Accel, paths: &RunPaths, serial_log: &std::path::Path, nics: &[NicBackend]) -> Vec<OsString> {
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
        "-daemonize".into(),
        "-pidfile".into(),
        paths.pidfile.to_string_lossy().into_owned(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", path_str(&paths.qmp)),
        "-chardev".into(),
        format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
            path_str(&paths.serial_sock),
            path_str(serial_log)
        ),
        "-serial".into(),
        "chardev:serial0".into(),
        "-msg".into(),
        "timestamp=on".into(),
    ];
    if let Some(boot) = &vm.boot {
        a.extend(["-kernel".into(), boot.kernel.clone()]);
        if let Some(initrd) = &boot.initrd {
            a.extend(["-initrd".into(), initrd.clone()]);
        }
        if !boot.cmdline.is_empty() {
            a.extend(["-append".into(), boot.cmdline.clone()]);
        }
    }
    for (nic, backend) in vm.nics.iter().zip(nics) {
        let id = format!("net{}", nic.index);
        let netdev = match backend {
            NicBackend::Isolated => format!("hubport,id={id},hubid={}", nic.index),
            // vhost=off: vhost-net needs /dev/vhost-net and buys nothing under TCG.
            NicBackend::Tap { ifname } => format!("tap,id={id},ifname={ifname},script=no,downscript=no,vhost=off"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;
    use crate::state::VmState;
    use crate::vm::{BootSpec, Nic};
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
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn argv(state: &str) -> Vec<String> {
        let paths = RunPaths::new(Path::new(state), &vm().id);
        let log = paths.dir.join("serial.log");
        qemu_argv(&vm(), Accel::Tcg, &paths, &log, &[NicBackend::Isolated])
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
        assert_eq!(after(&a, "-kernel"), "/k");
        assert_eq!(after(&a, "-initrd"), "/i");
        // -append is its own argv element: commas and spaces need no escaping.
        assert_eq!(after(&a, "-append"), "console=ttyS0 a,b");
        assert_eq!(after(&a, "-device"), "virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03");
        assert!(a.contains(&"-daemonize".to_string()) && a.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn tap_and_user_backends() {
        let paths = RunPaths::new(Path::new("/s/run"), &vm().id);
        let log = paths.dir.join("serial.log");
        let tap = qemu_argv(&vm(), Accel::Tcg, &paths, &log, &[NicBackend::Tap { ifname: "vt0".into() }]);
        let tap: Vec<String> = tap.into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(after(&tap, "-netdev"), "tap,id=net0,ifname=vt0,script=no,downscript=no,vhost=off");
        let user = NicBackend::User {
            net: "10.0.0.0/24".parse().unwrap(),
            host: "10.0.0.1".parse().unwrap(),
            guest: "10.0.0.2".parse().unwrap(),
            dns: "10.0.0.254".parse().unwrap(),
            forwards: vec![(2222, 22)],
        };
        let user: Vec<String> = qemu_argv(&vm(), Accel::Tcg, &paths, &log, &[user]).into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(
            after(&user, "-netdev"),
            "user,id=net0,net=10.0.0.0/24,host=10.0.0.1,dhcpstart=10.0.0.2,dns=10.0.0.254,hostfwd=tcp:127.0.0.1:2222-:22"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled_inside_option_lists() {
        let a = argv("/s,x/run");
        assert_eq!(after(&a, "-qmp"), "unix:/s,,x/run/9d3e5f6a7b8c9d0e/qmp.sock,server=on,wait=off");
        assert!(after(&a, "-chardev").contains("path=/s,,x/run/9d3e5f6a7b8c9d0e/serial.sock,"));
        // -pidfile takes a plain path, not an option list.
        assert_eq!(after(&a, "-pidfile"), "/s,x/run/9d3e5f6a7b8c9d0e/qemu.pid");
    }
}
