//! The SSH key catalogue through the public API, against keys made by the
//! real `ssh-keygen`: its fingerprints and sizes are the oracle.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use vman_core::{ErrorKind, Manager, NetworkSpec, ObjectKind, OpenOptions, SshKeyType, TemplateSpec, VmSpec};

fn open() -> (tempfile::TempDir, Manager) {
    let dir = tempfile::tempdir().unwrap();
    let vman = Manager::open(dir.path().join("state"), &OpenOptions::default()).unwrap();
    (dir, vman)
}

/// `ssh-keygen` is part of the test setup (scripts/setup installs
/// openssh-client); outside CI a machine without it skips, in CI it fails.
fn have_ssh_keygen() -> bool {
    if Command::new("ssh-keygen").arg("-?").output().is_ok() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "ssh-keygen is missing in CI; scripts/setup installs openssh-client");
    eprintln!("skipping: ssh-keygen is not installed (run scripts/setup)");
    false
}

/// Makes a key pair with ssh-keygen; returns the private key's path (the
/// public key is beside it, with `.pub`).
fn keygen(dir: &Path, file: &str, key_type: &str, bits: Option<u32>, comment: &str) -> PathBuf {
    let path = dir.join(file);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", key_type, "-N", "", "-C", comment, "-f"]).arg(&path);
    if let Some(bits) = bits {
        cmd.args(["-b", &bits.to_string()]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "ssh-keygen -t {key_type}: {}", String::from_utf8_lossy(&out.stderr));
    path
}

fn public(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub")).unwrap()
}

/// What `ssh-keygen -l -E <hash>` prints: `bits fingerprint comment (TYPE)`.
fn ssh_keygen_l(private: &Path, hash: &str) -> (u32, String) {
    let out = Command::new("ssh-keygen").args(["-l", "-E", hash, "-f"]).arg(private.with_extension("pub")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = text.split_whitespace();
    (fields.next().unwrap().parse().unwrap(), fields.next().unwrap().to_string())
}

/// Every row of the tables a key operation may touch.
fn snapshot(vman: &Manager) -> String {
    let conn = rusqlite::Connection::open(vman.state_dir().join("vman.db")).unwrap();
    let mut out = String::new();
    for table in ["ssh_keys", "vm_ssh_keys", "vms", "nics", "free_ranges", "events"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY rowid")).unwrap();
        let n = stmt.column_count();
        let rows =
            stmt.query_map([], |r| Ok((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))).unwrap();
        for row in rows {
            out.push_str(&format!("{table}:{}\n", row.unwrap()));
        }
    }
    out
}

fn refused<T: std::fmt::Debug>(vman: &Manager, kind: ErrorKind, says: &str, f: impl FnOnce(&Manager) -> vman_core::Result<T>) {
    let before = snapshot(vman);
    let err = f(vman).expect_err("call should fail");
    assert_eq!(err.kind(), kind, "{}", err.full_message());
    assert!(err.full_message().contains(says), "{:?} does not say {says:?}", err.full_message());
    assert_eq!(snapshot(vman), before, "a refused call changed the store: {err}");
}

#[test]
fn fingerprints_and_bits_are_what_ssh_keygen_prints() {
    if !have_ssh_keygen() {
        return;
    }
    let (dir, vman) = open();
    let cases = [
        ("ed25519", None, SshKeyType::Ed25519),
        ("ecdsa", Some(256), SshKeyType::EcdsaP256),
        ("ecdsa", Some(384), SshKeyType::EcdsaP384),
        ("ecdsa", Some(521), SshKeyType::EcdsaP521),
        ("rsa", Some(2048), SshKeyType::Rsa),
        ("rsa", Some(3072), SshKeyType::Rsa),
        ("rsa", Some(4096), SshKeyType::Rsa),
    ];
    for (i, (tool_type, bits, key_type)) in cases.into_iter().enumerate() {
        let name = format!("key{i}");
        let comment = format!("user{i}@host {tool_type}");
        let private = keygen(dir.path(), &name, tool_type, bits, &comment);
        let line = public(&private);
        let key = vman.import_ssh_key(&name, &line).unwrap();
        let (sha_bits, sha256) = ssh_keygen_l(&private, "sha256");
        let (md5_bits, md5) = ssh_keygen_l(&private, "md5");
        assert_eq!((key.bits, key.bits), (sha_bits, md5_bits), "{tool_type} {bits:?}");
        assert_eq!(key.fingerprint_sha256, sha256, "{tool_type} {bits:?}");
        assert_eq!(key.fingerprint_md5, md5, "{tool_type} {bits:?}");
        assert_eq!(key.key_type, key_type);
        assert_eq!(key.public_key, line.trim_end(), "ssh-keygen's own line is already normalized");
        assert_eq!(key.comment, comment);
        assert_eq!(vman.ssh_key(&name).unwrap(), key);
    }
    let names: Vec<String> = vman.ssh_keys().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["key0", "key1", "key2", "key3", "key4", "key5", "key6"]);

    // A key with no comment (ssh-keygen leaves a trailing space).
    let private = keygen(dir.path(), "bare", "ed25519", None, "");
    let key = vman.import_ssh_key("bare", &public(&private)).unwrap();
    assert_eq!((key.comment.as_str(), key.fingerprint_sha256), ("", ssh_keygen_l(&private, "sha256").1));
    assert!(!key.public_key.ends_with(' '));
}

#[test]
fn bad_keys_and_names_are_typed_errors_that_change_nothing() {
    if !have_ssh_keygen() {
        return;
    }
    let (dir, vman) = open();
    let good = public(&keygen(dir.path(), "good", "ed25519", None, "good"));
    vman.import_ssh_key("taken", &good).unwrap();
    let weak = keygen(dir.path(), "weak", "rsa", Some(1024), "weak");
    let dsa = keygen(dir.path(), "dsa", "dsa", None, "dsa");
    let data = good.split(' ').nth(1).unwrap();
    let invalid = ErrorKind::InvalidArgument;

    refused(&vman, invalid, "1024 bits", |m| m.import_ssh_key("weak", &public(&weak)));
    refused(&vman, invalid, "DSA", |m| m.import_ssh_key("dsa", &public(&dsa)));
    refused(&vman, invalid, "is a private key", |m| m.import_ssh_key("private", &std::fs::read_to_string(&weak).unwrap()));
    refused(&vman, invalid, "is a private key", |m| m.import_ssh_key("private", &std::fs::read_to_string(&dsa).unwrap()));
    refused(&vman, invalid, "empty", |m| m.import_ssh_key("empty", ""));
    refused(&vman, invalid, "base64", |m| m.import_ssh_key("malformed", &format!("ssh-ed25519 {}%", &data[1..])));
    refused(&vman, invalid, "truncated", |m| m.import_ssh_key("short", &format!("ssh-ed25519 {}", &data[..40])));
    refused(&vman, invalid, "options", |m| m.import_ssh_key("opts", &format!("restrict {good}")));
    refused(&vman, invalid, "more than one line", |m| m.import_ssh_key("two", &format!("{good}{good}")));
    refused(&vman, invalid, "SSH key name", |m| m.import_ssh_key("a/b", &good));
    refused(&vman, invalid, "SSH key name", |m| m.import_ssh_key("", &good));
    refused(&vman, ErrorKind::AlreadyExists, "taken", |m| m.import_ssh_key("taken", &good));
    refused(&vman, ErrorKind::NotFound, "nope", |m| m.ssh_key("nope"));
    refused(&vman, ErrorKind::NotFound, "nope", |m| m.delete_ssh_key("nope"));
}

#[test]
fn import_and_delete_are_recorded_as_events() {
    let (_dir, vman) = open();
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEEHKILeIA5KIMgEOxa+GSMJKC0wYoXMrzyXxBvwHzw alice@example";
    let key = vman.import_ssh_key("alice", line).unwrap();
    // The same material under a second name is accepted, as EC2 does.
    let twin = vman.import_ssh_key("alice2", line).unwrap();
    assert_eq!(twin.fingerprint_sha256, key.fingerprint_sha256);
    assert_ne!(twin.id, key.id);
    vman.delete_ssh_key("alice").unwrap();
    assert_eq!(vman.ssh_key("alice").unwrap_err().kind(), ErrorKind::NotFound);
    let events: Vec<_> = vman.recent_events(10).unwrap().into_iter().filter(|e| e.object_id == key.id.to_string()).collect();
    assert_eq!(
        events.iter().map(|e| (e.object_kind, e.action.as_str())).collect::<Vec<_>>(),
        [(ObjectKind::SshKey, "created"), (ObjectKind::SshKey, "deleted")]
    );
    assert_eq!(events[0].object_name, "alice");
    assert_eq!(events[0].details["bits"], 256);
    assert_eq!(events[0].details["key_type"], "ssh-ed25519");
    assert_eq!(events[0].details["fingerprint_sha256"], key.fingerprint_sha256.as_str());
}

#[test]
fn a_vm_gets_copies_of_its_keys_in_the_same_transaction() {
    if !have_ssh_keygen() {
        return;
    }
    let (dir, vman) = open();
    vman.create_template(&TemplateSpec::new("small", 1, 512, 1)).unwrap();
    vman.create_network(&NetworkSpec::new("lan", 100, "10.100.0.0/24")).unwrap();
    let a = vman.import_ssh_key("a", &public(&keygen(dir.path(), "a", "ed25519", None, "a"))).unwrap();
    let b = vman.import_ssh_key("b", &public(&keygen(dir.path(), "b", "ecdsa", Some(256), "b"))).unwrap();

    let vm = vman.create_vm(&VmSpec::new("web1", "small").nic("lan").ssh_key("b").ssh_key("a")).unwrap();
    let copies: Vec<_> = vm.ssh_keys.iter().map(|k| (k.name.as_str(), k.public_key.as_str(), k.fingerprint_sha256.as_str())).collect();
    assert_eq!(
        copies,
        [("b", b.public_key.as_str(), b.fingerprint_sha256.as_str()), ("a", a.public_key.as_str(), a.fingerprint_sha256.as_str())]
    );
    let created = vman.vm_history("web1", 1).unwrap().remove(0);
    assert_eq!(created.details["ssh_keys"], serde_json::json!(["b", "a"]));

    // The catalogue's key goes; the VM's copy stays.
    vman.delete_ssh_key("a").unwrap();
    assert_eq!(vman.vm("web1").unwrap().ssh_keys, vm.ssh_keys);

    // Unknown, deleted, twice-named, badly named or too many keys: no VM, no
    // address taken, no copy, no event.
    let spec = |keys: &[&str]| keys.iter().fold(VmSpec::new("web2", "small").nic("lan"), |s, k| s.ssh_key(*k));
    refused(&vman, ErrorKind::NotFound, "nope", |m| m.create_vm(&spec(&["b", "nope"])));
    refused(&vman, ErrorKind::NotFound, "\"a\"", |m| m.create_vm(&spec(&["a"])));
    refused(&vman, ErrorKind::InvalidArgument, "twice", |m| m.create_vm(&spec(&["b", "b"])));
    refused(&vman, ErrorKind::InvalidArgument, "SSH key name", |m| m.create_vm(&spec(&["b", "x y"])));
    let many: Vec<String> = (0..=vman_core::MAX_VM_SSH_KEYS).map(|i| format!("k{i}")).collect();
    refused(&vman, ErrorKind::InvalidArgument, "at most", |m| {
        m.create_vm(&many.iter().fold(VmSpec::new("web2", "small"), |s, k| s.ssh_key(k.as_str())))
    });
}
