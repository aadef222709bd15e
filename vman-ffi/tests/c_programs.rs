//! Builds the C and C++ programs under tests/c against include/vman.h with
//! strict warnings (C also with -Wc++-compat), links them to the freshly
//! built libvman.so, and runs them (under valgrind or ASan, which must find
//! no error and no leak). Also checks that the header declares exactly the
//! functions the library exports.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// target/<profile>/, where cargo put libvman.so for this test run.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..").to_path_buf()
}

/// `cargo test` builds the rlib only, never the cdylib the C programs link;
/// testing C against an older libvman.so would test old code, so refuse.
fn fresh_library() -> PathBuf {
    let lib = lib_dir().join("libvman.so");
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: run `cargo build -p vman-ffi` first", lib.display()));
    let newest_source = ["vman-core/src", "vman-ffi/src"]
        .iter()
        .flat_map(|dir| walk(&repo().join(dir)))
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .max()
        .expect("sources exist");
    assert!(built >= newest_source, "{} is older than the sources: run `cargo build -p vman-ffi` first", lib.display());
    lib
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// Kills any QEMU or dnsmasq whose command line names `dir`: a C program
/// that fails a CHECK exits at once, and its VMs would outlive it.
fn reap(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default()).into_owned();
        if cmdline.contains(&needle) && (cmdline.contains("qemu-system") || cmdline.contains("dnsmasq")) {
            // SAFETY: kill(2) on a process proven (by its command line) to be this test's.
            unsafe { libc_kill(pid, 9) };
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn tool_available(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Outside CI a missing tool skips with a reason; in CI it fails.
fn require(tool: &str) -> bool {
    if tool_available(tool) {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is missing in CI; scripts/setup installs it");
    eprintln!("skipping: {tool} not installed (run scripts/setup)");
    false
}

fn compile(compiler: &str, std: &str, source: &str, out: &Path) {
    compile_with(compiler, &[std], source, out);
}

fn compile_with(compiler: &str, flags: &[&str], source: &str, out: &Path) {
    let lib = fresh_library().parent().expect("lib dir").to_path_buf();
    // The header must also be valid C++ when read as C (one type per name).
    let cxx_compat: &[&str] = if compiler == "gcc" { &["-Wc++-compat"] } else { &[] };
    let status = Command::new(compiler)
        .args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .args(cxx_compat)
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c").join(source))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lvman")
        .status()
        .expect("run compiler");
    assert!(status.success(), "{compiler} failed on {source}");
}

/// Compiles `tests/c/<name>.c` and runs it under valgrind (leaks are
/// errors) with its state directory as the argument; it must print "all
/// checks passed".
fn passes_under_valgrind(name: &str, env: &[(&str, &str)]) {
    if !require("gcc") || !require("valgrind") {
        return;
    }
    let work = work_dir();
    let exe = work.path().join(name);
    compile("gcc", "-std=c11", &format!("{name}.c"), &exe);
    let out = Command::new("valgrind")
        .args(["--quiet", "--error-exitcode=97", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect"])
        .arg(&exe)
        .arg(work.path().join("state"))
        .envs(env.iter().copied())
        .output()
        .expect("run valgrind");
    reap(work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn c_records_program_passes_under_valgrind() {
    passes_under_valgrind("records", &[("VMAN_STATE_DIR", "/tmp/vman-c-default")]);
}

/// Disks, images and the VM spec's storage options from C, with the real
/// qemu-img (no QEMU runs). Under ASan, LeakSanitizer and UBSan rather than
/// valgrind: vman waits for qemu-img through a pidfd, and Debian 12's
/// valgrind (3.19) does not know pidfd_open.
#[test]
fn c_storage_program_passes_under_asan() {
    if !require("gcc") || !require("qemu-img") {
        return;
    }
    let work = work_dir();
    let exe = work.path().join("storage");
    compile_with("gcc", &["-std=c11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"], "storage.c", &exe);
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=97")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .arg(work.path().join("state"))
        .output()
        .expect("run storage");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "storage.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// Makes a key pair with ssh-keygen in `dir`; answers the public key line
/// and what `ssh-keygen -l` prints for it with SHA-256 and with MD5.
fn ssh_keygen(dir: &Path, file: &str, args: &[&str]) -> (String, String, String) {
    let path = dir.join(file);
    let out = Command::new("ssh-keygen").args(["-q", "-N", "", "-C", file]).args(args).arg("-f").arg(&path).output().unwrap();
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let public = path.with_extension("pub");
    let fingerprint = |hash: &str| {
        let out = Command::new("ssh-keygen").args(["-l", "-E", hash, "-f"]).arg(&public).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    };
    (std::fs::read_to_string(&public).unwrap(), fingerprint("sha256"), fingerprint("md5"))
}

/// SSH keys from C, made by the real ssh-keygen, whose fingerprints the
/// program compares with vman's; the keys and expectations arrive in the
/// environment.
#[test]
fn c_keys_program_passes_under_valgrind() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ssh-keygen is missing in CI; scripts/setup installs openssh-client");
        eprintln!("skipping: ssh-keygen not installed (run scripts/setup)");
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (ed25519, sha256, md5) = ssh_keygen(keys.path(), "alice", &["-t", "ed25519"]);
    let (rsa, rsa_sha256, _) = ssh_keygen(keys.path(), "bob", &["-t", "rsa", "-b", "3072"]);
    let (weak, _, _) = ssh_keygen(keys.path(), "weak", &["-t", "rsa", "-b", "1024"]);
    let private = std::fs::read_to_string(keys.path().join("weak")).unwrap();
    passes_under_valgrind(
        "keys",
        &[
            ("VMAN_TEST_ED25519", &ed25519),
            ("VMAN_TEST_ED25519_SHA256", &sha256),
            ("VMAN_TEST_ED25519_MD5", &md5),
            ("VMAN_TEST_RSA3072", &rsa),
            ("VMAN_TEST_RSA3072_SHA256", &rsa_sha256),
            ("VMAN_TEST_RSA1024", &weak),
            ("VMAN_TEST_PRIVATE", &private),
        ],
    );
}

/// A scratch directory holding a program and its state directory. As root,
/// QEMU runs as an unprivileged user who must pass through it to reach its
/// run directory (vman refuses to start a VM otherwise): searchable, not
/// readable, by others.
fn work_dir() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    work
}

/// Live events from C: a poll(2) loop on the stream's descriptor, resume
/// after an id, and CLOSED after the manager is freed (no QEMU, so valgrind).
#[test]
fn c_events_program_passes_under_valgrind() {
    passes_under_valgrind("events", &[]);
}

/// Cancellation tokens: one cancelled from another thread (pthreads)
/// ends a wait; a cancelled one makes every waiting call refuse.
#[test]
fn c_cancel_program_passes_under_valgrind() {
    passes_under_valgrind("cancel", &[]);
}

/// The test guest (tests/guest/build.sh, cached): (kernel, initrd).
fn guest() -> Option<(PathBuf, PathBuf)> {
    if !require("qemu-system-x86_64") {
        return None;
    }
    let out = Command::new(repo().join("tests/guest/build.sh")).output().expect("run tests/guest/build.sh");
    assert!(out.status.success(), "guest build failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some((dir.join("vmlinuz"), dir.join("initrd.img")))
}

/// Under AddressSanitizer, LeakSanitizer and UBSan rather than valgrind:
/// Debian 12's valgrind (3.19) does not know pidfd_open, which supervision
/// needs. LeakSanitizer still sees every allocation of the Rust library
/// (through the interposed allocator).
#[test]
fn c_lifecycle_program_boots_a_guest_under_asan() {
    if !require("gcc") {
        return;
    }
    let Some((kernel, initrd)) = guest() else { return };
    let work = work_dir();
    let exe = work.path().join("lifecycle");
    compile_with("gcc", &["-std=c11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"], "lifecycle.c", &exe);
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=97")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .arg(work.path().join("state"))
        .arg(kernel)
        .arg(initrd)
        .output()
        .expect("run lifecycle");
    reap(work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lifecycle.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// Settings, host stats and health from C with a real guest, under ASan
/// like the lifecycle program (supervision needs pidfd_open).
#[test]
fn c_host_program_runs_a_guest_under_asan() {
    if !require("gcc") {
        return;
    }
    let Some((kernel, initrd)) = guest() else { return };
    let work = work_dir();
    let exe = work.path().join("host");
    compile_with("gcc", &["-std=c11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"], "host.c", &exe);
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=97")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .arg(work.path().join("state"))
        .arg(kernel)
        .arg(initrd)
        .output()
        .expect("run host");
    reap(work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "host.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// Bridged and user-mode networking from C, in a network namespace of the
/// test's own (`unshare --net`), under ASan like the lifecycle program.
#[test]
fn c_network_program_runs_in_its_own_namespace() {
    if !require("gcc") || !require("unshare") {
        return;
    }
    if !nix_is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "network tests need root in CI");
        eprintln!("skipping: needs root for a network namespace");
        return;
    }
    let Some((kernel, initrd)) = guest() else { return };
    let work = work_dir();
    let exe = work.path().join("network");
    compile_with("gcc", &["-std=c11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"], "network.c", &exe);
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:exitcode=97")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .arg(work.path().join("state"))
        .arg(kernel)
        .arg(initrd)
        .output()
        .expect("run network");
    reap(work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "network.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn header_compiles_and_runs_as_cpp() {
    if !require("g++") {
        return;
    }
    let work = work_dir();
    let exe = work.path().join("header_cpp");
    compile("g++", "-std=c++17", "header.cpp", &exe);
    let out = Command::new(&exe).output().expect("run header_cpp");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// cbindgen reads the crate's source and the texts `record!` keeps; the
/// library is what the compiler made of the macros. They must agree: every
/// exported `vman_*` symbol is declared, and every declared function exists.
#[test]
fn header_declares_exactly_the_exported_functions() {
    if !require("nm") {
        return;
    }
    let lib = fresh_library();
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&lib).output().expect("run nm");
    assert!(out.status.success(), "nm failed: {}", String::from_utf8_lossy(&out.stderr));
    let exported: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (kind, name) = (parts.nth(1)?, parts.next()?);
            (kind == "T" && name.starts_with("vman_")).then(|| name.to_string())
        })
        .collect();
    let header = std::fs::read_to_string(repo().join("include/vman.h")).unwrap();
    // Every identifier called or declared: `vman_x(`.
    let declared: std::collections::BTreeSet<String> = header
        .match_indices('(')
        .map(|(at, _)| {
            let before = &header[..at];
            let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
            before[start..].to_string()
        })
        .filter(|w| w.starts_with("vman_"))
        .collect();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    let missing: Vec<_> = declared.difference(&exported).collect();
    assert!(
        undeclared.is_empty(),
        "exported but not in include/vman.h (a record! missing from RECORD_ITEMS, or a stale header?): {undeclared:?}"
    );
    assert!(missing.is_empty(), "declared in include/vman.h but not exported: {missing:?}");
    assert!(exported.len() > 100, "{} functions exported", exported.len());
}

/// Batches from C: refused, made, listed, deleted by prefix and by batch,
/// and one whose third QEMU fails for real (a wrapper hands QEMU a missing
/// kernel for worker03) rolled back whole; under ASan like the lifecycle
/// program.
#[test]
fn c_batch_program_rolls_back_a_failed_batch_under_asan() {
    if !require("gcc") || !require("qemu-img") {
        return;
    }
    let Some((kernel, initrd)) = guest() else { return };
    let work = work_dir();
    let exe = work.path().join("batch");
    compile_with("gcc", &["-std=c11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"], "batch.c", &exe);
    let base = work.path().join("base.qcow2");
    assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("64M").status().unwrap().success());
    // QEMU's unprivileged user runs the wrapper: readable by all.
    let qemu = work.path().join("qemu");
    std::fs::write(
        &qemu,
        "#!/bin/sh\ncase \"$*\" in *guest=worker03,*) exec qemu-system-x86_64 \"$@\" -kernel /nonexistent/vmlinuz;; esac\n\
         exec qemu-system-x86_64 \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=97")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .arg(work.path().join("state"))
        .arg(kernel)
        .arg(initrd)
        .arg(&base)
        .arg(&qemu)
        .output()
        .expect("run batch");
    reap(work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "batch.c failed ({:?})\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
