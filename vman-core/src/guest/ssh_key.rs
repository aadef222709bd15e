//! SSH public keys: an OpenSSH public key line (`type base64 [comment]`),
//! checked down to its wire blob, and the fingerprints `ssh-keygen -l`
//! prints for it. Pure: no store, no I/O.
//!
//! Accepted: `ssh-ed25519`, `ecdsa-sha2-nistp256`/`384`/`521` and `ssh-rsa`
//! with a modulus of [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`] bits. The blob
//! (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4) must say the same type as
//! the line, hold exactly its fields with exact lengths and nothing after
//! them, and encode integers as RFC 4251 mpints (positive, no superfluous
//! leading zero byte), so the normalized line and its fingerprints are
//! those of the one canonical encoding. An ECDSA point must be an
//! uncompressed point of its curve's length (as OpenSSH requires) that
//! lies on the curve; an RSA modulus must be odd and its exponent odd and
//! at least 3.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Serialize;
use sha2::Digest as _;

use crate::error::{Error, Result};

/// The longest public key line accepted, in bytes: a 16384-bit RSA key
/// with a full-length comment fits.
pub const MAX_PUBLIC_KEY_LEN: usize = 8192;
/// The longest comment accepted, in bytes.
pub const MAX_COMMENT_LEN: usize = 1024;
/// The smallest RSA modulus accepted, in bits (as EC2 and current OpenSSH
/// advise; 1024-bit keys are breakable).
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest RSA modulus accepted, in bits (OpenSSH's own limit).
pub const MAX_RSA_BITS: u32 = 16384;
/// The most SSH keys one VM may be given.
pub const MAX_VM_SSH_KEYS: usize = 32;

/// What the messages call the value being checked.
const WHAT: &str = "SSH public key";

/// The kind of an SSH key, named as OpenSSH names it on a key line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SshKeyType {
    /// `ssh-ed25519`: 256 bits.
    #[serde(rename = "ssh-ed25519")]
    Ed25519,
    /// `ecdsa-sha2-nistp256`: 256 bits.
    #[serde(rename = "ecdsa-sha2-nistp256")]
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`: 384 bits.
    #[serde(rename = "ecdsa-sha2-nistp384")]
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`: 521 bits.
    #[serde(rename = "ecdsa-sha2-nistp521")]
    EcdsaP521,
    /// `ssh-rsa`: as many bits as its modulus has.
    #[serde(rename = "ssh-rsa")]
    Rsa,
}

impl SshKeyType {
    /// Every accepted type.
    pub const ALL: [SshKeyType; 5] =
        [SshKeyType::Ed25519, SshKeyType::EcdsaP256, SshKeyType::EcdsaP384, SshKeyType::EcdsaP521, SshKeyType::Rsa];

    /// The name on a key line: `ssh-ed25519`, `ecdsa-sha2-nistp256`, …
    pub fn as_str(self) -> &'static str {
        match self {
            SshKeyType::Ed25519 => "ssh-ed25519",
            SshKeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
            SshKeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
            SshKeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
            SshKeyType::Rsa => "ssh-rsa",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<SshKeyType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// For ECDSA: the curve's name inside the blob and the length of one
    /// coordinate in bytes.
    fn curve(self) -> Option<(&'static str, usize)> {
        match self {
            SshKeyType::EcdsaP256 => Some(("nistp256", 32)),
            SshKeyType::EcdsaP384 => Some(("nistp384", 48)),
            SshKeyType::EcdsaP521 => Some(("nistp521", 66)),
            SshKeyType::Ed25519 | SshKeyType::Rsa => None,
        }
    }
}

impl std::fmt::Display for SshKeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SSH public key of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SshKey {
    /// The store's id for it, never reused after a delete.
    pub id: i64,
    /// The key's name, unique in the catalogue.
    pub name: String,
    /// Its type.
    pub key_type: SshKeyType,
    /// Its size as `ssh-keygen -l` prints it: 256 for ed25519, the curve's
    /// size for ECDSA (256, 384, 521), the modulus's bit count for RSA.
    pub bits: u32,
    /// The normalized key line: `type base64` and the comment, if any,
    /// each separated by one space; the line to put in `authorized_keys`.
    pub public_key: String,
    /// The comment of the imported line ("" when it had none).
    pub comment: String,
    /// `SHA256:` and the unpadded base64 SHA-256 of the key blob, as
    /// `ssh-keygen -l -E sha256` prints it.
    pub fingerprint_sha256: String,
    /// `MD5:` and the MD5 of the key blob as colon-separated hex, as
    /// `ssh-keygen -l -E md5` prints it.
    pub fingerprint_md5: String,
    /// When it was imported, in Unix milliseconds.
    pub created_at_ms: i64,
}

/// A VM's own copy of an SSH key it was given: it outlives the key's
/// deletion from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VmSshKey {
    /// The key's name in the catalogue when the VM was given it.
    pub name: String,
    /// The normalized key line (see [`SshKey::public_key`]).
    pub public_key: String,
    /// Its SHA-256 fingerprint (see [`SshKey::fingerprint_sha256`]).
    pub fingerprint_sha256: String,
}

