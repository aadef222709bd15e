//! Declared records: one `record!` invocation per record type makes its
//! handle, its C getters (one line per field), its free function, its list
//! type with `_len`/`_get`/`_free`, and their doc comments.
//!
//! cbindgen does not expand macros, so every generated item is also kept as
//! text: each item is written once and handed either to `emit!` (the item
//! itself) or to `stringify!` (its source, in the record's `HEADER`
//! constant). The header test gives those texts to cbindgen as a source
//! file beside the crate's own, so the header declares exactly the
//! compiled items, with their doc comments, and a new field costs one
//! declaration line plus its doc.
//!
//! Field kinds (`fn NAME -> KIND = |r| EXPR;`, `r` borrowing the core record):
//! - `number<T>`: `T` computed on each call; 0 when the record is NULL.
//! - `text`: a `const char*` made from `EXPR: Display` at the first call, kept, borrowed.
//! - `optional_text`: the same from `Option<impl Display>`; NULL when absent.
//! - `text_at`: item `index` of `EXPR: IntoIterator<Item: Display>`.
//! - `record_at<H>`: item `index` of `EXPR: IntoIterator<Item = C>`, each
//!   made into the declared record handle `H: From<C>`, borrowed.

use std::ffi::CString;
use std::fmt::Display;

use crate::guard;

/// A C copy of a Rust string. Core strings never hold NUL (names are
/// validated, JSON escapes it); any that did would show as "\0".
pub(crate) fn cstring(text: impl AsRef<str>) -> CString {
    CString::new(text.as_ref().replace('\0', "\\0")).unwrap_or_default()
}

/// A C copy of a value's text.
pub(crate) fn c_text(value: impl Display) -> CString {
    cstring(value.to_string())
}

/// The borrowed `const char*` of a field; NULL when the handle is NULL.
pub(crate) fn text<T>(record: *const T, field: impl FnOnce(&T) -> &CString) -> *const std::ffi::c_char {
    guard::get(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live handle of this type, as
        // every getter documents.
        unsafe { record.as_ref() }.map_or(std::ptr::null(), |r| field(r).as_ptr())
    })
}

/// A numeric field; 0 (the type's default) when the handle is NULL.
pub(crate) fn number<T, N: Default>(record: *const T, field: impl FnOnce(&T) -> N) -> N {
    guard::get(N::default(), || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.map_or_else(N::default, field)
    })
}

/// A field for which 0 is a meaningful value (a file descriptor); `null`
/// when the handle is NULL or on a panic.
pub(crate) fn number_or<T, N: Copy>(record: *const T, null: N, field: impl FnOnce(&T) -> N) -> N {
    guard::get(null, || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.map_or(null, field)
    })
}

/// A borrowed element of a handle; NULL when the handle is NULL or `pick`
/// finds nothing (index out of range).
pub(crate) fn item<L, T>(list: *const L, pick: impl FnOnce(&L) -> Option<&T>) -> *const T {
    guard::get(std::ptr::null(), || {
        // SAFETY: as in `text`.
        unsafe { list.as_ref() }.and_then(pick).map_or(std::ptr::null(), |t| t as *const T)
    })
}

