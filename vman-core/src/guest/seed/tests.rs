//! The seed's files, its image read back with fatfs and with the host's
//! tools (blkid, mtools, fsck.vfat), and Debian's cloud-init reading it.
//!
//! Tests that need a host tool skip with a reason when it is missing, except
//! under CI=true, where scripts/setup must have installed it and a missing
//! tool fails the test.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;
use crate::ErrorKind;

const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0GQxkr5dN7TJ8ErzTwLUz4dG0hL0bHWlH0mnHDG7r alice@example";
const KEY_B: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDwa9Ubc bob@example";
const KEY_CALLER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPcaller0000000000000000000000000000000000 ops@example";

/// A caller's cloud-config with what real ones have: its own keys, lists,
/// nested mappings, YAML 1.1 values whose meaning differs from YAML 1.2
/// (`yes`, `0644`, `1:20`), quoted look-alikes that must stay text, an
/// anchor with a merge key, and a multi-line string.
const CALLER_USER_DATA: &str = "#cloud-config
# the operator's own settings
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPcaller0000000000000000000000000000000000 ops@example
package_update: true
ssh_pwauth: yes
disable_root: false
packages: [nginx, 'curl']
users:
  - default
  - name: deploy
    groups: [sudo]
    shell: /bin/bash
    sudo: ALL=(ALL) NOPASSWD:ALL
write_files:
  - path: /etc/motd
    permissions: '0644'
    content: |
      Welcome: managed by vman
        indented line
      'quoted' \"and\" # not a comment
  - path: /etc/vman-note
    defer: on
    content: 'yes'
runcmd:
  - [sh, -c, 'echo hello > /tmp/hello']
  - echo 1:20
bootcmd:
  - echo boot
defaults: &d
  owner: 'root:root'
  mode: 0600
vman_extra:
  <<: *d
  timing: 1:20
  flag: off
  text: 'on'
  quoted_octal: '0644'
  hex: 0x1F
  digits_mac: '52:54:00:12:34:56'
";

fn nic(mac: &str, address: &str, prefix_len: u8, gateway: &str, dns: &[&str]) -> SeedNic {
    SeedNic {
        mac: mac.parse().unwrap(),
        set_name: None,
        address: address.parse().unwrap(),
        prefix_len,
        gateway: gateway.parse().unwrap(),
        dns: dns.iter().map(|d| d.parse().unwrap()).collect(),
    }
}

fn config() -> SeedConfig {
    // An all-digit MAC: a base-60 integer to a YAML 1.1 reader unless quoted.
    let mut second = nic("52:54:00:ab:cd:01", "10.1.0.9", 16, "10.1.0.1", &[]);
    second.set_name = Some("data0".into());
    SeedConfig {
        instance_id: "0192f1a0-7c3e-7d4e-8f00-123456789abc".into(),
        hostname: "web1".into(),
        ssh_keys: vec![KEY_A.into(), KEY_B.into()],
        user_data: Some(CALLER_USER_DATA.into()),
        nics: vec![nic("52:54:00:12:34:56", "10.0.0.5", 24, "10.0.0.1", &["10.0.0.1", "1.1.1.1"]), second],
    }
}

/// A top-level mapping as (key, value) with string keys.
fn mapping(text: &str) -> Vec<(String, Node)> {
    match cloud_yaml::load(text).unwrap() {
        Node::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| match k {
                Node::Str(k) => (k, v),
                other => panic!("non-string key {other:?}"),
            })
            .collect(),
        other => panic!("not a mapping: {other:?}"),
    }
}

fn get<'a>(entries: &'a [(String, Node)], key: &str) -> &'a Node {
    &entries.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key}")).1
}

fn strs(items: &[&str]) -> Node {
    Node::Seq(items.iter().map(|s| Node::Str((*s).into())).collect())
}

fn assert_invalid(result: Result<impl std::fmt::Debug>, what: &str, needle: &str) {
    match result {
        Err(Error::InvalidArgument { what: got, reason, .. }) => {
            assert_eq!(got, what, "{reason}");
            assert!(reason.contains(needle), "{what}: {reason:?} lacks {needle:?}");
        }
        other => panic!("expected invalid {what}, got {other:?}"),
    }
}

