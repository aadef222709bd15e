//! A caller's cloud-config, read the way cloud-init reads it.
//!
//! cloud-init loads user-data with PyYAML's `safe_load`, which resolves plain
//! (unquoted) scalars by YAML 1.1 rules: `yes`, `on` and `off` are booleans,
//! `0644` is the octal number 420, `1:20` is 80. A YAML 1.2 reader — every
//! maintained serde YAML crate — reads those as text, and `'yes'` (quoted,
//! text in both) the same way, so a document read by one and written back
//! would change meaning for cloud-init. This module therefore builds the
//! document from the parser's events, where a scalar's style is still known,
//! resolves plain scalars with PyYAML's own patterns, and writes every value
//! back through serde-saphyr, whose default quoting keeps a YAML 1.1 reader's
//! types (a string that PyYAML would take for anything else is quoted).
//!
//! What `safe_load` refuses is refused here too: unknown tags, `=` as a
//! value, collections as keys, several documents. What vman could not write
//! back unchanged is refused with the reason: dates and times (PyYAML makes
//! them `datetime` objects), `!!binary`, `!!set`, `!!omap`, `!!pairs`,
//! integers beyond 128 bits, aliases to a node that contains them, and
//! duplicate keys (PyYAML silently keeps the last; nearly always a mistake).
//! Anchors, aliases and `<<` merge keys are expanded as PyYAML expands them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use granit_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use regex::Regex;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The deepest nesting accepted; cloud-config rarely nests past six.
pub(super) const MAX_DEPTH: usize = 64;
/// The most nodes a document may expand to, aliases counted at their full
/// size, so an alias bomb in a small document is refused.
pub(super) const MAX_NODES: usize = 10_000;

/// A value of a loaded document, typed as PyYAML types it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// `~`, `null`, or nothing.
    Null,
    /// `true`, `yes`, `on` … and their opposites.
    Bool(bool),
    /// Decimal, `0b`, `0x`, leading-zero octal or base-60 integers.
    Int(i128),
    /// Floats, including `.inf` and `.nan`.
    Float(f64),
    /// Text.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, in document order, keys unique.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The node's kind in words, for error messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "integer",
            Node::Float(_) => "float",
            Node::Str(_) => "string",
            Node::Seq(_) => "list",
            Node::Map(_) => "mapping",
        }
    }

    fn size(&self) -> usize {
        match self {
            Node::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(entries) => 1 + entries.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
            _ => 1,
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(small), _) => serializer.serialize_i64(small),
                (_, Ok(unsigned)) => serializer.serialize_u64(unsigned),
                _ => serializer.serialize_i128(*i),
            },
            Node::Float(f) => serializer.serialize_f64(*f),
            Node::Str(s) => serializer.serialize_str(s),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    /// Not YAML at all; the parser's error says where.
    #[error("is not valid YAML")]
    Syntax(#[source] ScanError),
    /// YAML, but not something cloud-init loads, or not something vman can
    /// write back unchanged.
    #[error("line {line}: {reason}")]
    Refused {
        /// 1-based line of the offending node.
        line: usize,
        /// What is wrong, and what to write instead where there is a way.
        reason: String,
    },
}

/// Loads one YAML document the way PyYAML's `safe_load` does. A stream with
/// no document (only comments) is [`Node::Null`], as `safe_load` answers `None`.
pub(super) fn load(text: &str) -> Result<Node, LoadError> {
    let mut loader = Loader::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(LoadError::Syntax)?;
        loader.event(event, span)?;
    }
    Ok(loader.root.unwrap_or(Node::Null))
}

/// A collection still open while its events arrive.
enum Frame {
    Seq { anchor: usize, line: usize, items: Vec<Node> },
    Map { anchor: usize, line: usize, explicit: Vec<(Node, Node)>, merges: Vec<Node>, key: Option<Key> },
}

/// A mapping key waiting for its value.
enum Key {
    /// `<<`: the value's entries are merged into the mapping.
    Merge,
    Node(Node),
}

