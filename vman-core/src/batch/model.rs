//! Batch specs and records, and the naming pattern: pure, checked before
//! anything is recorded.

use serde::{Deserialize, Serialize};

use crate::batch::state::BatchState;
use crate::error::{Error, Result};
use crate::name::{MAX_NAME_LEN, validate_name};
use crate::vm::model::{ParsedNic, VmSpec};

/// The most VMs one batch makes. Its creator holds every VM's lock (one
/// open file each) until the batch is made or rolled back.
pub const MAX_BATCH_SIZE: u32 = 100;

/// What to create a batch of VMs from: `count` VMs named by `pattern`,
/// each made from `vm` (with its name left empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// The batch's name, unique among live batches (see [`validate_name`]).
    /// `None`: the pattern without its placeholder (`worker{:02}` →
    /// `worker`).
    #[serde(default)]
    pub name: Option<String>,
    /// How the VMs are named: text with one placeholder for the VM's
    /// number, `{}` (plain) or `{:0N}` (zero-padded to N digits), as in
    /// `worker{:02}` → `worker01`, `worker02`…
    pub pattern: String,
    /// How many VMs, 1..=[`MAX_BATCH_SIZE`].
    pub count: u32,
    /// The number of the first VM ([`BATCH_FIRST`](crate::defaults::BATCH_FIRST)
    /// unless given); the others follow in order.
    #[serde(default = "first_default")]
    pub first: u32,
    /// Start every VM once all are made.
    #[serde(default)]
    pub start: bool,
    /// What each VM is made from: template, image, NICs (addresses
    /// allocated automatically: a fixed address or MAC cannot be shared),
    /// SSH keys, cloud-init… Its `name` must be empty: each VM's name comes
    /// from the pattern.
    pub vm: VmSpec,
}

fn first_default() -> u32 {
    crate::defaults::BATCH_FIRST
}

impl BatchSpec {
    /// `count` VMs named by `pattern`, numbered from 1, each made as `vm`
    /// says (with an empty name), not started.
    ///
    /// ```
    /// use vman_core::{BatchSpec, VmSpec};
    /// let spec = BatchSpec::new("worker{:02}", 3, VmSpec::new("", "small").nic("lan")).start(true);
    /// assert_eq!(spec.vm_names().unwrap(), ["worker01", "worker02", "worker03"]);
    /// ```
    pub fn new(pattern: impl Into<String>, count: u32, vm: VmSpec) -> BatchSpec {
        BatchSpec { name: None, pattern: pattern.into(), count, first: first_default(), start: false, vm }
    }

    /// Names the batch (by default, its pattern without the placeholder).
    pub fn name(mut self, name: impl Into<String>) -> BatchSpec {
        self.name = Some(name.into());
        self
    }

    /// Numbers the VMs from `first` (1 by default).
    pub fn first(mut self, first: u32) -> BatchSpec {
        self.first = first;
        self
    }

    /// Whether every VM is started once all are made.
    pub fn start(mut self, start: bool) -> BatchSpec {
        self.start = start;
        self
    }

    /// The names the batch's VMs will have, in order: the pattern and count
    /// checked, and each name a valid VM name.
    pub fn vm_names(&self) -> Result<Vec<String>> {
        let pattern = NamePattern::parse(&self.pattern)?;
        if !(1..=MAX_BATCH_SIZE).contains(&self.count) {
            return Err(Error::invalid("batch size", format!("{} VMs is outside 1..={MAX_BATCH_SIZE}", self.count)));
        }
        let last = self
            .first
            .checked_add(self.count - 1)
            .ok_or_else(|| Error::invalid("first number", format!("{} VMs from {} run past {}", self.count, self.first, u32::MAX)))?;
        let names: Vec<String> = (self.first..=last).map(|n| pattern.render(n)).collect();
        for name in &names {
            validate_name("VM name", name)?;
        }
        Ok(names)
    }

