//! The cloud-init NoCloud seed: the three files a cloud image reads on first
//! boot, on a small vfat image labelled `cidata`.
//!
//! - `meta-data`: the instance id (stable per VM: cloud-init runs its
//!   first-boot modules again whenever it changes) and the hostname.
//! - `user-data`: `#cloud-config` with the VM's SSH keys in
//!   `ssh_authorized_keys`, merged into the caller's own cloud-config.
//! - `network-config`: netplan-style version 2, each NIC matched by its MAC,
//!   with the address, prefix, gateway and DNS servers vman allocated — so
//!   vman knows the guest's address without a guest agent.
//!
//! Pure functions ([`render`], [`validate_user_data`]) plus one file
//! operation ([`write_image`]); when to write and attach the seed is the
//! VM lifecycle's business. The caller's user-data is read the way cloud-init
//! reads it (YAML 1.1; see `cloud_yaml`), so merging never changes what the
//! rest of it means to cloud-init.

mod cloud_yaml;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::ser::SerializeMap;

use self::cloud_yaml::{LoadError, Node};
use crate::error::{Error, Result};
use crate::net::mac::MacAddr;

/// The largest user-data accepted, in bytes: EC2's limit, which cloud
/// images and their users already live within.
pub(crate) const MAX_USER_DATA_BYTES: usize = 16 * 1024;

/// The filesystem label cloud-init's NoCloud data source looks for.
pub(crate) const SEED_LABEL: &str = "cidata";

/// The first line every user-data must have.
const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

/// The smallest seed image; the three files need a few KiB, and 1 MiB is
/// the smallest size block devices are commonly rounded to.
const MIN_IMAGE_BYTES: u64 = 1024 * 1024;

/// The key under which cloud-config lists the default user's SSH keys.
const SSH_KEYS_KEY: &str = "ssh_authorized_keys";

/// What a VM's seed says.
#[derive(Debug, Clone)]
pub(crate) struct SeedConfig {
    /// Stable per VM (e.g. its id); cloud-init reruns first-boot setup when
    /// it changes. Letters, digits, `.`, `_`, `-`; it names a directory in
    /// the guest.
    pub instance_id: String,
    /// The guest's hostname (`local-hostname`), a DNS name; see
    /// [`hostname_for`] to derive one from a VM name.
    pub hostname: String,
    /// The VM's SSH public keys, one OpenSSH line each (`ssh-ed25519 AAAA… comment`).
    pub ssh_keys: Vec<String>,
    /// The caller's own `#cloud-config`, already checked by
    /// [`validate_user_data`] when it was given.
    pub user_data: Option<String>,
    /// The VM's NICs in guest order; the first one gets the default route.
    pub nics: Vec<SeedNic>,
}

/// One NIC as the guest should configure it.
#[derive(Debug, Clone)]
pub(crate) struct SeedNic {
    /// The NIC's MAC; the guest finds the interface by it.
    pub mac: MacAddr,
    /// The interface name to give it (netplan `set-name`), or keep the
    /// guest's own name.
    pub set_name: Option<String>,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its prefix length, 1–32.
    pub prefix_len: u8,
    /// The network's gateway, inside the NIC's subnet.
    pub gateway: Ipv4Addr,
    /// The network's DNS servers, in order.
    pub dns: Vec<Ipv4Addr>,
}

/// The three files of a seed, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedFiles {
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data`.
    pub user_data: String,
    /// `network-config`.
    pub network_config: String,
}

impl SeedFiles {
    /// The files as they are named on the seed.
    pub(crate) fn entries(&self) -> [(&'static str, &str); 3] {
        [("meta-data", &self.meta_data), ("user-data", &self.user_data), ("network-config", &self.network_config)]
    }
}

/// Checks user-data a caller gives for a VM, at the earliest point (VM
/// create or update): `#cloud-config` on the first line, then YAML whose top
/// level is a mapping (or empty), at most [`MAX_USER_DATA_BYTES`] bytes, with
/// `ssh_authorized_keys`, if present, a list of strings. Other user-data
/// formats (scripts, MIME multipart) are refused because vman must merge
/// the VM's keys into it.
pub(crate) fn validate_user_data(text: &str) -> Result<()> {
    // Written out too (without keys), so what is accepted here always renders.
    render_user_data(Some(text), &[]).map(drop)
}

