//! Persistent taps, made and removed with ioctls on `/dev/net/tun`.
//!
//! A persistent tap outlives the descriptor that made it, so vman can create
//! it (as root) before QEMU starts, and QEMU opens it by name with
//! `-netdev tap,ifname=…,script=no,downscript=no`. While a process holds it
//! the tap has carrier (LOWER_UP); it stays on its bridge when QEMU exits.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use super::netlink::expect_kind;
use super::{HostNetError, LinkInfo, Netlink, Result, validate_ifname};

const TUN_PATH: &str = "/dev/net/tun";

/// Flags of the taps vman makes: layer 2, no packet-info header, virtio-net
/// header support (what QEMU asks for with vhost or virtio-net offloads).
/// `ifr_flags` is a `c_short`; the casts keep the bit patterns (0x8000
/// becomes the sign bit, as in C).
const TAP_FLAGS: libc::c_short = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
/// TUNSETIFF fails with EBUSY rather than attach to an existing device.
const TUN_EXCL: libc::c_short = libc::IFF_TUN_EXCL as libc::c_short;
const MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;

/// Creates persistent tap `name`, owned by `owner_uid` if given (so that
/// user may open it without CAP_NET_ADMIN). Opens its own netlink socket to
/// classify a name collision; see [`Netlink::create_persistent_tap`].
pub fn create_persistent_tap(name: &str, owner_uid: Option<u32>) -> Result<()> {
    Netlink::open()?.create_persistent_tap(name, owner_uid)
}

/// Opens a queue of existing persistent tap `name` with the flags it was
/// made with, for a process (QEMU) that may not open `/dev/net/tun` itself:
/// the descriptor is handed over. Fails with `NotFound` (the tap would be
/// made anew otherwise, so it is checked first by the caller's netlink) and
/// `Busy` while another process has it open.
pub fn open_tap(name: &str) -> Result<File> {
    validate_ifname(name)?;
    let file = open_tun()?;
    let mut ifr = ifreq(name, TAP_FLAGS);
    tun_set_iff(&file, &mut ifr).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => HostNetError::Busy { name: name.to_owned() },
        Some(libc::EPERM | libc::EACCES) => HostNetError::PermissionDenied { op: "open tap", source: e },
        _ => HostNetError::Io { op: "attach to tap (TUNSETIFF)", source: e },
    })?;
    Ok(file)
}

/// Deletes persistent tap `name`; see [`Netlink::delete_persistent_tap`].
pub fn delete_persistent_tap(name: &str) -> Result<()> {
    Netlink::open()?.delete_persistent_tap(name)
}

impl Netlink {
    /// Creates persistent tap `name` (`IFF_TAP|IFF_NO_PI|IFF_VNET_HDR`).
    ///
    /// Fails with `AlreadyExists` if a tap of that name exists, `NotOurs` if
    /// something else has the name (it is left untouched), and
    /// `PermissionDenied` without CAP_NET_ADMIN. If a step after the device
    /// is made fails, the device disappears with the descriptor.
    pub fn create_persistent_tap(&mut self, name: &str, owner_uid: Option<u32>) -> Result<()> {
        validate_ifname(name)?;
        let file = open_tun()?;
        let mut ifr = ifreq(name, TAP_FLAGS | TUN_EXCL);
        if let Err(e) = tun_set_iff(&file, &mut ifr) {
            drop(file);
            return Err(match e.raw_os_error() {
                // IFF_TUN_EXCL: a device with this name exists.
                Some(libc::EBUSY) => match self.link_by_name(name)? {
                    Some(info) => match expect_kind(name, &info, "tap", LinkInfo::is_tap) {
                        Ok(()) => HostNetError::AlreadyExists { link: name.to_owned() },
                        Err(not_ours) => not_ours,
                    },
                    // Gone again in between: report the collision anyway.
                    None => HostNetError::AlreadyExists { link: name.to_owned() },
                },
                Some(libc::EPERM | libc::EACCES) => HostNetError::PermissionDenied { op: "create tap", source: e },
                _ => HostNetError::Io { op: "create tap (TUNSETIFF)", source: e },
            });
        }
        if let Some(uid) = owner_uid {
            tun_ioctl_int(&file, libc::TUNSETOWNER, libc::c_ulong::from(uid))
                .map_err(|source| HostNetError::Io { op: "set tap owner (TUNSETOWNER)", source })?;
        }
        tun_ioctl_int(&file, libc::TUNSETPERSIST, 1)
            .map_err(|source| HostNetError::Io { op: "make tap persistent (TUNSETPERSIST)", source })?;
        drop(file);
        log::debug!("created persistent tap {name}");
        Ok(())
    }

