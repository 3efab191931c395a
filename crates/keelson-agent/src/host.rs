//! Facts about the host the agent reports in its Node: name, address, capacity, OS; parsed
//! from /proc and /etc by pure functions, read once at start.

use std::net::IpAddr;
use std::path::Path;

/// What the agent tells the cluster about its machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    pub address: IpAddr,
    pub cpus: u32,
    pub memory_kib: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl Host {
    /// Reads the host's facts; `data_dir` is where ephemeral storage lives.
    pub fn read(data_dir: &Path) -> Host {
        let file = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let hostname = node_name_from(&file("/proc/sys/kernel/hostname"));
        Host {
            hostname,
            address: outbound_address(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_kib: mem_total_kib(&file("/proc/meminfo")).unwrap_or(0),
            ephemeral_storage_bytes: disk_bytes(data_dir),
            kernel_version: file("/proc/sys/kernel/osrelease").trim().to_string(),
            os_image: os_pretty_name(&file("/etc/os-release")),
            machine_id: file("/etc/machine-id").trim().to_string(),
            boot_id: file("/proc/sys/kernel/random/boot_id").trim().to_string(),
        }
    }
}

/// A DNS-1123 node name from a hostname: lower case, only the first label's characters that
/// are allowed kept.
pub fn node_name_from(hostname: &str) -> String {
    let name: String = hostname
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `MemTotal` of /proc/meminfo, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn os_pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The address of the interface that routes outward (a UDP "connect" sends nothing), or
/// loopback on a machine with no route.
pub fn outbound_address() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Total size of the filesystem holding `dir`, in bytes (0 when unknown).
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) == 0 {
            s.f_blocks as u64 * s.f_frsize as u64
        } else {
            0
        }
    }
}

/// The architecture as Kubernetes names it (`amd64`, `arm64`, ...).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_files() {
        assert_eq!(node_name_from("My_Host.Example\n"), "myhost.example");
        assert_eq!(node_name_from(""), "localhost");
        assert_eq!(
            mem_total_kib("MemTotal:       24563012 kB\nMemFree: 1 kB\n"),
            Some(24563012)
        );
        assert_eq!(mem_total_kib("nothing"), None);
        assert_eq!(
            os_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn reads_this_host() {
        let h = Host::read(Path::new("."));
        assert!(h.cpus >= 1);
        assert!(h.memory_kib > 0, "{h:?}");
        assert!(h.ephemeral_storage_bytes > 0, "{h:?}");
    }
}
