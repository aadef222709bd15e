//! The crate's domains import each other without cycles: each top-level
//! module of vman-core/src (a folder, or a file beside lib.rs) may use the
//! ones below it, never one that uses it back. A cycle is how a "shared
//! context with impl blocks in many files" starts; this test names it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file is: `store/vms` for src/store/vms.rs,
/// `store` for src/store/mod.rs, `manager` for src/manager.rs.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let rel = rel.to_string_lossy().into_owned();
    rel.strip_suffix("/mod").map_or(rel.clone(), str::to_string)
}

/// Code before any `#[cfg(test)]` module, without comments: what tests
/// import and what doc comments link to are not dependencies.
fn non_test_code(text: &str) -> String {
    let code: String = text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n");
    // Cut each `#[cfg(test)] mod … { … }` out, wherever it stands.
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("#[cfg(test)]\nmod ") {
        out.push_str(&rest[..i]);
        let body = &rest[i..];
        let Some(open) = body.find('{') else { break };
        let mut depth = 0;
        let mut end = body.len();
        for (j, c) in body[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// The paths a file names from the crate root, each as its segments:
/// `crate::a::b::C` and every item of `use crate::{a::b, c::{d, e}}`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    fn ident(s: &str) -> String {
        s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    }
    /// Expands `a::b::{c, d::e}` (after `crate::`) into whole paths.
    fn expand(prefix: &[String], text: &str, out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix.to_vec();
        let mut i = 0;
        let bytes = text.as_bytes();
        loop {
            let rest = &text[i..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut j = 0;
                i += 1;
                loop {
                    let inner = &group[j..];
                    let skipped = inner.len() - inner.trim_start().len();
                    j += skipped;
                    if group[j..].starts_with('}') {
                        return i + j + 1;
                    }
                    j += expand(&path, &group[j..], out);
                    let after = &group[j..];
                    let skipped = after.len() - after.trim_start_matches([' ', '\n', ',']).len();
                    j += skipped;
                    if j >= group.len() {
                        return i + j;
                    }
                }
            }
            let name = ident(rest);
            if name.is_empty() {
                out.push(path);
                return i;
            }
            i += name.len();
            path.push(name);
            if text[i..].starts_with("::") {
                i += 2;
            } else {
                // `self` in a group names the prefix itself.
                if path.last().is_some_and(|n| n == "self") {
                    path.pop();
                }
                out.push(path);
                let _ = bytes;
                return i;
            }
        }
    }
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let used = expand(&[], rest, &mut out);
        rest = &rest[used.min(rest.len())..];
    }
    out
}

/// Which module defines what `path` names. A folder's `mod.rs` may re-export
/// items of its submodules (`pub(crate) use events::{a, b}`): those resolve to
/// the submodule, so the graph follows real dependencies, not re-exports.
fn resolve(src: &Path, path: &[String], reexports: &BTreeMap<String, BTreeMap<String, String>>) -> Option<String> {
    let mut module = String::new();
    for (n, seg) in path.iter().enumerate() {
        let candidate = if module.is_empty() { seg.clone() } else { format!("{module}/{seg}") };
        if src.join(format!("{candidate}.rs")).exists() || src.join(&candidate).join("mod.rs").exists() {
            module = candidate;
            continue;
        }
        if let Some(sub) = reexports.get(&module).and_then(|m| m.get(seg)) {
            let target = if module.is_empty() { sub.clone() } else { format!("{module}/{sub}") };
            return resolve(src, &[target.split('/').map(str::to_string).collect::<Vec<_>>(), path[n + 1..].to_vec()].concat(), reexports)
                .or(Some(target));
        }
        break;
    }
    (!module.is_empty()).then_some(module)
}

/// `pub use sub::{a, b}` / `pub(crate) use sub::a` lines of a module file:
/// item name -> the submodule (relative to the module) that defines it.
fn reexports_of(text: &str, submodules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for stmt in text.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("pub use ").or_else(|| stmt.strip_prefix("pub(crate) use ")) else { continue };
        let rest = rest.strip_prefix("self::").unwrap_or(rest);
        let mut paths = Vec::new();
        // Reuse the crate-path expander on `x::{..}` by faking a prefix.
        paths.extend(crate_paths(&format!("crate::{rest}")));
        for p in paths {
            let (Some(first), Some(last)) = (p.first(), p.last()) else { continue };
            if submodules.contains(first) && p.len() >= 2 {
                let via = p[..p.len() - 1].join("/");
                map.insert(last.clone(), via);
            }
        }
    }
    map
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_import_each_other_without_cycles() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // Re-exports of lib.rs (module "") and of every folder's mod.rs.
    let mut reexports: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name != "mod.rs" && name != "lib.rs" {
            continue;
        }
        let module = if name == "lib.rs" { String::new() } else { module_of(&src, file) };
        let dir = file.parent().unwrap();
        let subs: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path().with_extension("").file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        reexports.insert(module, reexports_of(&std::fs::read_to_string(file).unwrap(), &subs));
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        if file.ends_with("lib.rs") {
            continue;
        }
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&non_test_code(&text)) {
            if let Some(to) = resolve(&src, &path, &reexports)
                && to != from
                && !from.starts_with(&format!("{to}/"))
            {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(graph.len() > 10, "the scan found too few imports to mean anything: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle among vman-core's modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_database_engine_type_outside_the_store() {
    // The store is a boundary: its callers get its own transaction type and
    // error, so the same scheme can run on another database later.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for file in files.iter().filter(|f| !f.starts_with(src.join("store"))) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!non_test_code(&text).contains("rusqlite"), "{} names rusqlite", file.display());
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let dag: BTreeMap<String, BTreeSet<String>> = [("a".to_string(), BTreeSet::from(["b".to_string()]))].into();
    assert_eq!(find_cycle(&dag), None);
    let paths = crate_paths("use crate::{store::{self, X}, vm::Vm};\nlet x = crate::net::y;");
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["store", "store::X", "vm::Vm", "net::y"]);
}

#[test]
fn the_shared_context_is_extended_only_where_it_is_defined() {
    // Domains take the context (or the collaborators it hands out) as an
    // argument; they do not add methods to it from their own files, which
    // is how a shared context turns into an object that owns everything.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for file in files.iter().filter(|f| !f.ends_with("context.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !non_test_code(&text).lines().any(|l| l.starts_with("impl Inner") || l.starts_with("impl crate::context::Inner")),
            "{} adds methods to the shared context",
            file.display()
        );
    }
}
