//! include/vman.h is generated from this crate and committed. This test
//! regenerates it and fails on any difference, so the header cannot drift;
//! `VMAN_BLESS=1` rewrites it instead. It also holds the header to its own
//! conventions: every function documented, with its statuses, its
//! out-parameters' optionality, ownership and thread-safety.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::PathBuf;

use vman_core::defaults;

/// `#define`s written from core's values, so C and the other languages
/// share one set of defaults: (name, value, what it is).
fn default_constants() -> Vec<(&'static str, u128, &'static str)> {
    vec![
        (
            "VMAN_DEFAULT_STOP_TIMEOUT_MS",
            defaults::STOP_TIMEOUT.as_millis(),
            "How long vman_vm_stop usually waits for the guest to power off.",
        ),
        (
            "VMAN_DEFAULT_CONSOLE_TAIL_BYTES",
            defaults::CONSOLE_TAIL_BYTES as u128,
            "How many bytes of console output a tail usually returns.",
        ),
        (
            "VMAN_DEFAULT_CONSOLE_WAIT_TIMEOUT_MS",
            defaults::CONSOLE_WAIT_TIMEOUT.as_millis(),
            "How long vman_vm_wait_for_console usually waits.",
        ),
        ("VMAN_DEFAULT_HISTORY_LIMIT", u128::from(defaults::HISTORY_LIMIT), "How many events a history query usually returns."),
        (
            "VMAN_DEFAULT_DETACH_TIMEOUT_MS",
            defaults::DETACH_TIMEOUT.as_millis(),
            "How long vman_disk_detach usually waits for the guest to release a disk.",
        ),
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
    assert!(committed_header() == fresh, "include/vman.h is stale; regenerate it with: VMAN_BLESS=1 cargo test -p vman-ffi --test header");
}

#[test]
fn header_defaults_are_cores() {
    let header = committed_header();
    for (name, value, _) in default_constants() {
        let line = format!("#define {name} {value}\n");
        assert!(header.contains(&line), "include/vman.h lacks `{}` (core's value)", line.trim());
    }
}

/// One function declared by the header, with the comment above it.
#[derive(Debug)]
struct Function {
    name: String,
    returns: String,
    params: Vec<(String, String)>,
    doc: String,
}

/// The header's function declarations. cbindgen writes each one's doc
/// comment on the lines just above it, starting in column 0.
fn functions(header: &str) -> Vec<Function> {
    let mut found = Vec::new();
    let mut doc: Option<String> = None;
    let mut lines = header.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("/*") {
            let mut text = String::from(line);
            let mut current = line;
            while !current.contains("*/") {
                current = lines.next().unwrap_or("*/");
                text.push('\n');
                text.push_str(current);
            }
            doc = Some(text.trim_start_matches("/*").trim_end_matches("*/").to_string());
            continue;
        }
        let starts_declaration = !line.is_empty()
            && !line.starts_with([' ', '#', '}', '{'])
            && !line.starts_with("extern \"C\"")
            && !line.starts_with("typedef")
            && !line.starts_with("struct")
            && !line.starts_with("enum VmanStatus {")
            && line.contains('(');
        if !starts_declaration {
            doc = None;
            continue;
        }
        let mut decl = String::from(line);
        while !decl.trim_end().ends_with(';') {
            decl.push(' ');
            decl.push_str(lines.next().expect("declaration ends"));
        }
        let decl = decl.split_whitespace().collect::<Vec<_>>().join(" ");
        let open = decl.find('(').unwrap();
        let head = &decl[..open];
        let name_at = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let params = decl[open + 1..decl.rfind(')').unwrap()]
            .split(',')
            .map(str::trim)
            .filter(|p| *p != "void" && !p.is_empty())
            .map(|p| {
                let at = p.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap() + 1;
                (p[..at].trim().to_string(), p[at..].to_string())
            })
            .collect();
        found.push(Function {
            name: head[name_at..].to_string(),
            returns: head[..name_at].trim().to_string(),
            params,
            doc: doc.take().unwrap_or_default(),
        });
    }
    found
}

/// Every VMAN_STATUS_* name the header defines.
fn statuses(header: &str) -> BTreeSet<String> {
    header
        .lines()
        .filter_map(|l| l.trim().strip_prefix("VMAN_STATUS_"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| format!("VMAN_STATUS_{n}"))
        .collect()
}

/// The statuses a comment's "Fails with" paragraph names.
fn named_statuses(doc: &str) -> Option<Vec<String>> {
    let at = doc.find("Fails with")?;
    let paragraph = doc[at..].split("\n\n").next().unwrap_or("");
    Some(
        paragraph
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("VMAN_STATUS_"))
            .map(str::to_string)
            .collect(),
    )
}

