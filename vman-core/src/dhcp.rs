//! TEMPORARY stand-in until the real DHCP module lands (same API).
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub(crate) struct DhcpConfig {
    pub bridge: String,
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub hosts: Vec<([u8; 6], Ipv4Addr)>,
    pub lease_secs: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("{binary} not found; install dnsmasq-base")]
    Missing { binary: String },
    #[error("dnsmasq failed: {message}")]
    Start { message: String },
}

#[derive(Debug)]
pub(crate) struct DhcpServer {
    #[allow(dead_code)]
    dir: PathBuf,
    #[allow(dead_code)]
    binary: PathBuf,
}

impl DhcpServer {
    pub fn new(dir: PathBuf, binary: PathBuf) -> Self {
        DhcpServer { dir, binary }
    }
    pub fn ensure(&self, _cfg: &DhcpConfig) -> Result<u32, DhcpError> {
        Err(DhcpError::Start { message: "stand-in".into() })
    }
    pub fn running_pid(&self) -> Option<u32> {
        None
    }
    pub fn stop(&self) -> Result<(), DhcpError> {
        Ok(())
    }
}