/// A borrowed string element of a record (an optional or list field); NULL
/// when the record is NULL or `pick` finds nothing.
pub(crate) fn text_item<T>(record: *const T, pick: impl FnOnce(&T) -> Option<&CString>) -> *const std::ffi::c_char {
    guard::get(std::ptr::null(), || {
        // SAFETY: as in `text`.
        unsafe { record.as_ref() }.and_then(pick).map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Expands to its input: the compiled half of every generated item.
macro_rules! emit {
    ($($item:tt)*) => { $($item)* };
}

/// What a field stores in the handle: C text made at the first call of its
/// getter and kept (a list of 10,000 VMs whose callers read two fields each
/// does not pay for every field's copy), or nothing for numbers (read from
/// the core record on each call). `OnceLock` keeps getters thread-safe and
/// the pointers they return valid until the record is freed.
macro_rules! record_slot {
    (number<$t:ty>) => { () };
    (text) => { std::sync::OnceLock<std::ffi::CString> };
    (optional_text) => { std::sync::OnceLock<Option<std::ffi::CString>> };
    (text_at) => { std::sync::OnceLock<Vec<std::ffi::CString>> };
    (record_at<$h:ty>) => { std::sync::OnceLock<Vec<$h>> };
}

/// A field's empty slot, filled by its getter.
macro_rules! record_empty {
    (number<$t:ty>) => {
        ()
    };
    ($kind:ident $(<$h:ty>)?) => {
        std::sync::OnceLock::new()
    };
}

/// A field's C value, made from the value of its expression.
macro_rules! record_fill {
    (number<$t:ty>, $v:expr) => {
        ()
    };
    (text, $v:expr) => {
        crate::record::c_text($v)
    };
    (optional_text, $v:expr) => {
        $v.map(crate::record::c_text)
    };
    (text_at, $v:expr) => {
        $v.into_iter().map(crate::record::c_text).collect()
    };
    (record_at<$h:ty>, $v:expr) => {
        $v.into_iter().map(<$h>::from).collect()
    };
}

/// One getter, handed to `$out` (`emit` or `stringify`).
macro_rules! record_getter {
    ($out:ident; number<$t:ty>; $rec:ident, $this:ident, $name:ident, [$($doc:literal)*], $r:ident, $e:expr) => {
        $out! {
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = " 0 when the record is NULL. Thread-safe; never fails (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($this: *const $rec) -> $t {
                crate::record::number($this, |handle| {
                    let $r = &handle.inner;
                    $e
                })
            }
        }
    };
    ($out:ident; text; $rec:ident, $this:ident, $name:ident, [$($doc:literal)*], $r:ident, $e:expr) => {
        $out! {
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = " Borrowed from the record (valid until it is freed); NULL when the record is NULL."]
            #[doc = " Thread-safe; never fails (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($this: *const $rec) -> *const std::ffi::c_char {
                crate::record::text($this, |handle| {
                    handle.$name.get_or_init(|| {
                        let $r = &handle.inner;
                        record_fill!(text, $e)
                    })
                })
            }
        }
    };
    ($out:ident; optional_text; $rec:ident, $this:ident, $name:ident, [$($doc:literal)*], $r:ident, $e:expr) => {
        $out! {
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = " Borrowed from the record (valid until it is freed); NULL when absent or the record is"]
            #[doc = " NULL. Thread-safe; never fails (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($this: *const $rec) -> *const std::ffi::c_char {
                crate::record::text_item($this, |handle| {
                    handle.$name.get_or_init(|| {
                        let $r = &handle.inner;
                        record_fill!(optional_text, $e)
                    }).as_ref()
                })
            }
        }
    };
    ($out:ident; text_at; $rec:ident, $this:ident, $name:ident, [$($doc:literal)*], $r:ident, $e:expr) => {
        $out! {
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = " Borrowed from the record (valid until it is freed); NULL when `index` is out of range"]
            #[doc = " or the record is NULL. Thread-safe; never fails (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($this: *const $rec, index: usize) -> *const std::ffi::c_char {
                crate::record::text_item($this, |handle| {
                    handle.$name.get_or_init(|| {
                        let $r = &handle.inner;
                        record_fill!(text_at, $e)
                    }).get(index)
                })
            }
        }
    };
    ($out:ident; record_at<$h:ty>; $rec:ident, $this:ident, $name:ident, [$($doc:literal)*], $r:ident, $e:expr) => {
        $out! {
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = " Borrowed from the record (valid until it is freed; never free it); NULL when `index` is"]
            #[doc = " out of range or the record is NULL. Thread-safe; never fails (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($this: *const $rec, index: usize) -> *const $h {
                crate::record::item($this, |handle| {
                    handle.$name.get_or_init(|| {
                        let $r = &handle.inner;
                        record_fill!(record_at<$h>, $e)
                    }).get(index)
                })
            }
        }
    };
}

/// The free function of a record the caller owns.
macro_rules! record_free {
    ($out:ident; $rec:ident, $this:ident, $free:ident) => {
        $out! {
            #[doc = " Frees a record the caller owns (one returned through an `out` parameter, not a list item"]
            #[doc = " nor part of another record); NULL is a no-op. No other thread may use the record during"]
            #[doc = " or after the call. Never fails (clears the last error)."]
            #[doc = ""]
            #[doc = " # Safety"]
            #[doc = " The record must be NULL or owned by the caller, and not used afterwards."]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $free($this: *mut $rec) {
                // SAFETY: per this function's contract, NULL or an owned handle.
                crate::guard::get((), || unsafe { crate::guard::free_handle($this) })
            }
        }
    };
}

