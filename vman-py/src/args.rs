//! Argument extractors shared by every method, so each kind of argument is
//! checked one way.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use vman_core::convert::{WideInt, wide_int_arg};

/// An integer argument of any size. pyo3's own `i64`/`u32` extraction
/// raises a bare `OverflowError` for `2**64`; this one keeps the value (or
/// that it is huge) so vman-core's range check answers
/// `vman.InvalidArgumentError` naming the field, as for any bad value.
/// A non-integer is still a `TypeError`.
pub(crate) struct IntArg(WideInt);

impl IntArg {
    /// A default value in a `#[pyo3(signature)]`.
    pub(crate) const fn of(value: i64) -> IntArg {
        IntArg(WideInt::Fits(value as i128))
    }

    /// A `usize` default (a size constant of core's) in a `#[pyo3(signature)]`.
    pub(crate) const fn of_usize(value: usize) -> IntArg {
        // Lossless: no target Rust supports has a usize wider than 64 bits.
        IntArg(WideInt::Fits(value as i128))
    }

    /// The value as the field's type, or InvalidArgument naming `what`.
    pub(crate) fn get<T: TryFrom<i128>>(self, what: &'static str) -> vman_core::Result<T> {
        wide_int_arg(what, self.0)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for IntArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i128>() {
            Ok(value) => Ok(IntArg(WideInt::Fits(value))),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Ok(IntArg(WideInt::Huge)),
            Err(e) => Err(e),
        }
    }
}

/// A file path argument: a ``str`` or an ``os.PathLike``. Core takes paths
/// as text, so one that is not UTF-8 is refused (never altered) as
/// `vman.InvalidArgumentError` naming the field; another type is a
/// `TypeError`.
pub(crate) struct PathArg(std::path::PathBuf);

impl PathArg {
    /// The path as text, or InvalidArgument naming `what`.
    pub(crate) fn get(self, what: &'static str) -> vman_core::Result<String> {
        vman_core::convert::path_arg(what, self.0)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for PathArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        obj.extract::<std::path::PathBuf>().map(PathArg)
    }
}

/// A value for `Manager.set_setting`: an ``int`` (as its decimal text, any
/// size, so core's range check answers), a ``str`` or ``os.PathLike``, or
/// None (``""``, the default, which only ``qemu_user`` has). A ``bool`` or
/// any other type is a `TypeError`.
pub(crate) struct SettingValue(vman_core::Result<String>);

impl SettingValue {
    /// The value as text, or InvalidArgument (a path that is not UTF-8).
    pub(crate) fn get(self) -> vman_core::Result<String> {
        self.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for SettingValue {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        use pyo3::types::{PyBool, PyInt};
        if obj.is_none() {
            return Ok(SettingValue(Ok(String::new())));
        }
        if obj.is_instance_of::<PyBool>() {
            return Err(pyo3::exceptions::PyTypeError::new_err("a setting's value is a str, an int or None, not a bool"));
        }
        if obj.is_instance_of::<PyInt>() {
            return Ok(SettingValue(Ok(obj.str()?.to_string())));
        }
        let path: std::path::PathBuf = obj.extract()?;
        Ok(SettingValue(vman_core::convert::path_arg("setting value", path)))
    }
}