/// A checked public key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub key_type: SshKeyType,
    pub bits: u32,
    /// The wire blob the base64 field decodes to.
    pub blob: Vec<u8>,
    pub comment: String,
}

impl PublicKey {
    /// Parses and checks one OpenSSH public key line (surrounding
    /// whitespace, such as the newline of a `.pub` file, is ignored).
    pub fn parse(text: &str) -> Result<PublicKey> {
        let line = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() {
            return Err(Error::invalid(WHAT, "must not be empty"));
        }
        if line.len() > MAX_PUBLIC_KEY_LEN {
            return Err(Error::invalid(WHAT, format!("is {} bytes; the limit is {MAX_PUBLIC_KEY_LEN}", line.len())));
        }
        check_not_other_format(line)?;
        if line.contains(['\n', '\r']) {
            return Err(Error::invalid(WHAT, "holds more than one line; give one key"));
        }
        if let Some(c) = line.chars().find(|c| (c.is_control() && *c != '\t') || matches!(c, '\u{2028}' | '\u{2029}')) {
            return Err(Error::invalid(WHAT, format!("contains the control character {c:?}")));
        }
        let (type_name, rest) = split_field(line);
        let Some(key_type) = SshKeyType::parse(type_name) else {
            return Err(unaccepted_type(type_name, rest));
        };
        let (data, comment) = split_field(rest);
        if data.is_empty() {
            return Err(Error::invalid(WHAT, format!("has no key data after {type_name:?}")));
        }
        let blob = STANDARD.decode(data).map_err(|e| Error::invalid_because(WHAT, "its key data is not valid base64", e))?;
        if blob.starts_with(b"openssh-key-v1\0") {
            return Err(private_key());
        }
        if comment.len() > MAX_COMMENT_LEN {
            return Err(Error::invalid(WHAT, format!("its comment is {} bytes; the limit is {MAX_COMMENT_LEN}", comment.len())));
        }
        let bits = check_blob(key_type, &blob)?;
        Ok(PublicKey { key_type, bits, blob, comment: comment.to_string() })
    }

    /// The normalized line: type, canonical base64, and the comment if any.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.key_type, STANDARD.encode(&self.blob));
        if !self.comment.is_empty() {
            line.push(' ');
            line.push_str(&self.comment);
        }
        line
    }

    /// `SHA256:<unpadded base64>`, as `ssh-keygen -l -E sha256` prints it.
    pub fn fingerprint_sha256(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(sha2::Sha256::digest(&self.blob)))
    }

    /// `MD5:<hex:hex:…>`, as `ssh-keygen -l -E md5` prints it.
    pub fn fingerprint_md5(&self) -> String {
        let hex: Vec<String> = md5::Md5::digest(&self.blob).iter().map(|b| format!("{b:02x}")).collect();
        format!("MD5:{}", hex.join(":"))
    }
}