// ---- the files ---------------------------------------------------------------

#[test]
fn meta_data_names_the_instance_and_host() {
    let files = render(&config()).unwrap();
    let meta = mapping(&files.meta_data);
    assert_eq!(get(&meta, "instance-id"), &Node::Str("0192f1a0-7c3e-7d4e-8f00-123456789abc".into()));
    assert_eq!(get(&meta, "local-hostname"), &Node::Str("web1".into()));
    assert_eq!(meta.len(), 2);
}

#[test]
fn user_data_is_cloud_config_with_the_vms_keys() {
    let files = render(&SeedConfig { user_data: None, ..config() }).unwrap();
    assert!(files.user_data.starts_with("#cloud-config\n"), "{}", files.user_data);
    let user = mapping(&files.user_data);
    assert_eq!(user.len(), 1);
    assert_eq!(get(&user, "ssh_authorized_keys"), &strs(&[KEY_A, KEY_B]));
    // SSH keys stay on one line each (no folding).
    assert!(files.user_data.lines().any(|l| l.ends_with("alice@example")), "{}", files.user_data);
}

#[test]
fn callers_keys_are_kept_the_vms_appended_and_everything_else_survives() {
    let mut cfg = config();
    cfg.ssh_keys.push(KEY_CALLER.into()); // already the caller's: not repeated
    let files = render(&cfg).unwrap();
    let original = mapping(CALLER_USER_DATA);
    let merged = mapping(&files.user_data);
    assert_eq!(get(&merged, "ssh_authorized_keys"), &strs(&[KEY_CALLER, KEY_A, KEY_B]));
    // Every other entry, in the caller's order, equal as cloud-init types it.
    let rest = |m: &[(String, Node)]| m.iter().filter(|(k, _)| k != "ssh_authorized_keys").cloned().collect::<Vec<_>>();
    assert_eq!(rest(&merged), rest(&original));
    assert_eq!(merged.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), original.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
    // The YAML 1.1 meanings held: a boolean, an octal number, a base-60 number,
    // and quoted look-alikes still text.
    assert_eq!(get(&merged, "ssh_pwauth"), &Node::Bool(true));
    let Node::Seq(write_files) = get(&merged, "write_files") else { panic!() };
    let Node::Map(note) = &write_files[1] else { panic!() };
    assert!(note.contains(&(Node::Str("defer".into()), Node::Bool(true))));
    assert!(note.contains(&(Node::Str("content".into()), Node::Str("yes".into()))));
    let s = |t: &str| Node::Str(t.into());
    assert_eq!(
        get(&merged, "vman_extra"),
        &Node::Map(vec![
            (s("owner"), s("root:root")),
            (s("mode"), Node::Int(0o600)),
            (s("timing"), Node::Int(80)),
            (s("flag"), Node::Bool(false)),
            (s("text"), s("on")),
            (s("quoted_octal"), s("0644")),
            (s("hex"), Node::Int(31)),
            (s("digits_mac"), s("52:54:00:12:34:56")),
        ])
    );
}

