//! `kubectl logs` through the whole path without containerd: the real kubectl → `keelson
//! server` (pods/log) → an agent endpoint (`keelson_agent::server::serve`) run in this test
//! process over CRI log files it writes itself.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use common::Cluster;
use keelson_agent::logs::{LogStream, cri_line};
use keelson_agent::server::{self, LogError, LogFile, LogSource, async_trait};
use tokio::sync::watch;

/// Pod `p` in `default` on this node: container `a` running (its log file grows, its
/// `running` flag is the test's to clear), container `b` exited; neither has a previous
/// instance.
struct Node {
    files: HashMap<String, PathBuf>,
    running: watch::Receiver<bool>,
}

#[async_trait]
impl LogSource for Node {
    async fn log_file(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LogError> {
        if namespace != "default" || pod != "p" {
            return Err(LogError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            });
        }
        let Some(path) = self.files.get(container) else {
            return Err(LogError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        };
        if previous {
            return Err(LogError::PreviousNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        }
        Ok(match container {
            "a" => LogFile {
                path: path.clone(),
                running: self.running.clone(),
            },
            _ => LogFile::exited(path.clone()),
        })
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  nodeName: n1
  containers:
  - name: a
    image: example.test/a
  - name: b
    image: example.test/b
";

fn append(path: &PathBuf, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open log file");
    f.write_all(text.as_bytes()).expect("append to log file");
}

/// Starts `kubectl logs -f p -c a --tail=1` (over HTTP/1.1 when asked); its stdout lines
/// arrive on the receiver.
fn follow_logs(cluster: &Cluster, http1: bool) -> (Child, Receiver<String>) {
    let mut cmd = cluster.kubectl_cmd(&["logs", "-f", "p", "-c", "a", "--tail=1"]);
    if http1 {
        cmd.env("DISABLE_HTTP2", "1");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn kubectl_logs_through_the_agent() {
    if !common::have_kubectl() {
        return;
    }
    let cluster = Cluster::start();
    let pki = cluster.data_dir().join("pki");
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt")).expect("read ca.crt");
    let ca_key = std::fs::read_to_string(pki.join("ca.key")).expect("read ca.key");

    // The log files: `a` has an old line (two hours ago) and three recent ones.
    let now = SystemTime::now();
    let a_log = cluster.dir.path().join("a.log");
    let b_log = cluster.dir.path().join("b.log");
    append(
        &a_log,
        &cri_line(now - Duration::from_secs(7200), LogStream::Stdout, "zero"),
    );
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let at = now - Duration::from_secs(30) + Duration::from_secs(i as u64);
        let stream = if i == 1 {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        };
        append(&a_log, &cri_line(at, stream, text));
    }
    append(&b_log, &cri_line(now, LogStream::Stdout, "from b"));

    // The agent endpoint, in this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (running, running_rx) = watch::channel(true);
    let node = Node {
        files: HashMap::from([("a".to_owned(), a_log.clone()), ("b".to_owned(), b_log)]),
        running: running_rx,
    };
    let tls = server::agent_tls(&ca_cert, &ca_key, "n1", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .expect("agent tls");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind agent port");
    let port = listener.local_addr().expect("agent address").port();
    rt.spawn(server::serve(listener, tls, Arc::new(node)));

    // A node that points at it, and a pod bound to it.
    cluster.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"n1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
    );
    cluster.ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    cluster.apply_stdin("create", POD);

    // Reading.
    assert_eq!(
        cluster.ok(&["logs", "p", "-c", "a"]),
        "zero\none\ntwo\nthree\n"
    );
    assert_eq!(cluster.ok(&["logs", "p", "-c", "b"]), "from b\n");
    assert_eq!(
        cluster.ok(&["logs", "p", "-c", "a", "--tail=2"]),
        "two\nthree\n"
    );
    assert_eq!(
        cluster.ok(&["logs", "p", "-c", "a", "--since=1h"]),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        cluster.ok(&["logs", "p", "-c", "a", "--limit-bytes=7"]),
        "zero\non"
    );
    let stamped = cluster.ok(&["logs", "p", "-c", "a", "--timestamps", "--tail=1"]);
    let (stamp, line) = stamped.split_once(' ').expect("timestamp and line");
    assert_eq!(line, "three\n");
    assert!(
        stamp.len() == "2024-05-01T10:00:00.000000000Z".len() && stamp.ends_with('Z'),
        "{stamped:?}"
    );

    // Without -c kubectl picks the first container and says so; the server alone asks.
    let out = cluster.kubectl(&["logs", "p"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "zero\none\ntwo\nthree\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"Defaulted container "a" out of: a, b"#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = cluster.fails(&["get", "--raw", "/api/v1/namespaces/default/pods/p/log"]);
    assert!(
        err.contains(
            "Error from server (BadRequest): a container name must be specified for pod p, choose one of: [a b]"
        ),
        "{err}"
    );
    let err = cluster.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/p/log?container=z",
    ]);
    assert!(
        err.contains("Error from server (BadRequest): container z is not valid for pod p"),
        "{err}"
    );

    // Errors.
    let err = cluster.fails(&["logs", "p", "-c", "a", "--previous"]);
    assert!(
        err.contains(
            r#"Error from server (BadRequest): previous terminated container "a" in pod "p" not found"#
        ),
        "{err}"
    );
    let err = cluster.fails(&["logs", "nope"]);
    assert!(
        err.contains(r#"(NotFound): pods "nope" not found in namespace "default""#),
        "{err}"
    );

    // A pod not yet on a node has no logs; a node whose agent does not answer is an error.
    cluster.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pending\nspec:\n  nodeSelector: {nowhere: \"true\"}\n  containers:\n  - name: a\n    image: example.test/a\n",
    );
    assert_eq!(cluster.ok(&["logs", "pending"]), "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    cluster.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n",
    );
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{closed}}}}}}}}}"#
    );
    cluster.ok(&[
        "patch",
        "node",
        "n2",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    cluster.apply_stdin(
        "create",
        &POD.replace("name: p\n", "name: q\n").replace("n1", "n2"),
    );
    let err = cluster.fails(&["logs", "q", "-c", "a"]);
    let want = format!(
        "Error from server: Get \"https://127.0.0.1:{closed}/containerLogs/default/q/a\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
    );
    assert!(err.contains(&want), "{err}");

    // Following over HTTP/1.1: sees a line appended later; the client may leave.
    let next = |rx: &Receiver<String>| rx.recv_timeout(Duration::from_secs(20));
    let (mut follow, lines) = follow_logs(&cluster, true);
    assert_eq!(next(&lines).expect("the last line"), "three");
    append(
        &a_log,
        &cri_line(SystemTime::now(), LogStream::Stdout, "four"),
    );
    assert_eq!(next(&lines).expect("the appended line"), "four");
    let _ = follow.kill();
    let _ = follow.wait();

    // Following over HTTP/2: ends once the container has exited and its log is drained.
    let (mut follow, lines) = follow_logs(&cluster, false);
    assert_eq!(next(&lines).expect("the last line"), "four");
    append(
        &a_log,
        &cri_line(SystemTime::now(), LogStream::Stdout, "five"),
    );
    assert_eq!(next(&lines).expect("the appended line"), "five");
    append(
        &a_log,
        &cri_line(SystemTime::now(), LogStream::Stdout, "six"),
    );
    running.send(false).expect("mark exited");
    assert_eq!(next(&lines).expect("the last line before exit"), "six");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follow.try_wait().expect("wait for kubectl") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = follow.kill();
            panic!("kubectl logs -f did not end after the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "kubectl logs -f failed: {status}");
    rt.shutdown_background();
}