/// Checks the key names a VM is to be given: valid names, at most
/// [`MAX_VM_SSH_KEYS`], none twice. Whether they exist is the store's to say.
pub(crate) fn validate_key_names(names: &[String]) -> Result<()> {
    if names.len() > MAX_VM_SSH_KEYS {
        return Err(Error::invalid("SSH keys", format!("{} given; at most {MAX_VM_SSH_KEYS}", names.len())));
    }
    for (i, name) in names.iter().enumerate() {
        crate::name::validate_name("SSH key name", name)?;
        if names[..i].contains(name) {
            return Err(Error::invalid("SSH keys", format!("{name:?} is given twice")));
        }
    }
    Ok(())
}

/// The first whitespace-separated field of `s`, and the rest without its
/// leading whitespace.
fn split_field(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(at) => (&s[..at], s[at..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn private_key() -> Error {
    Error::invalid(WHAT, "is a private key; give the public key (the .pub file) and keep the private key secret")
}

/// Refuses the formats people paste by mistake, saying what they are.
fn check_not_other_format(line: &str) -> Result<()> {
    if line.contains("PRIVATE KEY-----") || line.starts_with("PuTTY-User-Key-File-") {
        return Err(private_key());
    }
    if line.contains("---- BEGIN SSH2 PUBLIC KEY ----") {
        return Err(Error::invalid(WHAT, "is in RFC 4716 format; convert it with `ssh-keygen -i -f FILE`"));
    }
    if line.starts_with("-----BEGIN ") {
        return Err(Error::invalid(WHAT, "is a PEM file; give an OpenSSH public key line (`ssh-keygen -i -m PKCS8 -f FILE` converts one)"));
    }
    Ok(())
}

/// Why a line whose first field is not an accepted type is refused.
fn unaccepted_type(type_name: &str, rest: &str) -> Error {
    let is_key_type =
        |s: &str| SshKeyType::parse(s).is_some() || s == "ssh-dss" || s.starts_with("sk-") || s.ends_with("-cert-v01@openssh.com");
    let shown = shorten(type_name);
    let reason = if type_name == "ssh-dss" {
        "DSA keys (ssh-dss) are not accepted: they are limited to 1024 bits and OpenSSH has dropped them; use ed25519".to_string()
    } else if type_name.ends_with("-cert-v01@openssh.com") {
        format!("certificates ({shown}) are not accepted; give the plain public key")
    } else if type_name.starts_with("sk-") {
        format!("security-key keys ({shown}) are not accepted; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa")
    } else if rest.split([' ', '\t']).any(is_key_type) {
        "starts with authorized_keys options; give the key line alone (type, key data, comment)".to_string()
    } else {
        format!("unknown key type {shown:?}; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa")
    };
    Error::invalid(WHAT, reason)
}

/// At most 40 characters of caller text, for a message.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 { s.to_string() } else { format!("{}…", s.chars().take(40).collect::<String>()) }
}

/// Checks the wire blob against the line's type; answers the key's bits.
fn check_blob(key_type: SshKeyType, blob: &[u8]) -> Result<u32> {
    let mut r = Reader(blob);
    let inner = r.string("key type")?;
    if inner != key_type.as_str().as_bytes() {
        let inner = std::str::from_utf8(inner).map_or_else(|_| "binary".to_string(), |s| format!("{:?}", shorten(s)));
        return Err(Error::invalid(WHAT, format!("its key data is of type {inner}, but the line says {key_type}")));
    }
    let bits = match key_type {
        SshKeyType::Ed25519 => {
            let key = r.string("ed25519 key")?;
            if key.len() != 32 {
                return Err(Error::invalid(WHAT, format!("its ed25519 key is {} bytes; it must be 32", key.len())));
            }
            256
        }
        SshKeyType::EcdsaP256 | SshKeyType::EcdsaP384 | SshKeyType::EcdsaP521 => check_ecdsa(key_type, &mut r)?,
        SshKeyType::Rsa => check_rsa(&mut r)?,
    };
    if !r.0.is_empty() {
        return Err(Error::invalid(WHAT, format!("its key data has {} bytes after the key", r.0.len())));
    }
    Ok(bits)
}

fn check_ecdsa(key_type: SshKeyType, r: &mut Reader<'_>) -> Result<u32> {
    let Some((curve, coordinate_len)) = key_type.curve() else {
        return Err(Error::Internal(format!("{key_type} has no curve")));
    };
    let named = r.string("curve name")?;
    if named != curve.as_bytes() {
        let named = std::str::from_utf8(named).map_or_else(|_| "binary".to_string(), |s| format!("{:?}", shorten(s)));
        return Err(Error::invalid(WHAT, format!("its curve is {named}, but {key_type} needs {curve}")));
    }
    let point = r.string("ECDSA point")?;
    if point.first() != Some(&0x04) {
        return Err(Error::invalid(WHAT, "its ECDSA point is not in uncompressed form"));
    }
    if point.len() != 1 + 2 * coordinate_len {
        return Err(Error::invalid(WHAT, format!("its ECDSA point is {} bytes; {curve} needs {}", point.len(), 1 + 2 * coordinate_len)));
    }
    let (x, y) = point[1..].split_at(coordinate_len);
    if !curve::holds(key_type, x, y) {
        return Err(Error::invalid(WHAT, format!("its ECDSA point is not on the {curve} curve")));
    }
    Ok(match key_type {
        SshKeyType::EcdsaP256 => 256,
        SshKeyType::EcdsaP384 => 384,
        _ => 521,
    })
}

/// Whether a point lies on a NIST prime curve, y² ≡ x³ − 3x + b (mod p),
/// with both coordinates below p: what OpenSSH (through OpenSSL) checks of
/// a public point. The curves have prime order, so that is all a valid
/// public key needs. Arithmetic on little-endian u32 limbs, reduced one bit
/// at a time: a few thousand limb operations per key, and obviously right.
mod curve {
    use super::SshKeyType;

    /// p and b of each curve, big-endian hex (FIPS 186-4, D.1.2).
    pub(super) fn parameters(key_type: SshKeyType) -> Option<(&'static str, &'static str)> {
        match key_type {
            SshKeyType::EcdsaP256 => Some((
                "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
                "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
            )),
            SshKeyType::EcdsaP384 => Some((
                "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
                "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
            )),
            SshKeyType::EcdsaP521 => Some((
                "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
            )),
            SshKeyType::Ed25519 | SshKeyType::Rsa => None,
        }
    }

    /// A number as little-endian limbs, `len` of them.
    fn from_be(bytes: &[u8], len: usize) -> Vec<u32> {
        let mut limbs = vec![0u32; len];
        for (i, byte) in bytes.iter().rev().enumerate() {
            if let Some(limb) = limbs.get_mut(i / 4) {
                *limb |= u32::from(*byte) << (8 * (i % 4));
            }
        }
        limbs
    }

    fn from_hex(hex: &str, len: usize) -> Vec<u32> {
        let bytes: Vec<u8> = (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
        from_be(&bytes, len)
    }

    /// `a >= b`, for limbs of equal length.
    fn at_least(a: &[u32], b: &[u32]) -> bool {
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            if x != y {
                return x > y;
            }
        }
        true
    }

    /// `a -= b` where `a >= b`, for limbs of equal length.
    fn sub_in_place(a: &mut [u32], b: &[u32]) {
        let mut borrow = 0i64;
        for (x, y) in a.iter_mut().zip(b) {
            let d = i64::from(*x) - i64::from(*y) - borrow;
            borrow = i64::from(d < 0);
            *x = (d + (borrow << 32)) as u32;
        }
    }

    /// `v mod p`, one bit of `v` at a time: `r` stays below p, whose top
    /// limb is spare, so `2r + 1` always fits.
    fn reduce(v: &[u32], p: &[u32]) -> Vec<u32> {
        let mut r = vec![0u32; p.len()];
        for bit in (0..v.len() * 32).rev() {
            let mut carry = (v[bit / 32] >> (bit % 32)) & 1;
            for limb in r.iter_mut() {
                let next = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if at_least(&r, p) {
                sub_in_place(&mut r, p);
            }
        }
        r
    }

    fn mul(a: &[u32], b: &[u32], p: &[u32]) -> Vec<u32> {
        let mut product = vec![0u32; a.len() + b.len()];
        for (i, x) in a.iter().enumerate() {
            let mut carry = 0u64;
            for (j, y) in b.iter().enumerate() {
                let t = u64::from(*x) * u64::from(*y) + u64::from(product[i + j]) + carry;
                product[i + j] = t as u32;
                carry = t >> 32;
            }
            product[i + b.len()] = carry as u32;
        }
        reduce(&product, p)
    }

    /// `a + b` without reduction; both are below p, which leaves the top
    /// limb spare (see `holds`), so the sum cannot overflow.
    fn plain_add(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut carry = 0u64;
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let t = u64::from(*x) + u64::from(*y) + carry;
                carry = t >> 32;
                t as u32
            })
            .collect()
    }

    fn add(a: &[u32], b: &[u32], p: &[u32]) -> Vec<u32> {
        reduce(&plain_add(a, b), p)
    }

    fn sub(a: &[u32], b: &[u32], p: &[u32]) -> Vec<u32> {
        let mut a = if at_least(a, b) { a.to_vec() } else { plain_add(a, p) };
        sub_in_place(&mut a, b);
        a
    }

    pub(super) fn holds(key_type: SshKeyType, x: &[u8], y: &[u8]) -> bool {
        let Some((p_hex, b_hex)) = parameters(key_type) else { return false };
        // One limb more than a coordinate needs: every value below p then
        // has a spare top limb, so sums of two never overflow.
        let len = x.len().div_ceil(4) + 1;
        let (p, b) = (from_hex(p_hex, len), from_hex(b_hex, len));
        let (x, y) = (from_be(x, len), from_be(y, len));
        if at_least(&x, &p) || at_least(&y, &p) {
            return false;
        }
        let x3 = mul(&mul(&x, &x, &p), &x, &p);
        let three_x = add(&add(&x, &x, &p), &x, &p);
        let right = sub(&add(&x3, &b, &p), &three_x, &p);
        mul(&y, &y, &p) == right
    }
}

fn check_rsa(r: &mut Reader<'_>) -> Result<u32> {
    let e = r.mpint("RSA exponent")?;
    let n = r.mpint("RSA modulus")?;
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(Error::invalid(WHAT, format!("its RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are needed")));
    }
    if bits > MAX_RSA_BITS {
        return Err(Error::invalid(WHAT, format!("its RSA modulus has {bits} bits; at most {MAX_RSA_BITS} are accepted")));
    }
    // An RSA modulus is a product of two odd primes; the exponent is odd and
    // at least 3 (both non-empty here: n has bits, and e is checked first).
    if n.last().is_none_or(|b| b & 1 == 0) {
        return Err(Error::invalid(WHAT, "its RSA modulus is even"));
    }
    if e.last().is_none_or(|b| b & 1 == 0) || e == [1] || e.len() > n.len() {
        return Err(Error::invalid(WHAT, "its RSA exponent is not an odd number between 3 and the modulus"));
    }
    Ok(bits)
}

