//! Imports the pause archive and a docker-save archive into a throwaway containerd and checks
//! that containerd's CRI namespace lists them. Needs root, `containerd` and `ctr`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keelson_oci::{
    Entry, PAUSE_IMAGE, import_archive, layer_tar, sha256_digest, write_pause_archive,
};

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A containerd with root, state and sockets in a temporary directory; killed on drop.
struct Containerd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_containerd(bin: &Path, ctr: &Path) -> Containerd {
    let dir = tempfile::Builder::new().prefix("kc").tempdir().unwrap();
    let d = dir.path().display();
    let socket = dir.path().join("c.sock");
    let config = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
"#
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let c = Containerd {
        child,
        socket,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = Command::new(ctr)
            .arg("--address")
            .arg(&c.socket)
            .arg("version")
            .output();
        if up.is_ok_and(|o| o.status.success()) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "containerd did not come up on {}",
            c.socket.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A docker-save archive of a one-file image named `name`.
fn docker_save_archive(out: &Path, name: &str) {
    let layer = layer_tar(&[Entry::File {
        path: "/hello.txt".into(),
        mode: 0o644,
        contents: b"hello\n".to_vec(),
    }])
    .unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": keelson_oci::oci_arch(),
        "os": "linux",
        "config": { "Cmd": ["/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer)] },
    }))
    .unwrap();
    let config_name = format!(
        "{}.json",
        sha256_digest(&config).trim_start_matches("sha256:")
    );
    let manifest = serde_json::to_vec(&serde_json::json!([
        { "Config": config_name, "RepoTags": [name], "Layers": ["layer0/layer.tar"] }
    ]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("manifest.json", &manifest),
        (config_name.as_str(), &config),
        ("layer0/layer.tar", &layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

#[test]
fn imports_archives_into_containerd() {
    let (Some(containerd), Some(ctr)) = (on_path("containerd"), on_path("ctr")) else {
        eprintln!("skipping: needs containerd and ctr on PATH");
        return;
    };
    if !is_root() {
        eprintln!("skipping: needs root to run containerd");
        return;
    }
    let c = start_containerd(&containerd, &ctr);
    let work = tempfile::tempdir().unwrap();

    // The agent's start-up path: imported once, then found by name and digest.
    assert!(keelson_oci::ensure_pause_image(&ctr, &c.socket, work.path()).unwrap());
    assert!(!keelson_oci::ensure_pause_image(&ctr, &c.socket, work.path()).unwrap());
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "archive left behind"
    );

    let pause = work.path().join("pause.tar");
    write_pause_archive(&pause).unwrap();
    let total = std::fs::metadata(&pause).unwrap().len();
    let mut last = (0, 0);
    let names =
        import_archive(&ctr, &c.socket, &pause, &mut |done, all| last = (done, all)).unwrap();
    assert_eq!(names, [PAUSE_IMAGE]);
    assert_eq!(last, (total, total));

    let saved = work.path().join("saved.tar");
    docker_save_archive(&saved, "docker.io/library/hello:1");
    let names = import_archive(&ctr, &c.socket, &saved, &mut |_, _| {}).unwrap();
    assert_eq!(names, ["docker.io/library/hello:1"]);

    let ls = Command::new(&ctr)
        .arg("--address")
        .arg(&c.socket)
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ls.stdout);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, ["docker.io/library/hello:1", PAUSE_IMAGE]);

    // A file that is no image archive is refused before ctr runs.
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, "junk").unwrap();
    let err = import_archive(&ctr, &c.socket, &junk, &mut |_, _| {}).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is neither a docker-save nor an OCI image archive"),
        "{err}"
    );
}
