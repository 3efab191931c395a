//! The CNI network config keelson gives containerd: a bridge with host-local IPAM on the
//! node's pod CIDR, plus portmap for hostPorts (containerd adds loopback itself).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The file name of keelson's network config in the CNI config directory.
pub const CONFLIST_FILE: &str = "10-keelson.conflist";
/// The CNI spec version of the config (containernetworking-plugins 1.1 and later support it).
pub const CNI_VERSION: &str = "1.0.0";

/// Errors writing the CNI config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the CNI config {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The conflist for a bridge network `network_name` on Linux bridge `bridge`, giving pods
/// addresses from `pod_cidr` (IPv4 or IPv6), with hairpin mode (a pod reaching itself through
/// a Service) and hostPort mappings. No `ipMasq`: the service proxy masquerades traffic
/// leaving the pod network with one nftables rule per node (the plugin's rules cost iptables
/// work at every pod start).
pub fn render_conflist(network_name: &str, bridge: &str, pod_cidr: &str) -> String {
    let default_route = if pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    let conflist = json!({
        "cniVersion": CNI_VERSION,
        "name": network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": default_route }]
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            }
        ]
    });
    let mut text = serde_json::to_string_pretty(&conflist).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes `contents` as [`CONFLIST_FILE`] in `conf_dir` (created if missing), atomically: a
/// runtime reading the directory sees the old file or the new one, never half of one. Returns
/// the file's path.
pub fn write_conflist(conf_dir: &Path, contents: &str) -> Result<PathBuf, Error> {
    let path = conf_dir.join(CONFLIST_FILE);
    write_atomic(&path, contents.as_bytes()).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes a file through a temporary sibling and a rename. The temporary name does not end in
/// `.conf`/`.conflist`/`.json`, so a CNI loader never picks it up.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("conflist is JSON")
    }

    #[test]
    fn the_conflist_has_a_bridge_and_portmap() {
        let conf = parse(&render_conflist("keelson", "keelson0", "10.42.0.0/24"));
        let check = |pointer: &str, want: Value| {
            assert_eq!(conf.pointer(pointer), Some(&want), "{pointer} in {conf:#}");
        };
        check("/cniVersion", json!("1.0.0"));
        check("/name", json!("keelson"));
        check("/plugins/0/type", json!("bridge"));
        check("/plugins/0/bridge", json!("keelson0"));
        check("/plugins/0/isGateway", json!(true));
        check("/plugins/0/ipMasq", json!(false));
        check("/plugins/0/hairpinMode", json!(true));
        check("/plugins/0/ipam/type", json!("host-local"));
        check("/plugins/0/ipam/ranges/0/0/subnet", json!("10.42.0.0/24"));
        check("/plugins/0/ipam/routes/0/dst", json!("0.0.0.0/0"));
        check("/plugins/1/type", json!("portmap"));
        check("/plugins/1/capabilities/portMappings", json!(true));
        check("/plugins/1/snat", json!(true));
        assert_eq!(conf["plugins"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn an_ipv6_cidr_gets_an_ipv6_default_route() {
        let conf = parse(&render_conflist("keelson", "keelson0", "fd00:42::/64"));
        assert_eq!(
            conf.pointer("/plugins/0/ipam/routes/0/dst"),
            Some(&json!("::/0"))
        );
    }

    #[test]
    fn write_conflist_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        let first = render_conflist("keelson", "keelson0", "10.42.0.0/24");
        let path = write_conflist(&conf_dir, &first).expect("write");
        assert_eq!(path, conf_dir.join("10-keelson.conflist"));
        let second = render_conflist("keelson", "keelson0", "10.42.1.0/24");
        write_conflist(&conf_dir, &second).expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), second);
        let names: Vec<_> = std::fs::read_dir(&conf_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["10-keelson.conflist"]);
    }

    #[test]
    fn write_conflist_names_the_path_it_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").expect("write");
        let err = write_conflist(&file, "{}").expect_err("a file is not a directory");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