/// Whether a sentence of `doc` names parameter `name` and says whether it
/// may be NULL.
fn states_optionality(doc: &str, name: &str) -> bool {
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    doc.split(['.', ';']).any(|s| s.contains(&format!("`{name}`")) && (s.contains("must not be NULL") || s.contains("may be NULL")))
}

/// An out-parameter: named `out`/`out_*`, or a non-const pointer to
/// something other than one vman handle (`T **`, `size_t *`, `uint8_t *`).
fn is_out_param(ty: &str, name: &str) -> bool {
    let handle = ty.starts_with("struct ") && ty.matches('*').count() == 1;
    name == "out" || name.starts_with("out_") || (ty.contains('*') && !ty.starts_with("const") && !handle)
}

#[test]
fn every_function_documents_its_contract() {
    let header = committed_header();
    let known = statuses(&header);
    assert!(known.contains("VMAN_STATUS_NOT_FOUND"), "statuses parsed: {known:?}");
    let functions = functions(&header);
    assert!(functions.len() > 100, "functions parsed: {}", functions.len());
    let mut problems = Vec::new();
    for f in &functions {
        let mut problem = |what: String| problems.push(format!("{}: {what}", f.name));
        if f.doc.trim().is_empty() {
            problem("no doc comment".into());
            continue;
        }
        if !f.doc.to_lowercase().contains("thread") {
            problem("does not say whether it is thread-safe".into());
        }
        if f.doc.contains("NULL or writable") {
            problem("\"NULL or writable\" leaves open whether the parameter is optional".into());
        }
        if f.returns.contains('*') && !["borrowed", "static", "owned"].iter().any(|w| f.doc.to_lowercase().contains(w)) {
            problem(format!("returns {} without saying who owns it", f.returns));
        }
        for (ty, name) in &f.params {
            // What a *_free function takes is the thing it frees.
            if !f.name.ends_with("_free") && is_out_param(ty, name) && !states_optionality(&f.doc, name) {
                problem(format!("out-parameter `{name}`: neither \"may be NULL\" nor \"must not be NULL\""));
            }
            if ty.ends_with("**") && !f.doc.contains("_free") {
                problem(format!("`{name}` hands over ownership but names no free function"));
            }
        }
        if f.returns.ends_with("VmanStatus") {
            let Some(named) = named_statuses(&f.doc) else {
                problem("fallible, but no \"Fails with\" paragraph naming its statuses".into());
                continue;
            };
            if named.is_empty() {
                problem("\"Fails with\" names no VMAN_STATUS_*".into());
            }
            for status in &named {
                if !known.contains(status) || status == "VMAN_STATUS_OK" {
                    problem(format!("names {status}, which is no failure status"));
                }
            }
            let has = |s: &str| named.iter().any(|n| n == s);
            if f.params.iter().any(|(ty, _)| ty.contains('*')) && !has("VMAN_STATUS_NULL_PARAMETER") {
                problem("takes pointers but does not name VMAN_STATUS_NULL_PARAMETER".into());
            }
            if f.params.iter().any(|(ty, _)| ty == "const char *") && !has("VMAN_STATUS_INVALID_UTF8") {
                problem("takes strings but does not name VMAN_STATUS_INVALID_UTF8".into());
            }
        }
    }
    assert!(problems.is_empty(), "include/vman.h breaks its conventions:\n{}", problems.join("\n"));
}

#[test]
fn the_documentation_check_catches_what_it_should() {
    // A header with one undocumented function, one fallible function that
    // names no statuses and one whose out-parameter's optionality is unsaid.
    let header = "\
/*\n Does things. Thread-safe.\n\n Fails with VMAN_STATUS_NULL_PARAMETER.\n */\n\
enum VmanStatus vman_good(const struct VmanManager *manager, struct VmanTemplate **out);\n\n\
enum VmanStatus vman_undocumented(void);\n\n\
/*\n Thread-safe. `out` must not be NULL; free it with vman_x_free.\n */\n\
enum VmanStatus vman_silent(struct VmanTemplate **out);\n\n\
/*\n Thread-safe.\n\n Fails with VMAN_STATUS_NULL_PARAMETER.\n */\n\
enum VmanStatus vman_vague(uint8_t *buf);\n";
    let functions = functions(header);
    let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vman_good", "vman_undocumented", "vman_silent", "vman_vague"]);
    assert!(functions[1].doc.is_empty());
    assert_eq!(named_statuses(&functions[2].doc), None);
    assert!(!states_optionality(&functions[0].doc, "out"));
    assert!(states_optionality(&functions[2].doc, "out"));
    assert!(is_out_param("uint8_t *", "buf") && !states_optionality(&functions[3].doc, "buf"));
    assert!(!is_out_param("const struct VmanManager *", "manager") && !is_out_param("struct VmanConsole *", "console"));
    assert_eq!(
        functions[0].params,
        [("const struct VmanManager *".into(), "manager".into()), ("struct VmanTemplate **".into(), "out".into())]
    );
}
