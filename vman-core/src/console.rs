//! TEMPORARY stand-in until the real console module lands (same API).
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct SerialLog {
    path: PathBuf,
    #[allow(dead_code)]
    cap_bytes: u64,
}

impl SerialLog {
    pub fn new(run_dir: &Path, cap_bytes: u64) -> SerialLog {
        SerialLog { path: run_dir.join("serial.log"), cap_bytes }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn prepare_for_start(&self) -> io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0) {
            std::fs::rename(&self.path, self.path.with_extension("log.1"))?;
        }
        Ok(())
    }
    pub fn tail(&self, max_bytes: usize) -> io::Result<Vec<u8>> {
        let data = std::fs::read(&self.path).unwrap_or_default();
        Ok(data[data.len().saturating_sub(max_bytes)..].to_vec())
    }
    pub fn wait_for_line(&self, pattern: &regex::Regex, timeout: Duration, _from: Option<u64>) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let data = std::fs::read(&self.path).unwrap_or_default();
            for line in String::from_utf8_lossy(&data).lines() {
                if pattern.is_match(line) {
                    return Ok(Some(line.trim_end_matches('\r').to_string()));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
