//! `kubectl port-forward` end to end on real containers: kubectl → apiserver
//! (`pods/{name}/portforward`) → the node agent (`/portForward/{ns}/{pod}`) → the pod's port on
//! localhost inside its network namespace. Both the WebSocket-tunnelled SPDY that kubectl 1.31+
//! speaks by default and the plain SPDY upgrade (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`),
//! `pod/NAME` and `svc/NAME`, several connections at once, a 16 MiB transfer from a server that
//! listens on 127.0.0.1 only, and upstream's error for a port nothing listens on. These tests
//! need root and containerd; they skip elsewhere, saying why.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{Cluster, eventually, free_port, have_node, http_get};

/// A pod with seed 001's web server on 8080 and a busybox httpd serving a 16 MiB file on
/// 127.0.0.1:8081 only (reachable from inside the pod, not on the pod IP); a Service over it.
const OBJECTS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: kubetm/p8080
    ports:
    - containerPort: 8080
  - name: files
    image: busybox
    command:
    - sh
    - -c
    - mkdir -p /www && yes 0123456789abcdef | head -c 16777216 > /www/big && touch /www/ready && exec httpd -f -p 127.0.0.1:8081 -h /www
    readinessProbe:
      exec:
        command: [test, -f, /www/ready]
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

/// A running `kubectl port-forward`, stopped when dropped.
struct Forward {
    child: Child,
    local: u16,
    stderr: Arc<Mutex<String>>,
}

impl Forward {
    /// Starts `kubectl port-forward TARGET LOCAL:REMOTE` (with `env`) and waits for its
    /// "Forwarding from 127.0.0.1:LOCAL -> POD_PORT" line.
    fn start(c: &Cluster, target: &str, remote: u16, env: &[(&str, &str)]) -> Forward {
        Self::start_to(c, target, remote, remote, env)
    }

    /// [`Forward::start`] where kubectl resolves `remote` to `pod_port` (a Service's port to
    /// its target port).
    fn start_to(
        c: &Cluster,
        target: &str,
        remote: u16,
        pod_port: u16,
        env: &[(&str, &str)],
    ) -> Forward {
        let local = free_port();
        let mut cmd = c.kubectl_cmd(&["port-forward", target, &format!("{local}:{remote}")]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl port-forward");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let want = format!("Forwarding from 127.0.0.1:{local} -> {pod_port}");
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line == want => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "kubectl port-forward {target} printed no {want:?}; stdout: {seen:?}, stderr: {}",
                        stderr.lock().unwrap()
                    );
                }
            }
        }
        Forward {
            child,
            local,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on 127.0.0.1:port: the body's bytes when the answer is a 200.
fn get_bytes(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    (head.split_whitespace().nth(1) == Some("200")).then(|| out[end + 4..].to_vec())
}

fn expected_big() -> Vec<u8> {
    b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(16 * 1024 * 1024)
        .collect()
}

/// Port-forward with one transport: pod/NAME, svc/NAME, parallel connections, a large
/// transfer from a localhost-only server, then a port nothing listens on.
fn forward_all(c: &Cluster, env: &[(&str, &str)]) {
    // pod/NAME: the web server answers through the local port.
    let f = Forward::start(c, "pod/web", 8080, env);
    let body = eventually(20, || http_get("127.0.0.1", f.local));
    assert!(body.contains("Hostname: web"), "{body}");

    // Several connections at once, each answered whole.
    let local = f.local;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| http_get("127.0.0.1", local).unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        for body in w.join().unwrap() {
            assert!(
                body.contains("Hostname: web"),
                "a parallel GET got {body:?}"
            );
        }
    }
    drop(f);

    // 16 MiB from a server bound to 127.0.0.1 inside the pod.
    let f = Forward::start(c, "web", 8081, env);
    let big = get_bytes(f.local, "/big").unwrap_or_else(|| {
        panic!(
            "no 200 for /big through port-forward; kubectl said: {}",
            f.stderr()
        )
    });
    assert_eq!(big.len(), 16 * 1024 * 1024);
    assert!(big == expected_big(), "the 16 MiB file came back different");
    drop(f);

    // svc/NAME: kubectl resolves the Service to a pod and port 80 to its targetPort.
    let f = Forward::start_to(c, "svc/web", 80, 8080, env);
    let body = eventually(20, || http_get("127.0.0.1", f.local));
    assert!(body.contains("Hostname: web"), "{body}");
    drop(f);

    // A port nothing listens on: the connection closes and kubectl reports upstream's error.
    let f = Forward::start(c, "pod/web", 9999, env);
    let got = get_bytes(f.local, "/");
    assert_eq!(got, None, "a GET to a closed port answered");
    let stderr = eventually(10, || {
        let s = f.stderr();
        s.contains("connection refused").then_some(s)
    });
    assert!(
        stderr.contains("an error occurred forwarding")
            && stderr.contains("error forwarding port 9999 to pod")
            && stderr.contains("failed to connect to localhost:9999 inside namespace"),
        "{stderr}"
    );
}

#[test]
fn port_forward_over_websocket_and_spdy() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", OBJECTS);
    c.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);

    // kubectl's default: SPDY tunnelled in a WebSocket.
    forward_all(&c, &[]);
    // The plain SPDY upgrade, kubectl's fallback.
    forward_all(&c, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]);

    // A pod that is not there: upstream's NotFound before any forwarding.
    let err = c.fails(&["port-forward", "pod/missing", "1234:80"]);
    assert!(err.contains("pods \"missing\" not found"), "{err}");
}
