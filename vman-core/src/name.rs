//! Names of templates, networks and VMs.
//!
//! Names end up in file paths, interface descriptions, logs and shell
//! sessions of operators, so they are restricted to a conservative alphabet:
//! ASCII letters and digits, `-`, `_` and `.`, starting with a letter or digit,
//! never containing `..`, at most [`MAX_NAME_LEN`] bytes.

use crate::error::{Error, Result};

/// The longest name accepted, in bytes (a DNS label's limit).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a name; `what` says whose name it is, for the error message.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!("is {} bytes; the limit is {MAX_NAME_LEN}", name.len())
    } else if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        format!("{name:?} contains {c:?}; use letters, digits, '-', '_' and '.'")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!("{name:?} must start with a letter or digit")
    } else if name.contains("..") {
        format!("{name:?} must not contain \"..\"")
    } else {
        return Ok(());
    };
    Err(Error::invalid(what, reason))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["web1", "db-primary", "m1.small", "a", "A_b-c.9", &"x".repeat(63)] {
            validate_name("name", ok).unwrap();
        }
    }

    #[test]
    fn rejects_names_that_could_escape_paths_or_shells() {
        let long = "x".repeat(64);
        for bad in [
            "", &long, "a/b", "..", "a..b", ".hidden", "-flag", "a b", "a\0b", "a;rm", "$(x)", "a`b`", "a|b", "a&b", "a>b", "a*", "né",
            "tab\t",
        ] {
            let err = validate_name("name", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?} was accepted");
        }
    }
}
