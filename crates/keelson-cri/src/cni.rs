//! The CNI network config keelson gives containerd: a bridge with host-local IPAM on the
//! node's pod CIDR (containerd adds loopback itself), and the same network with portmap for
//! the pods that declare a hostPort, in a directory of its own that the containerd keelson owns
//! gives a runtime handler of its own ([`HOSTPORT_HANDLER`]): portmap costs every pod an exec
//! at its start and at its end, and only pods with hostPorts need it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The file name of keelson's network config in the CNI config directory.
pub const CONFLIST_FILE: &str = "10-keelson.conflist";
/// The CNI spec version of the config (containernetworking-plugins 1.1 and later support it).
pub const CNI_VERSION: &str = "1.0.0";
/// The runtime handler whose network has portmap: the sandboxes of pods with hostPorts.
pub const HOSTPORT_HANDLER: &str = "runc-hostport";

/// The config directory of the network with portmap, beside `conf_dir` (`net.d` →
/// `net.d-hostport`).
pub fn hostport_conf_dir(conf_dir: &Path) -> PathBuf {
    let mut name = conf_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push("-hostport");
    conf_dir.with_file_name(name)
}

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
/// a Service), and hostPort mappings when `port_mappings`. No `ipMasq`: the service proxy
/// masquerades traffic leaving the pod network with one nftables rule per node (the plugin's
/// rules cost iptables work at every pod start).
pub fn render_conflist(
    network_name: &str,
    bridge: &str,
    pod_cidr: &str,
    port_mappings: bool,
) -> String {
    let default_route = if pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    let mut plugins = vec![json!({
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
    })];
    if port_mappings {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": true
        }));
    }
    // One network name for both: host-local keeps one set of leases per name.
    let conflist = json!({
        "cniVersion": CNI_VERSION,
        "name": network_name,
        "plugins": plugins,
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

/// Writes the network without portmap in `conf_dir` and the one with portmap in
/// [`hostport_conf_dir`]; returns the first file's path.
pub fn write_conflists(
    conf_dir: &Path,
    network_name: &str,
    bridge: &str,
    pod_cidr: &str,
) -> Result<PathBuf, Error> {
    let with_ports = render_conflist(network_name, bridge, pod_cidr, true);
    write_conflist(&hostport_conf_dir(conf_dir), &with_ports)?;
    write_conflist(
        conf_dir,
        &render_conflist(network_name, bridge, pod_cidr, false),
    )
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
        let conf = parse(&render_conflist(
            "keelson",
            "keelson0",
            "10.42.0.0/24",
            true,
        ));
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
        let plain = parse(&render_conflist(
            "keelson",
            "keelson0",
            "10.42.0.0/24",
            false,
        ));
        assert_eq!(plain["plugins"].as_array().map(Vec::len), Some(1));
        assert_eq!(plain["plugins"][0], conf["plugins"][0]);
        assert_eq!(plain["name"], conf["name"]);
    }

    #[test]
    fn both_networks_are_written_side_by_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        assert_eq!(
            hostport_conf_dir(&conf_dir),
            dir.path().join("net.d-hostport")
        );
        let path =
            write_conflists(&conf_dir, "keelson", "keelson0", "10.42.0.0/24").expect("write");
        assert_eq!(path, conf_dir.join(CONFLIST_FILE));
        let types = |path: PathBuf| -> Vec<Value> {
            let conf = parse(&std::fs::read_to_string(path).expect("read"));
            conf["plugins"]
                .as_array()
                .expect("plugins")
                .iter()
                .map(|p| p["type"].clone())
                .collect()
        };
        assert_eq!(types(path), vec![json!("bridge")]);
        assert_eq!(
            types(dir.path().join("net.d-hostport").join(CONFLIST_FILE)),
            vec![json!("bridge"), json!("portmap")]
        );
    }

    #[test]
    fn an_ipv6_cidr_gets_an_ipv6_default_route() {
        let conf = parse(&render_conflist(
            "keelson",
            "keelson0",
            "fd00:42::/64",
            false,
        ));
        assert_eq!(
            conf.pointer("/plugins/0/ipam/routes/0/dst"),
            Some(&json!("::/0"))
        );
    }

    #[test]
    fn write_conflist_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        let first = render_conflist("keelson", "keelson0", "10.42.0.0/24", true);
        let path = write_conflist(&conf_dir, &first).expect("write");
        assert_eq!(path, conf_dir.join("10-keelson.conflist"));
        let second = render_conflist("keelson", "keelson0", "10.42.1.0/24", true);
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
