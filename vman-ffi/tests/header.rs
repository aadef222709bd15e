//! include/vman.h is generated from this crate and committed. This test
//! regenerates it and fails on any difference, so the header cannot drift;
//! `VMAN_BLESS=1` rewrites it instead.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use vman_core::defaults;

/// `#define`s written from core's values, so C and the other languages
/// share one set of defaults: (name, value, what it is).
fn default_constants() -> Vec<(&'static str, u128, &'static str)> {
    vec![
        ("VMAN_DEFAULT_STOP_TIMEOUT_MS", defaults::STOP_TIMEOUT.as_millis(), "How long vman_vm_stop usually waits for the guest to power off."),
        ("VMAN_DEFAULT_CONSOLE_TAIL_BYTES", defaults::CONSOLE_TAIL_BYTES as u128, "How many bytes of console output a tail usually returns."),
        (
            "VMAN_DEFAULT_CONSOLE_WAIT_TIMEOUT_MS",
            defaults::CONSOLE_WAIT_TIMEOUT.as_millis(),
            "How long vman_vm_wait_for_console usually waits.",
        ),
        ("VMAN_DEFAULT_HISTORY_LIMIT", u128::from(defaults::HISTORY_LIMIT), "How many events a history query usually returns."),
    ]
}

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let mut next = || parts.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (next(), next(), next());
    let mut after = format!(
        "\n#define VMAN_VERSION \"{version}\"\n#define VMAN_VERSION_MAJOR {major}\n\
         #define VMAN_VERSION_MINOR {minor}\n#define VMAN_VERSION_PATCH {patch}\n\n\
         /* vman's defaults (vman_core::defaults), for arguments every call takes. */\n"
    );
    for (name, value, what) in default_constants() {
        after.push_str(&format!("/* {what} */\n#define {name} {value}\n"));
    }
    config.after_includes = Some(after);
    // The items `record!` generates, which cbindgen cannot expand itself.
    let records = tempfile::Builder::new().prefix("vman-records").suffix(".rs").tempfile().unwrap();
    std::fs::write(records.path(), vman::RECORD_ITEMS.join("\n")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_src(records.path())
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

fn committed_header() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/vman.h")).unwrap_or_default()
}

#[test]
fn committed_header_matches_the_crate() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/vman.h");
    let fresh = generate();
    if std::env::var_os("VMAN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/vman.h");
        return;
    }
    assert!(
        committed_header() == fresh,
        "include/vman.h is stale; regenerate it with: VMAN_BLESS=1 cargo test -p vman-ffi --test header"
    );
}

#[test]
fn header_defaults_are_cores() {
    let header = committed_header();
    for (name, value, _) in default_constants() {
        let line = format!("#define {name} {value}\n");
        assert!(header.contains(&line), "include/vman.h lacks `{}` (core's value)", line.trim());
    }
}