    /// Deletes persistent tap `name`: attaches to it with the same flags,
    /// clears `TUNSETPERSIST` and closes, which destroys it.
    ///
    /// Fails with `NotFound` if there is no such interface, `NotOurs` if it
    /// is not a tap, and `Busy` while a process (QEMU) holds it.
    pub fn delete_persistent_tap(&mut self, name: &str) -> Result<()> {
        validate_ifname(name)?;
        let info = self.link_by_name(name)?.ok_or_else(|| HostNetError::NotFound { link: name.to_owned() })?;
        expect_kind(name, &info, "tap", LinkInfo::is_tap)?;
        let multi_queue = info.tun.is_some_and(|t| t.multi_queue);
        let file = open_tun()?;
        let mut ifr = ifreq(name, TAP_FLAGS | if multi_queue { MULTI_QUEUE } else { 0 });
        // Without IFF_TUN_EXCL this attaches to the existing tap. (Had the
        // tap vanished since the lookup, it would create a fresh one, which
        // the close below destroys again.)
        tun_set_iff(&file, &mut ifr).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => HostNetError::Busy { name: name.to_owned() },
            Some(libc::EPERM | libc::EACCES) => HostNetError::PermissionDenied { op: "delete tap", source: e },
            _ => HostNetError::Io { op: "attach to tap (TUNSETIFF)", source: e },
        })?;
        tun_ioctl_int(&file, libc::TUNSETPERSIST, 0)
            .map_err(|source| HostNetError::Io { op: "clear tap persistence (TUNSETPERSIST)", source })?;
        drop(file);
        log::debug!("deleted persistent tap {name}");
        Ok(())
    }

    /// Makes sure persistent tap `tap` exists, is a port of bridge `bridge`
    /// and is up. Returns the tap's index.
    ///
    /// Fails with `NotFound` if the bridge is missing, and `NotOurs` if
    /// `bridge` is not a bridge or `tap` exists and is not a tap. The tap is
    /// owned by `owner` (`TUNSETOWNER`: that user may attach to it without
    /// CAP_NET_ADMIN); an existing tap with another owner is made anew, one
    /// with the right owner is kept as it is, only attached and set up.
    pub fn ensure_tap_on_bridge(&mut self, tap: &str, bridge: &str, owner: Option<u32>) -> Result<u32> {
        validate_ifname(tap)?;
        let br = self.link_by_name(bridge)?.ok_or_else(|| HostNetError::NotFound { link: bridge.to_owned() })?;
        expect_kind(bridge, &br, "bridge", LinkInfo::is_bridge)?;
        let existing = self.link_by_name(tap)?;
        if let Some(info) = &existing {
            expect_kind(tap, info, "tap", LinkInfo::is_tap)?;
            if info.tun.as_ref().is_some_and(|t| t.owner != owner) {
                self.delete_persistent_tap(tap)?;
            }
        }
        let info = match self.link_by_name(tap)? {
            Some(info) => info,
            None => {
                match self.create_persistent_tap(tap, owner) {
                    Ok(()) | Err(HostNetError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                self.link_by_name(tap)?.ok_or_else(|| HostNetError::NotFound { link: tap.to_owned() })?
            }
        };
        expect_kind(tap, &info, "tap", LinkInfo::is_tap)?;
        if info.controller_index != Some(br.index) {
            self.set_controller(info.index, br.index)?;
        }
        if !info.up {
            self.set_up(info.index)?;
        }
        Ok(info.index)
    }

    /// Deletes tap `name` if it exists. Returns whether it did. Fails with
    /// `NotOurs` (deleting nothing) if `name` is not a tap, and `Busy` while
    /// a process holds it.
    pub fn ensure_tap_absent(&mut self, name: &str) -> Result<bool> {
        match self.delete_persistent_tap(name) {
            Ok(()) => Ok(true),
            Err(HostNetError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

pub(super) fn open_tun() -> Result<File> {
    OpenOptions::new().read(true).write(true).open(TUN_PATH).map_err(|source| match source.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => {
            HostNetError::Unsupported { feature: "tun/tap devices (/dev/net/tun)", extack: None, source }
        }
        Some(libc::EPERM | libc::EACCES) => HostNetError::PermissionDenied { op: "open /dev/net/tun", source },
        _ => HostNetError::Io { op: "open /dev/net/tun", source },
    })
}

/// A `struct ifreq` naming `name` with `ifr_flags = flags`. `name` must have
/// passed [`validate_ifname`] (≤ 15 bytes), so the name stays NUL-terminated.
fn ifreq(name: &str, flags: libc::c_short) -> libc::ifreq {
    // SAFETY: `ifreq` is a C struct of a `c_char` array and a union of
    // integers, sockaddrs, byte arrays and one raw pointer; the all-zero bit
    // pattern is a valid value for every one of them (the pointer is null and
    // never read).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    debug_assert!(name.len() < ifr.ifr_name.len());
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags;
    ifr
}

fn tun_set_iff(file: &File, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `file` is an open /dev/net/tun descriptor that outlives the
    // call. TUNSETIFF reads a `struct ifreq` from its argument and writes the
    // chosen name back into it, and `ifr` is a valid, aligned, exclusively
    // borrowed `libc::ifreq` (the kernel's layout). The request number is
    // libc's TUNSETIFF, the value the kernel expects (it is declared with
    // `int` as size, so a size-derived `ioctl_write_ptr!` number would differ).
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, std::ptr::from_mut(ifr)) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A tun ioctl whose argument is an integer passed by value
/// (TUNSETPERSIST, TUNSETOWNER, TUNSETGROUP).
fn tun_ioctl_int(file: &File, request: libc::Ioctl, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `file` is an open /dev/net/tun descriptor that outlives the
    // call, and the callers pass only requests that use the argument as a
    // plain integer: the kernel dereferences no pointer for them.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, value) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_carries_a_nul_terminated_name_and_the_flags() {
        let ifr = ifreq("abcdefghijklmno", TAP_FLAGS);
        let name: Vec<u8> = ifr.ifr_name.iter().map(|c| *c as u8).collect();
        assert_eq!(&name[..15], b"abcdefghijklmno");
        assert_eq!(name[15], 0);
        // SAFETY: `ifru_flags` is the member `ifreq` wrote; reading it back
        // reads initialised memory of the same type.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        assert_eq!(flags, 0x0002 | 0x1000 | 0x4000);
    }

    #[test]
    fn tap_flags_are_what_qemu_expects() {
        assert_eq!(TAP_FLAGS & libc::IFF_TAP as libc::c_short, libc::IFF_TAP as libc::c_short);
        assert_eq!(TAP_FLAGS & libc::IFF_TUN as libc::c_short, 0);
        assert_eq!(TUN_EXCL as u16, 0x8000);
    }
}