/// The number of significant bits of a big-endian magnitude without
/// leading zero bytes.
fn bit_len(magnitude: &[u8]) -> u32 {
    match magnitude.first() {
        Some(first) => (magnitude.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

/// Reads the SSH wire format (RFC 4251 §5) from a blob.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A `string`: a big-endian u32 length and that many bytes.
    fn string(&mut self, field: &str) -> Result<&'a [u8]> {
        let truncated = || Error::invalid(WHAT, format!("its key data is truncated in the {field}"));
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(truncated());
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(value)
    }

    /// An `mpint` that must be positive, as its magnitude (big-endian, no
    /// leading zero byte). RFC 4251 forbids superfluous leading bytes, and
    /// a negative number is no key.
    fn mpint(&mut self, field: &str) -> Result<&'a [u8]> {
        let value = self.string(field)?;
        match value {
            [] => Ok(value),
            [first, ..] if first & 0x80 != 0 => Err(Error::invalid(WHAT, format!("its {field} is negative"))),
            [0, next, ..] if next & 0x80 != 0 => Ok(&value[1..]),
            [0, ..] => Err(Error::invalid(WHAT, format!("its {field} has a superfluous leading zero byte"))),
            _ => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    // `ssh-keygen -t ed25519 -C "alice@example"`, and what
    // `ssh-keygen -l -E sha256|md5` printed for it.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEEHKILeIA5KIMgEOxa+GSMJKC0wYoXMrzyXxBvwHzw alice@example";
    const ED25519_SHA256: &str = "SHA256:kjO/ucjDzqCtu8t0g3cJz8ACVTBo3+JxDUbSIFcA/E4";

    fn string(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn blob(parts: &[&[u8]]) -> Vec<u8> {
        parts.iter().flat_map(|p| string(p)).collect()
    }

    fn line(type_name: &str, blob: &[u8]) -> String {
        format!("{type_name} {}", STANDARD.encode(blob))
    }

    /// An RSA blob whose modulus has exactly `bits` bits (odd, top bit set).
    fn rsa_blob(bits: usize) -> Vec<u8> {
        let mut n = vec![0xff_u8; bits.div_ceil(8)];
        let top = bits % 8;
        if top != 0 {
            n[0] = (1u16 << top).wrapping_sub(1) as u8;
        }
        if n[0] & 0x80 != 0 {
            n.insert(0, 0);
        }
        blob(&[b"ssh-rsa", &[1, 0, 1], &n])
    }

    fn refused(text: &str) -> String {
        let err = PublicKey::parse(text).expect_err(text);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{text:?}: {err}");
        err.full_message()
    }

    #[test]
    fn a_known_key_gives_the_fingerprints_ssh_keygen_printed() {
        // As a .pub file holds it (Windows line end included).
        let key = PublicKey::parse(&format!("  {ED25519}\r\n")).unwrap();
        assert_eq!(key.key_type, SshKeyType::Ed25519);
        assert_eq!(key.bits, 256);
        assert_eq!(key.comment, "alice@example");
        assert_eq!(key.line(), ED25519);
        assert_eq!(key.fingerprint_sha256(), ED25519_SHA256);
        assert_eq!(key.fingerprint_md5(), "MD5:23:8a:78:69:1a:11:be:78:a5:72:76:d1:ed:b5:62:9c");
    }

    #[test]
    fn tabs_and_runs_of_spaces_are_normalized_and_a_comment_keeps_its_spaces() {
        let data = ED25519.split(' ').nth(1).unwrap();
        let key = PublicKey::parse(&format!("ssh-ed25519\t {data}  my laptop key ")).unwrap();
        assert_eq!(key.comment, "my laptop key");
        assert_eq!(key.line(), format!("ssh-ed25519 {data} my laptop key"));
        let bare = PublicKey::parse(&format!("ssh-ed25519 {data}")).unwrap();
        assert_eq!(bare.comment, "");
        assert_eq!(bare.line(), format!("ssh-ed25519 {data}"));
    }

    #[test]
    fn rsa_bits_are_counted_exactly_from_the_modulus() {
        for bits in [2048, 2049, 2055, 3072, 4095, 4096, MAX_RSA_BITS as usize] {
            let key = PublicKey::parse(&line("ssh-rsa", &rsa_blob(bits))).unwrap();
            assert_eq!(key.bits, bits as u32);
        }
        for bits in [1024, 2047] {
            assert!(refused(&line("ssh-rsa", &rsa_blob(bits))).contains(&format!("{bits} bits")));
        }
        assert!(refused(&line("ssh-rsa", &rsa_blob(MAX_RSA_BITS as usize + 1))).contains("at most"));
    }

    #[test]
    fn rsa_integers_must_be_canonical_mpints() {
        let n = &rsa_blob(2048)[4 + 7 + 4 + 3 + 4..];
        let rsa = |e: &[u8], n: &[u8]| line("ssh-rsa", &blob(&[b"ssh-rsa", e, n]));
        // A superfluous leading zero, a negative modulus, an even one.
        let mut padded = vec![0];
        padded.extend_from_slice(n);
        assert!(refused(&rsa(&[1, 0, 1], &padded)).contains("superfluous"));
        assert!(refused(&rsa(&[1, 0, 1], &n[1..])).contains("negative"));
        let mut even = n.to_vec();
        *even.last_mut().unwrap() = 0xfe;
        assert!(refused(&rsa(&[1, 0, 1], &even)).contains("even"));
        for e in [&[][..], &[1], &[2], &[0x80][..]] {
            refused(&rsa(e, n));
        }
        PublicKey::parse(&rsa(&[3], n)).unwrap();
    }

    // `ssh-keygen -t ecdsa -b 256|384|521`.
    const ECDSA: [(&str, &str, usize, u32); 3] = [
        (
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKTzM42U5Ir5sb+9yN2q77TkaK5S7eZzWtO81gtVs+zcbNjdtgvslpWWuvgdJPwBHh4xfpuuBsALbasgcEfw5dU= ec256",
            "nistp256",
            32,
            256,
        ),
        (
            "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBKVbwjyVd0Y7nRw+e1+aooHBCtki8FGMOM9jwMKinzfCPqpcljEW8++jURKpfxegfHfhiv9rTdkugiPNSh/9SBkOxNS+r0103tvpduIrgmATAUR10oK1xANBJPaehK5U0A== ec384",
            "nistp384",
            48,
            384,
        ),
        (
            "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBABNVt69JVXtO/WO39Po+pVrU4lvG0FTi4bdzSdoMwQeD6nZwbyNA0ERt7RKGbsvgu95aeENDdfp7btSEr86vZMDCQEyLuTJct8x881qmYsrTOtAkdro0aZ31oMPTqbJY1k3TKYuCs/p+5TzvfFp2eZmoSdsNUfdh/077kEpf5cMU+bALQ== ec521",
            "nistp521",
            66,
            521,
        ),
    ];

    #[test]
    fn ecdsa_needs_its_curve_and_an_uncompressed_point_on_it() {
        for (text, curve, coordinate, bits) in ECDSA {
            let key = PublicKey::parse(text).unwrap();
            assert_eq!(key.bits, bits);
            let type_name = key.key_type.as_str();
            let mut r = Reader(&key.blob);
            r.string("type").unwrap();
            r.string("curve").unwrap();
            let point = r.string("point").unwrap().to_vec();
            let with = |curve: &str, point: &[u8]| line(type_name, &blob(&[type_name.as_bytes(), curve.as_bytes(), point]));
            assert_eq!(PublicKey::parse(&with(curve, &point)).unwrap().blob, key.blob);

            assert!(refused(&with("nistp999", &point)).contains("curve is \"nistp999\""));
            assert!(refused(&with(curve, &point[..point.len() - 1])).contains("bytes"));
            let mut compressed = point[..1 + coordinate].to_vec();
            compressed[0] = 2 + (point[point.len() - 1] & 1);
            assert!(refused(&with(curve, &compressed)).contains("uncompressed"));
            // y changed by one, a point of 7s, and x = p (in range only below p).
            let mut moved = point.clone();
            *moved.last_mut().unwrap() ^= 1;
            assert!(refused(&with(curve, &moved)).contains("not on the"), "{curve}");
            let mut sevens = vec![4u8];
            sevens.extend(std::iter::repeat_n(7u8, 2 * coordinate));
            assert!(refused(&with(curve, &sevens)).contains("not on the"));
            let p_hex = curve::parameters(key.key_type).unwrap().0;
            let p: Vec<u8> = (0..p_hex.len()).step_by(2).map(|i| u8::from_str_radix(&p_hex[i..i + 2], 16).unwrap()).collect();
            let mut at_p = point.clone();
            at_p[1..1 + coordinate].copy_from_slice(&p);
            assert!(refused(&with(curve, &at_p)).contains("not on the"));
        }
    }

    #[test]
    fn the_blob_must_hold_exactly_the_type_the_line_says() {
        let ed = STANDARD.decode(ED25519.split(' ').nth(1).unwrap()).unwrap();
        // Another type inside, a short key, trailing bytes, cut short.
        assert!(refused(&line("ssh-rsa", &ed)).contains("of type \"ssh-ed25519\""));
        assert!(refused(&line("ssh-ed25519", &blob(&[b"ssh-ed25519", &[1; 31]]))).contains("32"));
        let mut trailing = ed.clone();
        trailing.push(0);
        assert!(refused(&line("ssh-ed25519", &trailing)).contains("after the key"));
        for cut in [0, 3, 4, 10, 18, ed.len() - 1] {
            refused(&line("ssh-ed25519", &ed[..cut]));
        }
        // A length prefix far larger than the blob.
        refused(&line("ssh-ed25519", &[0xff, 0xff, 0xff, 0xff, b's']));
    }

    #[test]
    fn malformed_lines_are_refused_with_the_reason() {
        let data = ED25519.split(' ').nth(1).unwrap();
        let padded = ECDSA[0].0.split(' ').nth(1).unwrap();
        assert!(padded.ends_with('='));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (" \n\t".into(), "empty"),
            ("ssh-ed25519".into(), "no key data"),
            (format!("ssh-ed25519 {}", &data[..data.len() - 1]), "base64"),
            (format!("ssh-ed25519 {}!", &data[..data.len() - 1]), "base64"),
            (format!("ecdsa-sha2-nistp256 {}", padded.trim_end_matches('=')), "base64"),
            (format!("{ED25519}\n{ED25519}"), "more than one line"),
            (format!("{ED25519}\r{ED25519}"), "more than one line"),
            (format!("ssh-ed25519 {data} a\u{0}b"), "control character"),
            (format!("ssh-ed25519 {data} {}", "c".repeat(MAX_COMMENT_LEN + 1)), "comment"),
            (format!("ssh-ed25519 {}", "A".repeat(MAX_PUBLIC_KEY_LEN)), "limit"),
            (format!("ssh-dss {data}"), "DSA"),
            (format!("ssh-ed25519-cert-v01@openssh.com {data}"), "certificates"),
            (format!("sk-ssh-ed25519@openssh.com {data}"), "security-key"),
            (format!("no-pty,command=\"x\" {ED25519}"), "options"),
            (format!("from=\"10.0.0.1\" {ED25519}"), "options"),
            (format!("rsa-sha2-256 {data}"), "unknown key type"),
            ("hello world".into(), "unknown key type"),
        ];
        for (text, says) in cases {
            let message = refused(&text);
            assert!(message.contains(says), "{text:?} was refused with {message:?}");
        }
    }

    #[test]
    fn a_private_key_pasted_by_mistake_is_named_as_such() {
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
        let body_only = format!("ssh-ed25519 {}", STANDARD.encode(b"openssh-key-v1\0\0\0\0\x04none"));
        for text in [
            openssh,
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "PuTTY-User-Key-File-3: ssh-ed25519",
            &body_only,
        ] {
            assert!(refused(text).contains("is a private key"), "{text:?}");
        }
        assert!(refused("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----").contains("RFC 4716"));
        assert!(refused("-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----").contains("PEM"));
    }

    #[test]
    fn type_names_round_trip() {
        for t in SshKeyType::ALL {
            assert_eq!(SshKeyType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
        assert_eq!(SshKeyType::parse("ssh-dss"), None);
    }
}