#[test]
fn caller_without_keys_gets_the_list_added_and_no_keys_at_all_leaves_it_out() {
    let files = render(&SeedConfig { user_data: Some("#cloud-config\nhostname: x\n".into()), ..config() }).unwrap();
    let user = mapping(&files.user_data);
    assert_eq!(user.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["hostname", "ssh_authorized_keys"]);

    // cloud-init's schema wants at least one key in the list.
    let none = SeedConfig { ssh_keys: vec![], user_data: None, ..config() };
    assert_eq!(render(&none).unwrap().user_data, "#cloud-config\n");
    let empty_list = SeedConfig { ssh_keys: vec![], user_data: Some("#cloud-config\nssh_authorized_keys: []\na: 1\n".into()), ..config() };
    let user = mapping(&render(&empty_list).unwrap().user_data);
    assert_eq!(user.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a"]);
    // An empty cloud-config (comments only) is an empty mapping to cloud-init.
    let comments = SeedConfig { user_data: Some("#cloud-config\n# nothing yet\n".into()), ..config() };
    assert_eq!(mapping(&render(&comments).unwrap().user_data).len(), 1);
}

#[test]
fn network_config_matches_each_nic_by_mac_with_the_default_route_on_the_first() {
    let files = render(&config()).unwrap();
    let net = mapping(&files.network_config);
    assert_eq!(get(&net, "version"), &Node::Int(2));
    let Node::Map(ethernets) = get(&net, "ethernets") else { panic!() };
    let ids: Vec<_> = ethernets.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(ids, [Node::Str("nic0".into()), Node::Str("nic1".into())]);
    let eth = |i: usize| match &ethernets[i].1 {
        Node::Map(m) => m.iter().map(|(k, v)| (if let Node::Str(k) = k { k.clone() } else { panic!() }, v.clone())).collect::<Vec<_>>(),
        _ => panic!(),
    };
    let (e0, e1) = (eth(0), eth(1));
    let mac = |e: &[(String, Node)]| match get(e, "match") {
        Node::Map(m) => m.clone(),
        _ => panic!(),
    };
    // The all-digit MAC came back as text, not a number.
    assert_eq!(mac(&e0), vec![(Node::Str("macaddress".into()), Node::Str("52:54:00:12:34:56".into()))]);
    assert_eq!(mac(&e1), vec![(Node::Str("macaddress".into()), Node::Str("52:54:00:ab:cd:01".into()))]);
    assert_eq!(get(&e0, "addresses"), &strs(&["10.0.0.5/24"]));
    assert_eq!(get(&e1, "addresses"), &strs(&["10.1.0.9/16"]));
    let route =
        Node::Map(vec![(Node::Str("to".into()), Node::Str("0.0.0.0/0".into())), (Node::Str("via".into()), Node::Str("10.0.0.1".into()))]);
    assert_eq!(get(&e0, "routes"), &Node::Seq(vec![route]));
    assert!(!e1.iter().any(|(k, _)| k == "routes"), "only the first NIC routes by default");
    assert_eq!(get(&e0, "nameservers"), &Node::Map(vec![(Node::Str("addresses".into()), strs(&["10.0.0.1", "1.1.1.1"]))]));
    assert!(!e1.iter().any(|(k, _)| k == "nameservers"), "no DNS given, none written");
    assert!(!e0.iter().any(|(k, _)| k == "set-name"));
    assert_eq!(get(&e1, "set-name"), &Node::Str("data0".into()));
}

#[test]
fn bad_user_data_is_refused_with_typed_errors() {
    let too_big = format!("#cloud-config\nx: '{}'\n", "a".repeat(MAX_USER_DATA_BYTES));
    for (text, needle) in [
        ("", "must start with the line #cloud-config"),
        ("#!/bin/sh\necho hi\n", "must start with the line #cloud-config"),
        ("runcmd: [ls]\n", "must start with the line #cloud-config"),
        ("#cloud-configx\na: 1\n", "must start with the line #cloud-config"),
        ("#cloud-config\na: [1\n", "is not valid YAML"),
        ("#cloud-config\n- a\n- b\n", "is a list at the top level"),
        ("#cloud-config\njust text\n", "is a string at the top level"),
        ("#cloud-config\nssh_authorized_keys: ssh-ed25519 AAAA\n", "ssh_authorized_keys is a string"),
        ("#cloud-config\nssh_authorized_keys: [1]\n", "ssh_authorized_keys holds a integer"),
        ("#cloud-config\nwhen: 2024-01-02\n", "date or time"),
        ("#cloud-config\na: 1\na: 2\n", "appears twice"),
        ("#cloud-config\na: !python/object x\n", "tag"),
        (too_big.as_str(), "the limit is 16384"),
    ] {
        let result = validate_user_data(text);
        assert_eq!(result.as_ref().map_err(Error::kind).err(), Some(ErrorKind::InvalidArgument), "{text:?}");
        assert_invalid(result, "user-data", needle);
        // render refuses the same, before writing anything.
        assert_invalid(render(&SeedConfig { user_data: Some(text.into()), ..config() }), "user-data", needle);
    }
    // The YAML parser's own error is the cause, not flattened into the message.
    let err = validate_user_data("#cloud-config\na: [1\n").unwrap_err();
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn accepted_user_data_always_renders() {
    // validate_user_data runs the same reader and writer as render, so what
    // VM create accepts, VM start can always write.
    let text = "#cloud-config\n~: a\ntrue: b\n1.5: c\n'': d\n2: [.nan, -.inf, 1180591620717411303424]\nx: {}\ny: []\nz: \"\\u0001\\t\"\n";
    validate_user_data(text).unwrap();
    let user = render(&SeedConfig { user_data: Some(text.into()), ..config() }).unwrap().user_data;
    let Node::Map(entries) = cloud_yaml::load(&user).unwrap() else { panic!() };
    assert_eq!(entries[0], (Node::Null, Node::Str("a".into())));
    assert_eq!(entries[1], (Node::Bool(true), Node::Str("b".into())));
    assert_eq!(entries[2], (Node::Float(1.5), Node::Str("c".into())));
    assert_eq!(entries[3], (Node::Str(String::new()), Node::Str("d".into())));
    assert_eq!(entries[7], (Node::Str("z".into()), Node::Str("\u{1}\t".into())));
}

#[test]
fn user_data_up_to_the_limit_is_accepted() {
    for text in ["#cloud-config\n", "#cloud-config", "#cloud-config\r\na: 1\r\n", CALLER_USER_DATA] {
        validate_user_data(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    let head = "#cloud-config\nx: '";
    let at_limit = format!("{head}{}'\n", "a".repeat(MAX_USER_DATA_BYTES - head.len() - 2));
    assert_eq!(at_limit.len(), MAX_USER_DATA_BYTES);
    validate_user_data(&at_limit).unwrap();
}

#[test]
fn bad_fields_are_refused_with_typed_errors() {
    let with = |f: &dyn Fn(&mut SeedConfig)| {
        let mut c = config();
        f(&mut c);
        render(&c)
    };
    assert_invalid(with(&|c| c.instance_id = "../etc".into()), "instance id", "contains '/'");
    assert_invalid(with(&|c| c.instance_id = String::new()), "instance id", "1 to 128");
    assert_invalid(with(&|c| c.instance_id = "..".into()), "instance id", "names no directory");
    assert_invalid(with(&|c| c.hostname = "web_1".into()), "hostname", "contains '_'");
    assert_invalid(with(&|c| c.hostname = "-web".into()), "hostname", "starts or ends");
    assert_invalid(with(&|c| c.hostname = "a..b".into()), "hostname", "label of 0 bytes");
    assert_invalid(with(&|c| c.ssh_keys.push("ssh-ed25519 AAAA x\nssh-rsa BBBB".into())), "SSH key", "one line");
    assert_invalid(with(&|c| c.ssh_keys.push("  ".into())), "SSH key", "empty");
    assert_invalid(with(&|c| c.nics[0].prefix_len = 0), "NIC", "outside 1–32");
    assert_invalid(with(&|c| c.nics[0].prefix_len = 33), "NIC", "outside 1–32");
    assert_invalid(with(&|c| c.nics[0].gateway = "10.9.0.1".parse().unwrap()), "NIC", "gateway 10.9.0.1");
    assert_invalid(with(&|c| c.nics[0].gateway = c.nics[0].address), "NIC", "gateway");
    assert_invalid(with(&|c| c.nics[0].address = "0.0.0.0".parse().unwrap()), "NIC", "not a host address");
    assert_invalid(with(&|c| c.nics[1].mac = c.nics[0].mac), "NIC", "given twice");
    assert_invalid(with(&|c| c.nics[0].mac = MacAddr([1, 0, 0x5e, 0, 0, 1])), "NIC", "unicast");
    assert_invalid(with(&|c| c.nics[0].dns.push("224.0.0.1".parse().unwrap())), "NIC", "DNS server");
    assert_invalid(with(&|c| c.nics[0].set_name = Some("a-very-long-name0".into())), "NIC", "interface name");
    assert_invalid(with(&|c| c.nics[0].set_name = Some("eth/0".into())), "NIC", "interface name");
    // A VM without NICs still gets a valid (empty) network-config.
    let files = with(&|c| c.nics.clear()).unwrap();
    assert_eq!(get(&mapping(&files.network_config), "ethernets"), &Node::Map(vec![]));
}

#[test]
fn hostnames_derived_from_vm_names_are_valid() {
    for (name, host) in [
        ("web1", "web1"),
        ("web_1", "web-1"),
        ("db.prod", "db.prod"),
        ("a_", "a"),
        ("x.", "x"),
        ("1-2-3", "1-2-3"),
        ("_", "vm"),
        ("a.__.b", "a.b"),
    ] {
        assert_eq!(hostname_for(name), host, "{name}");
        validate_hostname(&hostname_for(name)).unwrap();
    }
    let long = format!("{}_{}", "a".repeat(62), "b");
    let host = hostname_for(&long);
    assert!(host.len() <= 63 && !host.ends_with('-'), "{host}");
    validate_hostname(&host).unwrap();
}

// ---- the image -----------------------------------------------------------------

fn read_with_fatfs(path: &Path) -> (String, Option<String>, HashMap<String, String>) {
    let file = std::fs::File::open(path).unwrap();
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
    let label = fs.volume_label();
    let root_label = fs.read_volume_label_from_root_dir().unwrap();
    let mut files = HashMap::new();
    for entry in fs.root_dir().iter() {
        let entry = entry.unwrap();
        let mut text = String::new();
        entry.to_file().read_to_string(&mut text).unwrap();
        files.insert(entry.file_name(), text);
    }
    (label, root_label, files)
}

fn written(dir: &Path) -> (PathBuf, SeedFiles) {
    let files = render(&config()).unwrap();
    let path = dir.join("seed.img");
    write_image(&path, &files).unwrap();
    (path, files)
}

#[test]
fn the_image_reads_back_with_fatfs() {
    let dir = tempfile::tempdir().unwrap();
    let (path, files) = written(dir.path());
    let (label, root_label, read) = read_with_fatfs(&path);
    assert_eq!(label.trim_end(), "cidata");
    assert_eq!(root_label.as_deref().map(str::trim_end), Some("cidata"));
    let want: HashMap<String, String> = files.entries().iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
    assert_eq!(read, want);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_IMAGE_BYTES);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // Only the image is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["seed.img"]);
}

#[test]
fn rewriting_replaces_the_image_and_a_failed_write_leaves_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = written(dir.path());
    let mut other = config();
    other.hostname = "web2".into();
    let files2 = render(&other).unwrap();
    write_image(&path, &files2).unwrap();
    assert_eq!(read_with_fatfs(&path).2["meta-data"], files2.meta_data);

    // The rename cannot land on a directory: the write fails, its temporary
    // file is gone, and what was there is untouched.
    let blocker = dir.path().join("taken");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), "x").unwrap();
    let err = write_image(&blocker, &files2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(blocker.join("keep").exists());
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["seed.img", "taken"]);
    // A directory that does not exist is an I/O error too, not a panic.
    assert_eq!(write_image(&dir.path().join("missing/seed.img"), &files2).unwrap_err().kind(), ErrorKind::Io);
}

