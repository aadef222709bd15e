//! include/vman.h is generated from this crate and committed. This test
//! regenerates it and fails on any difference, so the header cannot drift;
//! `VMAN_BLESS=1` rewrites it instead.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let mut next = || parts.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (next(), next(), next());
    config.after_includes = Some(format!(
        "\n#define VMAN_VERSION \"{version}\"\n#define VMAN_VERSION_MAJOR {major}\n\
         #define VMAN_VERSION_MINOR {minor}\n#define VMAN_VERSION_PATCH {patch}\n"
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn committed_header_matches_the_crate() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/vman.h");
    let fresh = generate();
    if std::env::var_os("VMAN_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/vman.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/vman.h is stale; regenerate it with: VMAN_BLESS=1 cargo test -p vman-ffi --test header"
    );
}
