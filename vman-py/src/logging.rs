//! Rust `log` records into Python's `logging`, under the logger `vman`.
//!
//! pyo3-log names a Python logger after each record's target, and a
//! target is a module path (`vman_core::reconcile`), so left alone vman's
//! records would land under `vman_core.*` and the crates' own names,
//! outside `logging.getLogger("vman")`. Every record is renamed into the
//! `vman` tree first: `vman_core::reconcile` → `vman.reconcile`, and a
//! dependency's `rusqlite` → `vman.rusqlite`.
//!
//! Each record runs Python's `logging` code on the thread that logged it;
//! on the main thread a pending signal's handler may run inside it. What
//! that code raises is never left as the thread's current exception (as
//! pyo3-log would): it goes to `signals::defer`, which gives a
//! `KeyboardInterrupt` back to the interpreter (see signals.rs for the bug
//! this fixes).

use log::{LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

/// The crates whose module paths are vman's own.
const OWN_CRATES: [&str; 2] = ["vman_core", "_vman"];

/// The `log` target under which pyo3-log finds the Python logger (it turns
/// `::` into `.`).
fn vman_target(target: &str) -> String {
    for own in OWN_CRATES {
        if let Some(rest) = target.strip_prefix(own) {
            if rest.is_empty() {
                return "vman".to_string();
            }
            if rest.starts_with("::") {
                return format!("vman{rest}");
            }
        }
    }
    format!("vman::{target}")
}

struct VmanLogger(pyo3_log::Logger);

impl Log for VmanLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let target = vman_target(metadata.target());
        self.0.enabled(&Metadata::builder().level(metadata.level()).target(&target).build())
    }

    fn log(&self, record: &Record<'_>) {
        let target = vman_target(record.target());
        let renamed = Record::builder()
            .args(*record.args())
            .level(record.level())
            .target(&target)
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if !self.0.enabled(renamed.metadata()) {
            return;
        }
        Python::attach(|py| {
            // An exception already set (a Rust caller between a failed
            // Python call and its return) stays the caller's.
            let before = PyErr::take(py);
            self.0.log(&renamed);
            let raised = PyErr::take(py);
            if let Some(before) = before {
                before.restore(py);
            }
            if let Some(raised) = raised {
                crate::signals::defer(py, raised);
            }
        });
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the bridge as the process's `log` logger, once. Only Python
/// loggers are cached, not their levels, so a level the application sets
/// after `import vman` takes effect at once.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?.filter(LevelFilter::Debug);
    // Fails only if a logger is installed already (a second import of the
    // module in one process): that one stays.
    if log::set_boxed_logger(Box::new(VmanLogger(logger))).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::vman_target;

    #[test]
    fn every_target_lands_under_vman() {
        assert_eq!(vman_target("vman_core"), "vman");
        assert_eq!(vman_target("vman_core::reconcile"), "vman::reconcile");
        assert_eq!(vman_target("vman_core::runtime::watcher"), "vman::runtime::watcher");
        assert_eq!(vman_target("_vman::manager"), "vman::manager");
        assert_eq!(vman_target("rusqlite"), "vman::rusqlite");
        assert_eq!(vman_target("vman_core_extra"), "vman::vman_core_extra");
    }
}