/// Renders the three files of a VM's seed. Every field is checked; bad
/// input is an [`Error::InvalidArgument`] naming the field.
pub(crate) fn render(config: &SeedConfig) -> Result<SeedFiles> {
    validate_instance_id(&config.instance_id)?;
    validate_hostname(&config.hostname)?;
    for key in &config.ssh_keys {
        validate_key_line(key)?;
    }
    let meta_data = emit("meta-data", &MetaData { instance_id: &config.instance_id, local_hostname: &config.hostname })?;
    let user_data = render_user_data(config.user_data.as_deref(), &config.ssh_keys)?;
    let network_config = render_network_config(&config.nics)?;
    Ok(SeedFiles { meta_data, user_data, network_config })
}

/// A DNS hostname for a VM name: `_` becomes `-`, `.` separates labels,
/// labels lose leading and trailing `-` and are cut to 63 bytes; a name
/// with nothing left becomes `vm`. VM names are already ASCII letters,
/// digits, `-`, `_` and `.` (see [`crate::validate_name`]).
pub(crate) fn hostname_for(name: &str) -> String {
    let labels: Vec<String> = name
        .split('.')
        .map(|label| {
            let label: String = label.chars().filter(char::is_ascii).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
            let label = label.trim_matches('-');
            label[..label.len().min(63)].trim_end_matches('-').to_owned()
        })
        .filter(|label| !label.is_empty())
        .collect();
    let host = labels.join(".");
    if host.is_empty() { "vm".to_owned() } else { host[..host.len().min(253)].trim_end_matches(['.', '-']).to_owned() }
}

/// Writes `files` as a vfat image labelled `cidata` at `path`, replacing any
/// file there atomically: the image is built in a temporary file in the
/// same directory, synced, then renamed over `path` (and the directory
/// synced), so a crash leaves the old image or the new one, never a part.
/// The file is created with mode 0600; whoever hands it to QEMU gives QEMU's
/// user access.
pub(crate) fn write_image(path: &Path, files: &SeedFiles) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::invalid("seed image path", format!("{} names no file", path.display())));
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp_name);

    let result = build_image(&tmp, files).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| Error::io("replace seed image", path, e))?;
        // The rename is durable only once the directory is.
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("sync directory", dir, e))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn build_image(tmp: &Path, files: &SeedFiles) -> Result<()> {
    let io = |action: &'static str| move |e: std::io::Error| Error::io(action, PathBuf::from(tmp), e);
    let content: u64 = files.entries().iter().map(|(_, text)| text.len() as u64).sum();
    // Room for the FAT structures and cluster rounding, in whole MiB.
    let size = (content + 256 * 1024).next_multiple_of(MIN_IMAGE_BYTES).max(MIN_IMAGE_BYTES);
    let mut file = fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(tmp).map_err(io("create seed image"))?;
    file.set_len(size).map_err(io("size seed image"))?;
    let mut label = [b' '; 11];
    label[..SEED_LABEL.len()].copy_from_slice(SEED_LABEL.as_bytes());
    fatfs::format_volume(&mut file, fatfs::FormatVolumeOptions::new().volume_label(label)).map_err(io("format seed image"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("format seed image"))?;
    {
        let fs = fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new()).map_err(io("open seed filesystem"))?;
        for (name, text) in files.entries() {
            let mut f = fs.root_dir().create_file(name).map_err(io("write seed file"))?;
            f.truncate().map_err(io("write seed file"))?;
            f.write_all(text.as_bytes()).map_err(io("write seed file"))?;
            f.flush().map_err(io("write seed file"))?;
        }
        fs.unmount().map_err(io("close seed filesystem"))?;
    }
    file.sync_all().map_err(io("sync seed image"))
}

// ---- meta-data ---------------------------------------------------------------

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

fn validate_instance_id(id: &str) -> Result<()> {
    let what = "instance id";
    if id.is_empty() || id.len() > 128 {
        return Err(Error::invalid(what, format!("is {} bytes; it needs 1 to 128", id.len())));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(Error::invalid(what, format!("{id:?} contains {c:?}; use letters, digits, '.', '_' and '-'")));
    }
    if id == "." || id == ".." {
        return Err(Error::invalid(what, format!("{id:?} names no directory")));
    }
    Ok(())
}

