//! Conversions the C and Python façades share, so range checks on numbers
//! coming from languages with wider integer types live in one place.

use crate::error::{Error, Result};

/// Converts a caller's integer to the field's type, or answers
/// [`crate::ErrorKind::InvalidArgument`] naming the field (negative numbers
/// from Python or C land here rather than wrapping around).
pub fn int_arg<T: TryFrom<i64>>(what: &'static str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| Error::invalid(what, format!("{value} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_oversized_numbers_are_invalid_arguments() {
        assert_eq!(int_arg::<u32>("vcpus", 4).unwrap(), 4);
        assert_eq!(int_arg::<u32>("vcpus", -1).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(int_arg::<u16>("VLAN id", 70_000).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