#[derive(Default)]
struct Loader {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    documents: usize,
    root: Option<Node>,
}

fn refused(span: &Span, reason: impl Into<String>) -> LoadError {
    LoadError::Refused { line: span.start.line(), reason: reason.into() }
}

impl Loader {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), LoadError> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(refused(&span, "a second YAML document; cloud-init reads only one"));
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let in_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                match resolve_scalar(&value, style, tag.as_deref(), in_key, &span)? {
                    Resolved::MergeKey => {
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some(Key::Merge);
                        }
                    }
                    Resolved::Node(node) => self.finish(node, anchor, span.start.line(), &span)?,
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| refused(&span, "an alias to a node that contains it; cloud-config cannot be recursive"))?;
                self.nodes += node.size() - 1; // finish() counts one
                self.finish(node, 0, span.start.line(), &span)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", &span)?;
                self.open(Frame::Seq { anchor, line: span.start.line(), items: Vec::new() }, &span)?;
            }
            Event::MappingStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", &span)?;
                let frame = Frame::Map { anchor, line: span.start.line(), explicit: Vec::new(), merges: Vec::new(), key: None };
                self.open(frame, &span)?;
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { anchor, line, items }) = self.stack.pop() {
                    self.nodes -= 1; // counted when opened
                    self.finish(Node::Seq(items), anchor, line, &span)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { anchor, line, explicit, merges, .. }) = self.stack.pop() {
                    let map = build_mapping(explicit, merges, line)?;
                    self.nodes -= 1;
                    self.finish(map, anchor, line, &span)?;
                }
            }
            // Stream and document ends carry nothing; anchor names and
            // comments are presentation only (and off in the parser's
            // default options).
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, span: &Span) -> Result<(), LoadError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(refused(span, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(refused(span, "a list or mapping as a mapping key; cloud-init needs plain keys"));
        }
        self.count(span)?;
        self.stack.push(frame);
        Ok(())
    }

    fn count(&mut self, span: &Span) -> Result<(), LoadError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(refused(span, format!("expands to more than {MAX_NODES} values")));
        }
        Ok(())
    }

    /// A complete node: remember it under its anchor and hand it to its parent.
    fn finish(&mut self, node: Node, anchor: usize, line: usize, span: &Span) -> Result<(), LoadError> {
        self.count(span)?;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { key: key @ None, .. }) => {
                if matches!(node, Node::Seq(_) | Node::Map(_)) {
                    return Err(LoadError::Refused {
                        line,
                        reason: "a list or mapping as a mapping key; cloud-init needs plain keys".into(),
                    });
                }
                *key = Some(Key::Node(node));
            }
            Some(Frame::Map { key: key @ Some(_), explicit, merges, .. }) => match key.take() {
                Some(Key::Merge) => {
                    let mergeable = match &node {
                        Node::Map(_) => true,
                        Node::Seq(items) => items.iter().all(|item| matches!(item, Node::Map(_))),
                        _ => false,
                    };
                    if !mergeable {
                        return Err(LoadError::Refused { line, reason: "a merge key (<<) needs a mapping or a list of mappings".into() });
                    }
                    merges.push(node);
                }
                Some(Key::Node(key)) => explicit.push((key, node)),
                None => {}
            },
        }
        Ok(())
    }
}

