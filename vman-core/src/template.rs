//! Size templates (VMAN's VMTemplate, OpenStack's flavor, EC2's instance type).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::name::validate_name;

/// Limits that keep a template within what QEMU on one host can run.
pub const MAX_VCPUS: u32 = 255;
/// The smallest guest that can boot a Linux kernel.
pub const MIN_MEMORY_MIB: u64 = 16;
/// 4 TiB: anything bigger is a typo, not a VM.
pub const MAX_MEMORY_MIB: u64 = 4 * 1024 * 1024;
/// 64 TiB.
pub const MAX_DISK_GIB: u64 = 64 * 1024;
/// Descriptions are free text, but bounded.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// What to create a template from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The template's name, unique in the store (see [`validate_name`]).
    pub name: String,
    /// Virtual CPUs of each VM, 1..=255.
    pub vcpus: u32,
    /// Guest memory in MiB, 16..=4 Mi (4 TiB).
    pub memory_mib: u64,
    /// Size of a VM's root disk when none is given, in GiB, 1..=64 Ki
    /// (64 TiB).
    pub disk_gib: u64,
    /// Free text for people: at most 1024 bytes, no NUL; empty by default.
    #[serde(default)]
    pub description: String,
}

impl TemplateSpec {
    /// A template `name` of `vcpus` CPUs, `memory_mib` MiB of memory and a
    /// `disk_gib` GiB disk, with no description.
    pub fn new(name: impl Into<String>, vcpus: u32, memory_mib: u64, disk_gib: u64) -> TemplateSpec {
        TemplateSpec { name: name.into(), vcpus, memory_mib, disk_gib, description: String::new() }
    }

    /// Sets the description (at most 1024 bytes, no NUL).
    pub fn description(mut self, text: impl Into<String>) -> TemplateSpec {
        self.description = text.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_name("template name", &self.name)?;
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(Error::invalid("vcpus", format!("{} is outside 1..={MAX_VCPUS}", self.vcpus)));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(Error::invalid("memory", format!("{} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB", self.memory_mib)));
        }
        if !(1..=MAX_DISK_GIB).contains(&self.disk_gib) {
            return Err(Error::invalid("disk size", format!("{} GiB is outside 1..={MAX_DISK_GIB} GiB", self.disk_gib)));
        }
        if self.description.len() > MAX_DESCRIPTION_LEN || self.description.contains('\0') {
            return Err(Error::invalid("description", format!("must be at most {MAX_DESCRIPTION_LEN} bytes with no NUL")));
        }
        Ok(())
    }
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Template {
    /// The store's id for it, never reused after a delete.
    pub id: i64,
    /// The template's name, unique in the store.
    pub name: String,
    /// Virtual CPUs of each VM, 1..=255.
    pub vcpus: u32,
    /// Guest memory in MiB, 16..=4 Mi (4 TiB).
    pub memory_mib: u64,
    /// Root disk size in GiB, 1..=64 Ki (64 TiB).
    pub disk_gib: u64,
    /// Free text for people; may be empty.
    pub description: String,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn rejects_zero_and_absurd_sizes() {
        let good = TemplateSpec::new("small", 1, 512, 10);
        good.validate().unwrap();
        for bad in [
            TemplateSpec { vcpus: 0, ..good.clone() },
            TemplateSpec { vcpus: 256, ..good.clone() },
            TemplateSpec { memory_mib: 0, ..good.clone() },
            TemplateSpec { memory_mib: MAX_MEMORY_MIB + 1, ..good.clone() },
            TemplateSpec { disk_gib: 0, ..good.clone() },
            TemplateSpec { description: "x\0".into(), ..good.clone() },
            TemplateSpec { name: "a/b".into(), ..good.clone() },
        ] {
            assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
