//! Conversions the C and Python façades share, so range checks on numbers
//! coming from languages with wider integer types live in one place.

use crate::error::{Error, Result};

/// Converts a caller's integer to the field's type, or answers
/// [`crate::ErrorKind::InvalidArgument`] naming the field (negative numbers
/// from Python or C land here rather than wrapping around).
pub fn int_arg<T: TryFrom<i64>>(what: &'static str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| Error::invalid(what, format!("{value} is out of range")))
}

/// An integer from a language whose integers are unbounded (Python): its
/// value when it fits in 128 bits, which covers every vman field with room
/// to spare, else only that it is huge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideInt {
    /// The value itself.
    Fits(i128),
    /// A value beyond `i128`, of either sign: out of range for every field.
    Huge,
}

/// Converts an unbounded caller's integer to the field's type, or answers
/// [`crate::ErrorKind::InvalidArgument`] naming the field, however large
/// or negative it was (Python's `2**64` lands here, not in `OverflowError`).
pub fn wide_int_arg<T: TryFrom<i128>>(what: &'static str, value: WideInt) -> Result<T> {
    match value {
        WideInt::Fits(v) => T::try_from(v).map_err(|_| Error::invalid(what, format!("{v} is out of range"))),
        WideInt::Huge => Err(Error::invalid(what, "the number is out of range")),
    }
}

/// Converts seconds from a caller (Python floats) into a duration, refusing
/// negative, NaN and absurd values with [`crate::ErrorKind::InvalidArgument`].
pub fn seconds_arg(what: &'static str, seconds: f64) -> Result<std::time::Duration> {
    // A day is far beyond any wait vman does; beyond it is a unit mistake.
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(Error::invalid(what, format!("{seconds} s is outside 0..=86400 s")));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// The same check for milliseconds from C.
pub fn millis_arg(what: &'static str, ms: u64) -> Result<std::time::Duration> {
    if ms > 86_400_000 {
        return Err(Error::invalid(what, format!("{ms} ms is over a day")));
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// A host path from a caller (Python's `os.PathLike`) as the text vman
/// records: one that is not UTF-8 is refused with
/// [`crate::ErrorKind::InvalidArgument`], never altered.
pub fn path_arg(what: &'static str, path: std::path::PathBuf) -> Result<String> {
    path.into_os_string().into_string().map_err(|p| Error::invalid(what, format!("{} is not UTF-8", p.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_not_utf8_is_an_invalid_argument() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(path_arg("source", "/tmp/a.img".into()).unwrap(), "/tmp/a.img");
        let bad = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff.img"));
        assert_eq!(path_arg("source", bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn negative_and_oversized_numbers_are_invalid_arguments() {
        assert_eq!(int_arg::<u32>("vcpus", 4).unwrap(), 4);
        assert_eq!(int_arg::<u32>("vcpus", -1).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(int_arg::<u16>("VLAN id", 70_000).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn unbounded_integers_beyond_any_field_are_invalid_arguments() {
        assert_eq!(wide_int_arg::<u64>("cap", WideInt::Fits(4096)).unwrap(), 4096);
        assert_eq!(wide_int_arg::<u64>("cap", WideInt::Fits(1 << 63)).unwrap(), 1 << 63);
        for v in [1i128 << 64, -(1i128 << 63) - 1, -1] {
            let err = wide_int_arg::<u64>("cap", WideInt::Fits(v)).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
            assert!(err.to_string().contains(&v.to_string()), "{err}");
        }
        assert_eq!(
            wide_int_arg::<i64>("id", WideInt::Fits(i128::from(i64::MAX) + 1)).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(wide_int_arg::<u16>("VLAN id", WideInt::Huge).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn timeouts_must_be_finite_and_sane() {
        assert_eq!(seconds_arg("timeout", 1.5).unwrap(), std::time::Duration::from_millis(1500));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert_eq!(seconds_arg("timeout", bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        }
        assert!(millis_arg("timeout", u64::MAX).is_err());
    }
}