/// A list type of a record, and its three functions.
macro_rules! record_list {
    ($out:ident; $rec:ident, $list:ident, $len:ident, $get:ident, $free:ident) => {
        $out! {
            #[doc = " A list of records, owned by the caller; its items are borrowed from it. Immutable:"]
            #[doc = " thread-safe."]
            #[derive(Debug)]
            pub struct $list(Vec<$rec>);

            #[doc = " The number of items in the list; 0 when the list is NULL. Thread-safe; never fails"]
            #[doc = " (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $len(list: *const $list) -> usize {
                crate::record::number(list, |l| l.0.len())
            }

            #[doc = " Item `index` of the list, borrowed from it (valid until the list is freed; never free"]
            #[doc = " it); NULL when `index` is out of range or the list is NULL. Thread-safe; never fails"]
            #[doc = " (clears the last error)."]
            #[unsafe(no_mangle)]
            pub extern "C" fn $get(list: *const $list, index: usize) -> *const $rec {
                crate::record::item(list, |l| l.0.get(index))
            }

            #[doc = " Frees a list the caller owns and every item in it; NULL is a no-op. No other thread"]
            #[doc = " may use the list or its items during or after the call. Never fails (clears the last"]
            #[doc = " error)."]
            #[doc = ""]
            #[doc = " # Safety"]
            #[doc = " `list` must be NULL or a list owned by the caller, and not used afterwards."]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $free(list: *mut $list) {
                // SAFETY: per this function's contract, NULL or an owned handle.
                crate::guard::get((), || unsafe { crate::guard::free_handle(list) })
            }
        }
    };
}

/// Declares a record handle over a core record type. See the module docs.
///
/// ```text
/// record! {
///     /// A template record.
///     pub struct VmanTemplate(template) from Template;
///     /// The template's name.
///     fn vman_template_name -> text = |t| &t.name;
///     free vman_template_free;
///     list VmanTemplateList(vman_template_list_len, vman_template_list_get, vman_template_list_free);
/// }
/// ```
macro_rules! record {
    (
        $(#[doc = $doc:literal])*
        pub struct $rec:ident($this:ident) from $inner:ty;
        $(
            $(#[doc = $fdoc:literal])*
            fn $name:ident -> $kind:ident $(<$kt:ty>)? = |$r:ident| $e:expr;
        )*
        $(free $free:ident;)?
        $(list $list:ident($len:ident, $get:ident, $lfree:ident);)?
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $rec {
            inner: $inner,
            // A number's slot is `()`, never read; every other is filled by
            // its getter.
            $(#[allow(dead_code)] $name: record_slot!($kind $(<$kt>)?),)*
        }

        impl From<$inner> for $rec {
            // A number fills its `()` slot; its expression is read on each call.
            #[allow(clippy::unused_unit)]
            fn from(inner: $inner) -> Self {
                $rec {
                    $($name: record_empty!($kind $(<$kt>)?),)*
                    inner,
                }
            }
        }

        $(record_getter!(emit; $kind $(<$kt>)?; $rec, $this, $name, [$($fdoc)*], $r, $e);)*
        $(record_free!(emit; $rec, $this, $free);)?
        $(
            record_list!(emit; $rec, $list, $len, $get, $lfree);
            impl FromIterator<$inner> for $list {
                fn from_iter<I: IntoIterator<Item = $inner>>(items: I) -> Self {
                    $list(items.into_iter().map($rec::from).collect())
                }
            }
        )?

        impl $rec {
            /// This record's items as cbindgen should see them (see the
            /// `record` module).
            #[doc(hidden)]
            pub const HEADER: &'static str = concat!(
                stringify!($(#[doc = $doc])* pub struct $rec;),
                $(record_getter!(stringify; $kind $(<$kt>)?; $rec, $this, $name, [$($fdoc)*], $r, $e),)*
                $(record_free!(stringify; $rec, $this, $free),)?
                $(record_list!(stringify; $rec, $list, $len, $get, $lfree),)?
            );
        }
    };
}