fn validate_hostname(host: &str) -> Result<()> {
    let what = "hostname";
    if host.is_empty() || host.len() > 253 {
        return Err(Error::invalid(what, format!("is {} bytes; it needs 1 to 253", host.len())));
    }
    for label in host.split('.') {
        let reason = if label.is_empty() || label.len() > 63 {
            format!("{host:?} has a label of {} bytes; each needs 1 to 63", label.len())
        } else if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            format!("{host:?} contains {c:?}; use letters, digits, '-' and '.'")
        } else if label.starts_with('-') || label.ends_with('-') {
            format!("{host:?} has a label that starts or ends with '-'")
        } else {
            continue;
        };
        return Err(Error::invalid(what, reason));
    }
    Ok(())
}

// ---- user-data ---------------------------------------------------------------

fn validate_key_line(key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::invalid("SSH key", "is empty"));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid("SSH key", "must be one line without control characters"));
    }
    Ok(())
}

/// The caller's user-data as its top-level entries (empty for an empty
/// document), with every check of [`validate_user_data`].
fn parse_user_data(text: &str) -> Result<Vec<(Node, Node)>> {
    const WHAT: &str = "user-data";
    if text.len() > MAX_USER_DATA_BYTES {
        return Err(Error::invalid(WHAT, format!("is {} bytes; the limit is {MAX_USER_DATA_BYTES}", text.len())));
    }
    let first_line = text.lines().next().unwrap_or("");
    if first_line.trim_end() != CLOUD_CONFIG_HEADER {
        return Err(Error::invalid(
            WHAT,
            format!(
                "must start with the line {CLOUD_CONFIG_HEADER}; vman merges the VM's SSH keys into it, so no other format is accepted"
            ),
        ));
    }
    let node = cloud_yaml::load(text).map_err(|e| match e {
        LoadError::Syntax(cause) => Error::invalid_because(WHAT, "is not valid YAML", cause),
        refused @ LoadError::Refused { .. } => Error::invalid(WHAT, refused.to_string()),
    })?;
    let entries = match node {
        Node::Map(entries) => entries,
        Node::Null => Vec::new(),
        other => return Err(Error::invalid(WHAT, format!("is a {} at the top level; cloud-config is a mapping", other.kind()))),
    };
    if let Some((_, keys)) = entries.iter().find(|(k, _)| *k == Node::Str(SSH_KEYS_KEY.into())) {
        let Node::Seq(items) = keys else {
            return Err(Error::invalid(WHAT, format!("{SSH_KEYS_KEY} is a {}; it must be a list of strings", keys.kind())));
        };
        if let Some(item) = items.iter().find(|item| !matches!(item, Node::Str(_))) {
            return Err(Error::invalid(WHAT, format!("{SSH_KEYS_KEY} holds a {}; it must be a list of strings", item.kind())));
        }
    }
    Ok(entries)
}

/// `#cloud-config` with the caller's entries in their order, and
/// `ssh_authorized_keys` = the caller's keys, then the VM's keys that are
/// not already there. The list is left out when empty (cloud-init's schema
/// wants at least one key).
fn render_user_data(caller: Option<&str>, vm_keys: &[String]) -> Result<String> {
    let mut entries = match caller {
        Some(text) => parse_user_data(text)?,
        None => Vec::new(),
    };
    let key_node = Node::Str(SSH_KEYS_KEY.into());
    let position = entries.iter().position(|(k, _)| *k == key_node);
    let mut keys = match position {
        Some(i) => match &entries[i].1 {
            Node::Seq(items) => items.clone(),
            _ => Vec::new(), // parse_user_data refused anything else
        },
        None => Vec::new(),
    };
    let mut present: std::collections::HashSet<String> =
        keys.iter().filter_map(|k| if let Node::Str(k) = k { Some(k.clone()) } else { None }).collect();
    for key in vm_keys {
        let key = key.trim();
        if present.insert(key.to_owned()) {
            keys.push(Node::Str(key.to_owned()));
        }
    }
    match (position, keys.is_empty()) {
        (Some(i), false) => entries[i].1 = Node::Seq(keys),
        (Some(i), true) => {
            entries.remove(i);
        }
        (None, false) => entries.push((key_node, Node::Seq(keys))),
        (None, true) => {}
    }
    let body = if entries.is_empty() { String::new() } else { emit("user-data", &Node::Map(entries))? };
    Ok(format!("{CLOUD_CONFIG_HEADER}\n{body}"))
}

// ---- network-config ----------------------------------------------------------

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: Ethernets,
}