    /// Everything checked, before anything is recorded.
    pub(crate) fn plan(&self) -> Result<BatchPlan> {
        let names = self.vm_names()?;
        let name = match &self.name {
            Some(name) => name.clone(),
            None => NamePattern::parse(&self.pattern)?.default_batch_name(),
        };
        validate_name("batch name", &name).map_err(|e| match (&self.name, e) {
            (None, Error::InvalidArgument { reason, .. }) => {
                Error::invalid("batch name", format!("none given, and the pattern's text without its placeholder {reason}; name the batch"))
            }
            (_, e) => e,
        })?;
        if !self.vm.name.is_empty() {
            return Err(Error::invalid("VM name", "a batch names its VMs by its pattern; leave the VM spec's name empty"));
        }
        let mut members = Vec::with_capacity(names.len());
        let mut nics = Vec::new();
        for vm_name in names {
            let member = VmSpec { name: vm_name, ..self.vm.clone() };
            nics = member.validate()?;
            members.push(member);
        }
        if self.count > 1 {
            if nics.iter().any(|n| n.ip.is_some()) {
                return Err(Error::invalid("IP address", "the VMs of a batch cannot share a fixed address; leave it to the allocator"));
            }
            if nics.iter().any(|n| n.mac.is_some()) {
                return Err(Error::invalid("MAC address", "the VMs of a batch cannot share a fixed MAC; leave it to vman"));
            }
        }
        Ok(BatchPlan { name, members, nics })
    }
}

/// A checked batch: its name, and each VM's spec with its name.
#[derive(Debug)]
pub(crate) struct BatchPlan {
    pub name: String,
    pub members: Vec<VmSpec>,
    /// The NICs every member gets (the same for each).
    pub nics: Vec<ParsedNic>,
}

/// A naming pattern: text around one `{}` or `{:0N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamePattern {
    prefix: String,
    suffix: String,
    /// Zero-padded to this many digits; 0: plain.
    width: usize,
}

const PATTERN_FORMS: &str = "use one placeholder, {} or {:0N} (zero-padded to N digits), as in worker{:02}";

