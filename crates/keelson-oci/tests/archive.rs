//! Writes image archives and reads them back as a registry or containerd would: the layout,
//! the names, every blob's digest, the config's diff_ids, and determinism.

use std::collections::BTreeMap;
use std::io::Read;

use keelson_oci::{
    Entry, ImageSpec, PAUSE_IMAGE, oci_arch, sha256_digest, write_oci_archive, write_pause_archive,
};
use serde_json::Value;

/// Every file of a tar, by path.
fn read_tar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(bytes);
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    files
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let name = format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap());
    files.get(&name).unwrap_or_else(|| panic!("{name} missing"))
}

fn spec() -> ImageSpec {
    ImageSpec {
        name: "docker.io/kubetm/p8000:latest".into(),
        files: vec![
            Entry::File {
                path: "/bin/keelson-workload".into(),
                mode: 0o755,
                contents: b"#!binary".to_vec(),
            },
            Entry::Symlink {
                path: "/bin/curl".into(),
                target: "keelson-workload".into(),
            },
            Entry::Dir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
        ],
        entrypoint: vec!["/bin/keelson-workload".into(), "serve".into()],
        cmd: vec!["--port".into(), "8000".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: "/".into(),
        exposed_ports: vec!["8000/tcp".into()],
    }
}

#[test]
fn writes_a_valid_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.tar");
    let digest = write_oci_archive(&spec(), &out).unwrap();
    let files = read_tar(&std::fs::read(&out).unwrap());

    assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    // Every blob is named by the sha256 of its contents.
    let blobs: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("blobs/sha256/") && k.len() > 13)
        .collect();
    assert_eq!(blobs.len(), 3, "{:?}", files.keys());
    for name in blobs {
        let want = format!("sha256:{}", name.trim_start_matches("blobs/sha256/"));
        assert_eq!(sha256_digest(&files[name]), want);
    }

    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "docker.io/kubetm/p8000:latest"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(m["platform"]["os"], "linux");

    let manifest_bytes = blob(&files, &digest);
    assert_eq!(m["size"], manifest_bytes.len());
    let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
    let config: Value =
        serde_json::from_slice(blob(&files, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(config["architecture"], oci_arch());
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/keelson-workload", "serve"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["--port", "8000"])
    );
    assert_eq!(
        config["config"]["ExposedPorts"],
        serde_json::json!({"8000/tcp": {}})
    );

    // The layer is gzip; the config's diff_id is the sha256 of the uncompressed tar.
    let layer_desc = &manifest["layers"][0];
    assert_eq!(
        layer_desc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let gz = blob(&files, layer_desc["digest"].as_str().unwrap());
    assert_eq!(layer_desc["size"], gz.len());
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256_digest(&layer).as_str()
    );

    let mut a = tar::Archive::new(layer.as_slice());
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        seen.push((
            e.path().unwrap().display().to_string(),
            h.mode().unwrap(),
            link,
            h.uid().unwrap(),
        ));
    }
    let want: Vec<(String, u32, String, u64)> = vec![
        ("bin/".into(), 0o755, "".into(), 0),
        ("bin/keelson-workload".into(), 0o755, "".into(), 0),
        ("bin/curl".into(), 0o777, "keelson-workload".into(), 0),
        ("tmp/".into(), 0o1777, "".into(), 0),
    ];
    assert_eq!(seen, want);
}

#[test]
fn same_input_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let da = write_oci_archive(&spec(), &a).unwrap();
    let db = write_oci_archive(&spec(), &b).unwrap();
    assert_eq!(da, db);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let mut other = spec();
    other.cmd = vec!["--port".into(), "8001".into()];
    assert_ne!(write_oci_archive(&other, &b).unwrap(), da);
}

#[test]
fn pause_archive_holds_a_static_pause() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pause.tar");
    let digest = write_pause_archive(&out).unwrap();
    let files = read_tar(&std::fs::read(&out).unwrap());
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        PAUSE_IMAGE
    );
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    // The embedded binary runs here and answers -v.
    let bin = dir.path().join("pause");
    std::fs::write(&bin, keelson_oci::PAUSE_BINARY).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&bin).arg("-v").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keelson pause 1\n");
}
