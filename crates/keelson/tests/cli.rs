//! The command-line interface scripts rely on: `keelson version`, and `keelson server` writing an
//! admin kubeconfig and merging it into the user's kubeconfig as context `keelson`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn version_names_keelson_and_the_kubernetes_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("keelson ") && text.contains("(Kubernetes v1.33."),
        "{text}"
    );
}

#[test]
fn server_merges_its_context_into_the_users_kubeconfig() {
    if !common::have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let user_kc = dir.path().join("user-kubeconfig");
    std::fs::write(
        &user_kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.0.0.1:6443\nusers:\n- name: other\n  user:\n    token: abc\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args([
            "server",
            "--disable-controllers",
            "--disable-scheduler",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KUBECONFIG", &user_kc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(common::kubectl_bin())
            .env("KUBECONFIG", &user_kc)
            .args(args)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubectl(&["get", "--raw", "/readyz"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "the merged context never reached the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let current = kubectl(&["config", "current-context"]);
    assert_eq!(String::from_utf8_lossy(&current.stdout).trim(), "keelson");
    let contexts =
        String::from_utf8_lossy(&kubectl(&["config", "get-contexts", "-o", "name"]).stdout)
            .into_owned();
    assert!(
        contexts.lines().any(|l| l == "other") && contexts.lines().any(|l| l == "keelson"),
        "{contexts}"
    );
    let ns = kubectl(&["get", "ns", "default", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&ns.stdout).trim(),
        "namespace/default"
    );
    assert!(dir.path().join("data/kubeconfig").exists());
    let _ = server.kill();
    let _ = server.wait();
}