/// A mapping as PyYAML's `flatten_mapping` and `construct_mapping` make it:
/// merged entries first (of a merged list, earlier mappings win), then the
/// mapping's own entries, which win over merged ones. A key that keeps its
/// place when overridden, as in a Python dict.
fn build_mapping(explicit: Vec<(Node, Node)>, merges: Vec<Node>, line: usize) -> Result<Node, LoadError> {
    let mut entries: Vec<(Node, Node)> = Vec::new();
    let mut index: HashMap<KeyId, usize> = HashMap::new();
    let mut put = |key: Node, value: Node, entries: &mut Vec<(Node, Node)>| match index.entry(KeyId::of(&key)) {
        Entry::Occupied(slot) => entries[*slot.get()].1 = value,
        Entry::Vacant(slot) => {
            slot.insert(entries.len());
            entries.push((key, value));
        }
    };
    for merge in merges {
        match merge {
            Node::Map(merged) => merged.into_iter().for_each(|(k, v)| put(k, v, &mut entries)),
            Node::Seq(items) => {
                let items: Vec<Node> = items.into_iter().rev().collect();
                for item in items {
                    if let Node::Map(merged) = item {
                        merged.into_iter().for_each(|(k, v)| put(k, v, &mut entries));
                    }
                }
            }
            _ => {}
        }
    }
    let mut own: HashMap<KeyId, ()> = HashMap::new();
    for (key, value) in explicit {
        if own.insert(KeyId::of(&key), ()).is_some() {
            let shown = match &key {
                Node::Str(s) => format!("{s:?}"),
                other => format!("{other:?}"),
            };
            return Err(LoadError::Refused { line, reason: format!("the key {shown} appears twice in one mapping") });
        }
        put(key, value, &mut entries);
    }
    Ok(Node::Map(entries))
}

/// A key's identity as a Python dict sees it: `1`, `1.0` and `true` are one key.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Int(i128),
    Float(u64),
    Str(String),
}

impl KeyId {
    fn of(node: &Node) -> KeyId {
        match node {
            Node::Null => KeyId::Null,
            Node::Bool(b) => KeyId::Int(i128::from(*b)),
            Node::Int(i) => KeyId::Int(*i),
            // The cast is exact: the value is integral and below 2^100.
            Node::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => KeyId::Int(*f as i128),
            Node::Float(f) => KeyId::Float(f.to_bits()),
            Node::Str(s) => KeyId::Str(s.clone()),
            // Collections never become keys (refused when they arrive).
            Node::Seq(_) | Node::Map(_) => KeyId::Null,
        }
    }
}

enum Resolved {
    Node(Node),
    /// A plain `<<` in key position.
    MergeKey,
}

/// PyYAML's implicit resolvers for plain scalars (`yaml/resolver.py`),
/// pattern for pattern. Python's `$` also matches before a final newline,
/// which a plain scalar never has.
static BOOL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"));
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$")
});
static NULL: LazyLock<Regex> = LazyLock::new(|| pattern(r"^(?:~|null|Null|NULL|)$"));
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
    )
});

fn pattern(re: &str) -> Regex {
    // The patterns are constants; the test `pyyaml_patterns_compile` proves
    // each one compiles, so this cannot fail at run time.
    Regex::new(re).expect("constant pattern")
}

fn resolve_scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>, in_key: bool, span: &Span) -> Result<Resolved, LoadError> {
    if let Some(tag) = tag {
        let bad = || refused(span, format!("{value:?} is not a valid {}", tag.suffix()));
        let node = match tag.core_suffix() {
            Some("str") => Node::Str(value.to_owned()),
            Some("int") => Node::Int(construct_int(value).ok_or_else(bad)?),
            Some("float") => Node::Float(construct_float(value).ok_or_else(bad)?),
            Some("bool") => Node::Bool(construct_bool(value).ok_or_else(bad)?),
            Some("null") => Node::Null,
            _ => return Err(unsupported_tag(tag, span)),
        };
        return Ok(Resolved::Node(node));
    }
    if style != ScalarStyle::Plain {
        return Ok(Resolved::Node(Node::Str(value.to_owned())));
    }
    let node = if BOOL.is_match(value) {
        Node::Bool(construct_bool(value).ok_or_else(|| refused(span, "unreadable boolean"))?)
    } else if FLOAT.is_match(value) {
        Node::Float(construct_float(value).ok_or_else(|| refused(span, format!("{value:?} is not a number cloud-init can read")))?)
    } else if INT.is_match(value) {
        Node::Int(construct_int(value).ok_or_else(|| refused(span, format!("the integer {value} does not fit in 128 bits")))?)
    } else if NULL.is_match(value) {
        Node::Null
    } else if TIMESTAMP.is_match(value) {
        return Err(refused(span, format!("{value} is a date or time to cloud-init; quote it to keep it text")));
    } else if value == "<<" {
        if in_key {
            return Ok(Resolved::MergeKey);
        }
        return Err(refused(span, "<< outside a mapping key; quote it to keep it text"));
    } else if value == "=" && !in_key {
        // PyYAML's `value` tag: `safe_load` refuses it except as a key.
        return Err(refused(span, "= is not a value cloud-init can load; quote it to keep it text"));
    } else {
        Node::Str(value.to_owned())
    };
    Ok(Resolved::Node(node))
}