#[test]
fn large_user_data_grows_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.ssh_keys = (0..10_000).map(|i| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:040} k{i}@example")).collect();
    let files = render(&cfg).unwrap();
    assert!(files.user_data.len() > 800 * 1024);
    let path = dir.path().join("seed.img");
    write_image(&path, &files).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > MIN_IMAGE_BYTES);
    assert_eq!(read_with_fatfs(&path).2["user-data"], files.user_data);
}

// ---- host tools ----------------------------------------------------------------

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether `program` can be run; outside CI a missing one skips the test.
fn have(program: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(_) => true,
        Err(e) if in_ci() => panic!("{program} is not installed ({e}); scripts/setup installs it"),
        Err(e) => {
            eprintln!("skipping: {program} is not installed ({e}); run scripts/setup");
            false
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).env("MTOOLS_SKIP_CHECK", "1").output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn blkid_mtools_and_fsck_read_the_image() {
    if !(have("blkid") && have("mdir") && have("mtype") && have("fsck.vfat")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, files) = written(dir.path());
    let img = path.to_str().unwrap();
    assert_eq!(stdout_of("blkid", &["-p", "-o", "value", "-s", "LABEL", img]).trim(), "cidata");
    assert_eq!(stdout_of("blkid", &["-p", "-o", "value", "-s", "TYPE", img]).trim(), "vfat");
    let listing = stdout_of("mdir", &["-i", img, "-b", "::/"]);
    let mut names: Vec<&str> = listing.lines().map(|l| l.trim_start_matches("::/")).collect();
    names.sort_unstable();
    assert_eq!(names, ["meta-data", "network-config", "user-data"], "{listing}");
    for (name, text) in files.entries() {
        assert_eq!(stdout_of("mtype", &["-i", img, &format!("::/{name}")]), text, "{name}");
    }
    let fsck = run("fsck.vfat", &["-n", img]);
    let report = String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "fsck.vfat -n: {report}");
    // A clean check prints its version and one summary line, nothing else
    // (the label's directory entry counts as a fourth file).
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(lines[1].contains(": 4 files, "), "{report}");
}

