//! MAC addresses of virtual NICs.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// QEMU's own OUI; generated addresses start with it, as libvirt's do.
const QEMU_OUI: [u8; 3] = [0x52, 0x54, 0x00];

/// A 48-bit MAC address, shown and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random address under QEMU's 52:54:00 prefix.
    pub fn random_qemu() -> Result<MacAddr> {
        let mut tail = [0u8; 3];
        getrandom::fill(&mut tail).map_err(|e| Error::Internal(format!("random source failed: {e}")))?;
        Ok(MacAddr([QEMU_OUI[0], QEMU_OUI[1], QEMU_OUI[2], tail[0], tail[1], tail[2]]))
    }

    /// True for multicast/broadcast addresses, which a NIC must not use.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Parses and checks that the address can be a NIC's own (unicast, not zero).
    pub fn parse_unicast(text: &str) -> Result<MacAddr> {
        let mac: MacAddr = text.parse()?;
        if mac.is_multicast() {
            return Err(Error::invalid("MAC address", format!("{text} is multicast; a NIC needs a unicast address")));
        }
        if mac.0 == [0; 6] {
            return Err(Error::invalid("MAC address", "00:00:00:00:00:00 is not a usable address"));
        }
        Ok(mac)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(text: &str) -> Result<MacAddr> {
        let bad = || Error::invalid("MAC address", format!("{text:?} is not of the form aa:bb:cc:dd:ee:ff"));
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(bytes))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_addresses_are_qemu_unicast() {
        for _ in 0..100 {
            let mac = MacAddr::random_qemu().unwrap();
            assert_eq!(&mac.0[..3], &QEMU_OUI);
            assert!(!mac.is_multicast());
        }
    }

    #[test]
    fn rejects_malformed_and_multicast() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52-54-00-12-34-56",
            "5:54:00:12:34:56",
            "zz:54:00:12:34:56",
            "+1:54:00:12:34:56",
        ] {
            assert!(MacAddr::parse_unicast(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MacAddr::parse_unicast("01:00:5e:00:00:01").is_err());
        assert!(MacAddr::parse_unicast("ff:ff:ff:ff:ff:ff").is_err());
        assert!(MacAddr::parse_unicast("00:00:00:00:00:00").is_err());
        assert_eq!(MacAddr::parse_unicast("52:54:00:AB:cd:01").unwrap().to_string(), "52:54:00:ab:cd:01");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(bytes in any::<[u8; 6]>()) {
            let mac = MacAddr(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
        }
    }
}
