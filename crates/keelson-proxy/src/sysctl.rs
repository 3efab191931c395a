//! Kernel settings the proxy needs, behind a trait: forwarding, `route_localnet` (node ports
//! on 127.0.0.1, as kube-proxy's iptables mode sets it) and `bridge-nf-call-iptables` (so
//! replies between pods on one bridge pass conntrack and are un-DNATed).

use std::path::PathBuf;
use std::sync::Mutex;

/// Errors setting a kernel parameter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The settings, as (key under /proc/sys with dots, value).
pub const REQUIRED: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.route_localnet", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
];

/// Sets kernel parameters.
pub trait Sysctl: Send + Sync {
    fn set(&self, key: &str, value: &str) -> Result<(), Error>;
}

/// Writes /proc/sys.
pub struct ProcSys;

impl Sysctl for ProcSys {
    fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        if key.starts_with("net.bridge.") && !path.exists() {
            // The bridge settings appear once br_netfilter is loaded (built in on some kernels).
            let _ = std::process::Command::new("modprobe")
                .arg("br_netfilter")
                .output();
        }
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            return Ok(());
        }
        std::fs::write(&path, value).map_err(|source| Error::Write { path, source })
    }
}

/// A fake: records the settings.
#[derive(Default)]
pub struct Recorder {
    pub set: Mutex<Vec<(String, String)>>,
}

impl Sysctl for Recorder {
    fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        if let Ok(mut s) = self.set.lock() {
            s.push((key.into(), value.into()));
        }
        Ok(())
    }
}

/// Sets every [`REQUIRED`] parameter; failures are returned, one per parameter (the proxy
/// logs them and goes on: a missing br_netfilter only breaks same-bridge Service traffic).
pub fn ensure(sysctl: &dyn Sysctl) -> Vec<Error> {
    REQUIRED
        .iter()
        .filter_map(|(k, v)| sysctl.set(k, v).err())
        .collect()
}