// ---- cloud-init ----------------------------------------------------------------

const PYTHON: &str = "/usr/bin/python3";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// cloud-init's Python package, unpacked by tests/guest/cloud-init.sh.
fn cloud_init() -> Option<&'static PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let found = DIR.get_or_init(|| {
        let script = repo().join("tests/guest/cloud-init.sh");
        let out = Command::new(&script).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("python"))
    });
    match found {
        Ok(dir) => Some(dir),
        Err(reason) if in_ci() => panic!("{reason}"),
        Err(reason) => {
            eprintln!("skipping: {reason}");
            None
        }
    }
}

fn python(site: &Path, args: &[&str]) -> Output {
    Command::new(PYTHON).args(args).env("PYTHONPATH", site).current_dir(repo()).output().unwrap()
}

/// `cloud-init schema --config-file FILE`, as Debian's package runs it.
fn cloud_init_schema(site: &Path, file: &Path) -> Output {
    python(site, &["-m", "cloudinit.cmd.main", "schema", "--config-file", file.to_str().unwrap()])
}

/// tests/guest/cloud_init_check.py over a seed directory: what cloud-init's
/// NoCloud reader and network parser made of it.
fn cloud_init_read(site: &Path, seed_dir: &Path) -> std::result::Result<Value, String> {
    let out = python(site, &["tests/guest/cloud_init_check.py", seed_dir.to_str().unwrap()]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// PyYAML's `safe_load` of a file, as JSON.
fn pyyaml(site: &Path, file: &Path) -> Value {
    let code = "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout, default=str)";
    let out = python(site, &["-c", code, file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copies the seed's files out of the image with mtools, so cloud-init
/// reads exactly what the image holds.
fn extract(img: &Path, to: &Path) {
    for name in ["meta-data", "user-data", "network-config"] {
        let dest = to.join(name);
        stdout_of("mcopy", &["-n", "-i", img.to_str().unwrap(), &format!("::/{name}"), dest.to_str().unwrap()]);
    }
}

#[test]
fn debian_cloud_init_accepts_the_seed() {
    if !(have("mcopy") && have(PYTHON)) {
        return;
    }
    let Some(site) = cloud_init() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = written(dir.path());
    let seed = dir.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    extract(&img, &seed);

    // `cloud-init schema` validates the user-data against the package's schema.
    let out = cloud_init_schema(site, &seed.join("user-data"));
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("Valid cloud-config"), "{said}");

    let read = cloud_init_read(site, &seed).unwrap_or_else(|e| panic!("cloud-init could not read the seed: {e}"));
    assert_eq!(read["meta_data"], json!({"instance-id": "0192f1a0-7c3e-7d4e-8f00-123456789abc", "local-hostname": "web1"}));

    // The user-data as cloud-init loads it is the caller's document as
    // cloud-init loads it, with the VM's keys appended to the caller's.
    let caller = dir.path().join("caller.yaml");
    std::fs::write(&caller, CALLER_USER_DATA).unwrap();
    let mut want = pyyaml(site, &caller);
    want["ssh_authorized_keys"] = json!([KEY_CALLER, KEY_A, KEY_B]);
    assert_eq!(read["user_data"], want);
    assert_eq!(read["user_data"]["write_files"][0]["permissions"], json!("0644"));
    assert_eq!(read["user_data"]["ssh_pwauth"], json!(true));
    assert_eq!(
        read["user_data"]["vman_extra"],
        json!({"owner": "root:root", "mode": 0o600, "timing": 80, "flag": false, "text": "on",
               "quoted_octal": "0644", "hex": 31, "digits_mac": "52:54:00:12:34:56"})
    );

    let net = &read["network"];
    assert_eq!(net["version"], json!(2));
    assert_eq!(
        net["interfaces"],
        json!([
            {"name": "nic0", "mac_address": "52:54:00:12:34:56", "subnets": [{
                "address": "10.0.0.5", "prefix": 24,
                "routes": [{"network": "0.0.0.0", "prefix": 0, "gateway": "10.0.0.1"}],
                "dns_nameservers": ["10.0.0.1", "1.1.1.1"]}]},
            {"name": "data0", "mac_address": "52:54:00:ab:cd:01", "subnets": [{
                "address": "10.1.0.9", "prefix": 16, "routes": [], "dns_nameservers": []}]},
        ])
    );
    let eni = net["eni"].as_str().unwrap();
    for line in
        ["iface nic0 inet static", "address 10.0.0.5/24", "route add default gw 10.0.0.1", "iface data0 inet static", "address 10.1.0.9/16"]
    {
        assert!(eni.contains(line), "{line:?} not in:\n{eni}");
    }
    assert_eq!(eni.matches("route add default").count(), 1, "{eni}");
}

#[test]
fn cloud_init_rejects_broken_files_so_its_acceptance_means_something() {
    if !have(PYTHON) {
        return;
    }
    let Some(site) = cloud_init() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = render(&config()).unwrap();
    let seed = |name: &str, meta: &str, user: &str, net: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("meta-data"), meta).unwrap();
        std::fs::write(d.join("user-data"), user).unwrap();
        std::fs::write(d.join("network-config"), net).unwrap();
        d
    };
    let good = seed("good", &files.meta_data, &files.user_data, &files.network_config);
    cloud_init_read(site, &good).unwrap();

    // A schema violation in user-data fails `cloud-init schema`.
    let bad_user = dir.path().join("bad-user-data");
    std::fs::write(&bad_user, "#cloud-config\nssh_authorized_keys: 12\npackage_update: maybe\n").unwrap();
    let out = cloud_init_schema(site, &bad_user);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ssh_authorized_keys"), "{}", String::from_utf8_lossy(&out.stderr));

    // An address cloud-init cannot use, an unknown section, and an unquoted
    // all-digit MAC (a number to YAML 1.1) all fail its network parser.
    for (name, broken) in [
        ("bad-address", files.network_config.replace("10.0.0.5/24", "10.0.0.300/24")),
        ("bad-section", files.network_config.replace("ethernets:", "ethernet:")),
        ("bad-mac", files.network_config.replace("\"52:54:00:12:34:56\"", "52:54:00:12:34:56")),
    ] {
        assert_ne!(broken, files.network_config, "{name}: the edit must change the file");
        let d = seed(name, &files.meta_data, &files.user_data, &broken);
        assert!(cloud_init_read(site, &d).is_err(), "{name} was accepted:\n{broken}");
    }
}