impl NamePattern {
    pub fn parse(pattern: &str) -> Result<NamePattern> {
        let bad = |reason: String| Err(Error::invalid("naming pattern", reason));
        if pattern.len() > MAX_NAME_LEN + 8 {
            return bad(format!("is {} bytes; names are at most {MAX_NAME_LEN}", pattern.len()));
        }
        let Some(open) = pattern.find('{') else { return bad(format!("{pattern:?} has no placeholder; {PATTERN_FORMS}")) };
        let Some(close) = pattern[open..].find('}').map(|i| open + i) else {
            return bad(format!("{pattern:?} has an unclosed '{{'; {PATTERN_FORMS}"));
        };
        let (prefix, spec, suffix) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
        if prefix.contains('}') || suffix.contains(['{', '}']) {
            return bad(format!("{pattern:?} has more than one placeholder or a stray brace; {PATTERN_FORMS}"));
        }
        let width = match spec.strip_prefix(":0") {
            None if spec.is_empty() => 0,
            Some(digits) if !digits.is_empty() && digits.len() <= 2 && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<usize>() {
                    Ok(w) if (1..=MAX_NAME_LEN).contains(&w) => w,
                    _ => return bad(format!("{{{spec}}} pads to {digits} digits; at most {MAX_NAME_LEN}")),
                }
            }
            _ => return bad(format!("{{{spec}}} is not a placeholder vman knows; {PATTERN_FORMS}")),
        };
        Ok(NamePattern { prefix: prefix.to_string(), suffix: suffix.to_string(), width })
    }

    /// The name of VM number `n`.
    pub fn render(&self, n: u32) -> String {
        format!("{}{:0width$}{}", self.prefix, n, self.suffix, width = self.width)
    }

    /// The pattern's own text, separators at its ends trimmed.
    pub fn default_batch_name(&self) -> String {
        format!("{}{}", self.prefix, self.suffix).trim_matches(['-', '_', '.']).to_string()
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Batch {
    /// Its number in the store; never reused.
    pub id: i64,
    /// Its name, unique among live batches; freed when it is deleted.
    pub name: String,
    /// The naming pattern its VMs were named by.
    pub pattern: String,
    /// How many VMs it was made with.
    pub count: u32,
    /// Where it is in its life.
    pub state: BatchState,
    /// Its live VMs' names, in the order they were made (fewer than
    /// `count` once some were deleted on their own).
    pub vms: Vec<String>,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
}

impl std::str::FromStr for BatchState {
    type Err = Error;

    fn from_str(s: &str) -> Result<BatchState> {
        BatchState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::invalid("batch state", format!("{s:?} is not one of creating, created, rolling_back, deleting, deleted")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn names(pattern: &str, count: u32, first: u32) -> Result<Vec<String>> {
        BatchSpec::new(pattern, count, VmSpec::new("", "t")).first(first).vm_names()
    }

    #[test]
    fn patterns_name_vms_as_rusts_and_pythons_format_would() {
        assert_eq!(names("worker{:02}", 3, 1).unwrap(), ["worker01", "worker02", "worker03"]);
        assert_eq!(names("node{}", 3, 9).unwrap(), ["node9", "node10", "node11"]);
        assert_eq!(names("cp-{:03}.lab", 2, 7).unwrap(), ["cp-007.lab", "cp-008.lab"]);
        // Past the width, the number simply grows (as format does).
        assert_eq!(names("w{:01}", 2, 9).unwrap(), ["w9", "w10"]);
        assert_eq!(names("{}", 2, 1).unwrap(), ["1", "2"]);
    }

    #[test]
    fn bad_patterns_counts_and_names_are_refused_before_anything() {
        for (pattern, count, first) in [
            ("worker", 3, 1),                            // no placeholder
            ("worker{", 3, 1),                           // unclosed
            ("w{}{}", 3, 1),                             // two placeholders
            ("w{}}", 3, 1),                              // stray brace
            ("w}{}", 3, 1),                              // stray brace before
            ("w{:2}", 3, 1),                             // space padding: not a name
            ("w{:x}", 3, 1),                             // unknown form
            ("w{:0}", 3, 1),                             // no width
            ("w{:099}", 3, 1),                           // too wide
            ("w{:064}", 3, 1),                           // wider than a name
            ("w {}", 3, 1),                              // not a valid name
            ("-w{}", 3, 1),                              // must start with a letter or digit
            ("w{}", 0, 1),                               // too few
            ("w{}", MAX_BATCH_SIZE + 1, 1),              // too many
            ("w{}", 2, u32::MAX),                        // numbers overflow
            (&format!("{}{{}}", "x".repeat(62)), 10, 1), // "x…x10" is 64 bytes
        ] {
            let err = names(pattern, count, first).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{pattern:?} x{count} from {first}: {err}");
        }
        assert_eq!(names("w{}", MAX_BATCH_SIZE, 1).unwrap().len(), MAX_BATCH_SIZE as usize);
    }

    #[test]
    fn a_batch_is_named_after_its_pattern_unless_named() {
        let plan = BatchSpec::new("worker{:02}", 2, VmSpec::new("", "t")).plan().unwrap();
        assert_eq!(plan.name, "worker");
        assert_eq!(plan.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["worker01", "worker02"]);
        assert_eq!(BatchSpec::new("k8s-{}-node", 1, VmSpec::new("", "t")).plan().unwrap().name, "k8s--node");
        assert_eq!(BatchSpec::new("{}", 1, VmSpec::new("", "t")).name("nums").plan().unwrap().name, "nums");
        let err = BatchSpec::new("{}", 1, VmSpec::new("", "t")).plan().unwrap_err();
        assert!(err.to_string().contains("name the batch"), "{err}");
        let err = BatchSpec::new("w{}", 1, VmSpec::new("", "t")).name("bad name").plan().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn what_members_cannot_share_is_refused() {
        let named = BatchSpec::new("w{}", 2, VmSpec::new("web", "t")).plan().unwrap_err();
        assert!(named.to_string().contains("leave the VM spec's name empty"), "{named}");
        let ip = BatchSpec::new("w{}", 2, VmSpec::new("", "t").with_nic(crate::NicSpec::on("lan").ip("10.0.0.5"))).plan().unwrap_err();
        assert_eq!(ip.kind(), ErrorKind::InvalidArgument);
        let mac =
            BatchSpec::new("w{}", 2, VmSpec::new("", "t").with_nic(crate::NicSpec::on("lan").mac("52:54:00:00:00:01"))).plan().unwrap_err();
        assert_eq!(mac.kind(), ErrorKind::InvalidArgument);
        // One VM may have them.
        BatchSpec::new("w{}", 1, VmSpec::new("", "t").with_nic(crate::NicSpec::on("lan").ip("10.0.0.5"))).plan().unwrap();
        // The VM spec is checked as create_vm checks it.
        let bad = BatchSpec::new("w{}", 2, VmSpec::new("", "bad template")).plan().unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn states_read_back_as_written() {
        for state in BatchState::ALL {
            assert_eq!(state.as_str().parse::<BatchState>().unwrap(), state);
        }
        assert_eq!("gone".parse::<BatchState>().unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