fn unsupported_tag(tag: &Tag, span: &Span) -> LoadError {
    refused(span, format!("the tag {}{} is not supported; cloud-init loads only plain YAML types", tag.original_handle(), tag.suffix()))
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, span: &Span) -> Result<(), LoadError> {
    match tag {
        None => Ok(()),
        Some(tag) if tag.core_suffix() == Some(expected) => Ok(()),
        Some(tag) => Err(unsupported_tag(tag, span)),
    }
}

/// PyYAML's `construct_yaml_bool`.
fn construct_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Splits PyYAML's optional sign off a number with its underscores removed.
fn signed(value: &str) -> (bool, String) {
    let digits: String = value.chars().filter(|c| *c != '_').collect();
    match digits.strip_prefix('-') {
        Some(rest) => (true, rest.to_owned()),
        None => (false, digits.strip_prefix('+').unwrap_or(&digits).to_owned()),
    }
}

/// PyYAML's `construct_yaml_int`: `0b` binary, `0x` hex, a leading `0`
/// octal, `:` base 60, else decimal. `None` if unreadable or beyond i128.
fn construct_int(value: &str) -> Option<i128> {
    let (negative, digits) = signed(value);
    let magnitude = if digits == "0" {
        0
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(&digits, 8).ok()?
    } else if digits.contains(':') {
        digits.split(':').try_fold(0i128, |acc, part| acc.checked_mul(60)?.checked_add(part.parse::<i128>().ok()?))?
    } else {
        digits.parse::<i128>().ok()?
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// PyYAML's `construct_yaml_float`: `.inf`, `.nan`, `:` base 60, else
/// Python's `float()`.
fn construct_float(value: &str) -> Option<f64> {
    let (negative, digits) = signed(&value.to_ascii_lowercase());
    let magnitude = match digits.as_str() {
        ".inf" => f64::INFINITY,
        ".nan" => return Some(f64::NAN),
        _ if digits.contains(':') => digits.split(':').try_fold(0.0f64, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))?,
        _ if digits.is_empty() || digits.starts_with(['+', '-']) => return None,
        _ => digits.parse::<f64>().ok()?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Node)]) -> Node {
        Node::Map(entries.iter().map(|(k, v)| (Node::Str((*k).into()), v.clone())).collect())
    }

    fn s(text: &str) -> Node {
        Node::Str(text.into())
    }

    #[test]
    fn pyyaml_patterns_compile() {
        for re in [&BOOL, &FLOAT, &INT, &NULL, &TIMESTAMP] {
            LazyLock::force(re);
        }
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1_and_quoted_ones_stay_text() {
        let doc = load(
            "a: yes\nb: 'yes'\nc: off\nd: 0644\ne: '0644'\nf: 1:20\ng: 1_000\nh: 0x1F\ni: 0b101\nj: ~\nk:\nl: 1.5\n\
             m: .inf\nn: -.inf\no: 1e3\np: y\nq: \"on\"\nr: 190:20:30.15\ns: +12\nt: 08\nu: True\n",
        )
        .unwrap();
        let Node::Map(entries) = doc else { panic!("not a map") };
        let got: HashMap<String, Node> = entries
            .into_iter()
            .map(|(k, v)| match k {
                Node::Str(k) => (k, v),
                other => panic!("key {other:?}"),
            })
            .collect();
        let want = [
            ("a", Node::Bool(true)),
            ("b", s("yes")),
            ("c", Node::Bool(false)),
            ("d", Node::Int(0o644)),
            ("e", s("0644")),
            ("f", Node::Int(80)),
            ("g", Node::Int(1000)),
            ("h", Node::Int(31)),
            ("i", Node::Int(5)),
            ("j", Node::Null),
            ("k", Node::Null),
            ("l", Node::Float(1.5)),
            ("m", Node::Float(f64::INFINITY)),
            ("n", Node::Float(f64::NEG_INFINITY)),
            // PyYAML 1.1 floats need a dot, and y/n are not booleans.
            ("o", s("1e3")),
            ("p", s("y")),
            ("q", s("on")),
            ("r", Node::Float(190.0 * 3600.0 + 20.0 * 60.0 + 30.15)),
            ("s", Node::Int(12)),
            ("t", s("08")),
            ("u", Node::Bool(true)),
        ];
        for (key, value) in want {
            assert_eq!(got.get(key), Some(&value), "key {key}");
        }
    }

    #[test]
    fn explicit_core_tags_construct_their_type() {
        let doc = load("a: !!str 12\nb: !!int '12'\nc: !!bool 'on'\nd: !!float '2'\ne: !!null x\nf: !!seq [1]\n").unwrap();
        assert_eq!(
            doc,
            map(&[
                ("a", s("12")),
                ("b", Node::Int(12)),
                ("c", Node::Bool(true)),
                ("d", Node::Float(2.0)),
                ("e", Node::Null),
                ("f", Node::Seq(vec![Node::Int(1)])),
            ])
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand_as_pyyaml_does() {
        let doc = load(
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\n\
             one: {<<: *b, y: 9}\nlist: {<<: [*b, *o]}\ncopy: *b\n",
        )
        .unwrap();
        let Node::Map(entries) = doc else { panic!() };
        let get = |k: &str| entries.iter().find(|(key, _)| *key == s(k)).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("one"), map(&[("x", Node::Int(1)), ("y", Node::Int(9))]));
        // Of a merged list, the earlier mapping wins.
        assert_eq!(get("list"), map(&[("y", Node::Int(2)), ("z", Node::Int(4)), ("x", Node::Int(1))]));
        assert_eq!(get("copy"), map(&[("x", Node::Int(1)), ("y", Node::Int(2))]));
    }

    #[test]
    fn refuses_what_safe_load_refuses_or_vman_cannot_write_back() {
        for (text, needle) in [
            ("a: !foo x\n", "tag !foo"),
            ("a: !!binary aGk=\n", "tag !!binary"),
            ("a: !!set {x}\n", "tag !!set"),
            ("a: =\n", "= is not a value"),
            ("a: <<\n", "<< outside"),
            ("? [1]\n: x\n", "as a mapping key"),
            ("a: 2024-01-02\n", "date or time"),
            ("a: 1\na: 2\n", "appears twice"),
            ("1: a\n1.0: b\n", "appears twice"),
            ("a: 1\n---\nb: 2\n", "second YAML document"),
            ("a: {<<: 3}\n", "merge key"),
            ("a: &x [1, *x]\n", "contains it"),
            ("a: 999999999999999999999999999999999999999999\n", "128 bits"),
            ("a: !!int x1\n", "not a valid int"),
        ] {
            match load(text) {
                Err(LoadError::Refused { reason, .. }) => assert!(reason.contains(needle), "{text:?}: {reason}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        assert!(matches!(load("a: [1\n"), Err(LoadError::Syntax(_))));
        assert!(matches!(load("a: b: c\n"), Err(LoadError::Syntax(_))));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        match load(&bomb) {
            Err(LoadError::Refused { reason, .. }) => assert!(reason.contains("more than"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(load(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn an_empty_stream_is_null_and_keys_keep_document_order() {
        assert_eq!(load("").unwrap(), Node::Null);
        assert_eq!(load("# only a comment\n").unwrap(), Node::Null);
        assert_eq!(load("z: 1\na: 2\nm: 3\n").unwrap(), map(&[("z", Node::Int(1)), ("a", Node::Int(2)), ("m", Node::Int(3))]));
    }
}