/// Ethernets keyed `nic0`, `nic1`… in NIC order (a BTreeMap would put
/// `nic10` before `nic2`). With `match`, the key is only a label.
struct Ethernets(Vec<(String, Ethernet)>);

impl Serialize for Ethernets {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, ethernet) in &self.0 {
            map.serialize_entry(id, ethernet)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Ethernet {
    #[serde(rename = "match")]
    matches: MatchMac,
    #[serde(rename = "set-name", skip_serializing_if = "Option::is_none")]
    set_name: Option<String>,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct MatchMac {
    macaddress: String,
}

#[derive(Serialize)]
struct Route {
    to: &'static str,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

fn render_network_config(nics: &[SeedNic]) -> Result<String> {
    const WHAT: &str = "NIC";
    // The VM's own check bounds how many NICs there are (MAX_NICS); a seed
    // takes whatever its VM has.
    let mut ethernets = Vec::with_capacity(nics.len());
    for (i, nic) in nics.iter().enumerate() {
        check_nic(nic)?;
        if nics[..i].iter().any(|other| other.mac == nic.mac) {
            return Err(Error::invalid(WHAT, format!("MAC {} is given twice", nic.mac)));
        }
        // The default route goes on the first NIC only. Every vman network
        // has a gateway, but a guest with one default route per NIC has
        // several equal routes and sends replies out of whichever the kernel
        // picks, often not the NIC a connection came in on; the first NIC is
        // the VM's primary one, the others reach their own subnets directly.
        // `routes` rather than `gateway4`, which netplan deprecates; every
        // cloud-init renderer reads both.
        let routes = if i == 0 { vec![Route { to: "0.0.0.0/0", via: nic.gateway.to_string() }] } else { Vec::new() };
        let nameservers = (!nic.dns.is_empty()).then(|| Nameservers { addresses: nic.dns.iter().map(Ipv4Addr::to_string).collect() });
        ethernets.push((
            format!("nic{i}"),
            Ethernet {
                matches: MatchMac { macaddress: nic.mac.to_string() },
                set_name: nic.set_name.clone(),
                addresses: vec![format!("{}/{}", nic.address, nic.prefix_len)],
                routes,
                nameservers,
            },
        ));
    }
    emit("network-config", &NetworkConfig { version: 2, ethernets: Ethernets(ethernets) })
}

fn check_nic(nic: &SeedNic) -> Result<()> {
    const WHAT: &str = "NIC";
    if nic.mac.is_multicast() || nic.mac.0 == [0; 6] {
        return Err(Error::invalid(WHAT, format!("MAC {} is not a unicast address", nic.mac)));
    }
    if !(1..=32).contains(&nic.prefix_len) {
        return Err(Error::invalid(WHAT, format!("prefix length {} is outside 1–32", nic.prefix_len)));
    }
    let usable = |a: Ipv4Addr| !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback());
    if !usable(nic.address) {
        return Err(Error::invalid(WHAT, format!("{} is not a host address", nic.address)));
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(nic.prefix_len)).unwrap_or(0);
    if !usable(nic.gateway) || u32::from(nic.gateway) & mask != u32::from(nic.address) & mask || nic.gateway == nic.address {
        return Err(Error::invalid(WHAT, format!("gateway {} is not another host of {}/{}", nic.gateway, nic.address, nic.prefix_len)));
    }
    if let Some(dns) = nic.dns.iter().find(|d| !usable(**d)) {
        return Err(Error::invalid(WHAT, format!("DNS server {dns} is not a host address")));
    }
    if let Some(name) = &nic.set_name {
        // The kernel's own rule (dev_valid_name): 1–15 bytes, no '/', ':' or space.
        let bad = name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control() || !c.is_ascii());
        if bad {
            return Err(Error::invalid(WHAT, format!("interface name {name:?} is not 1–15 ASCII characters without '/', ':' or spaces")));
        }
    }
    Ok(())
}

// ---- YAML ----------------------------------------------------------------------

/// One file's YAML. serde-saphyr quotes every string a YAML 1.1 reader
/// would take for a number, boolean, null or date (a MAC like
/// `52:54:00:12:34:56` is a base-60 integer to PyYAML), and with block
/// scalars off, long strings such as SSH keys stay on one line unfolded.
fn emit<T: Serialize>(file: &'static str, value: &T) -> Result<String> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| Error::Internal(format!("cannot write the seed's {file}: {e}")))
}

#[cfg(test)]
mod tests;
