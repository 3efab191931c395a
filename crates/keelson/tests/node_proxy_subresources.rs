//! `pods/proxy` and `services/proxy` on real containers (SEED-SCENARIOS.md §A.2, seed 004):
//! `kubectl proxy` then `curl localhost:8001/api/v1/namespaces/default/pods/pod-1:8080/proxy/`
//! reaches the pod; `kubectl get --raw` through the same paths, a Service by port name and
//! number, and upstream's errors. These tests need root and containerd; they skip elsewhere,
//! saying why.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Cluster, eventually, free_port, have_node};

/// Seed 004's two-container pod (p8000 and p8080), a Service over it, a Service with no
/// pods, and a pod no node can take.
const OBJECTS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: pod-1
  labels:
    app: pod-1
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: container1
    image: kubetm/p8000
    ports:
    - containerPort: 8000
  - name: container2
    image: kubetm/p8080
    ports:
    - name: web
      containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: svc-1
spec:
  selector:
    app: pod-1
  ports:
  - name: http
    port: 80
    targetPort: web
  - name: other
    port: 9000
    targetPort: 8000
---
apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  selector:
    app: nobody
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: echo
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    # Switches protocols at once, then echoes what it reads.
    command:
    - sh
    - -c
    - |
      cat > /tmp/up.sh <<'EOF'
      printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n'
      exec cat
      EOF
      exec nc -ll -p 9000 -e sh /tmp/up.sh
---
apiVersion: v1
kind: Pod
metadata:
  name: nowhere
spec:
  nodeSelector:
    kubernetes.io/hostname: no-such-node
  containers:
  - name: c
    image: busybox
";

/// `GET path` on `127.0.0.1:port`: (status code, headers, body), if anything answers.
fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head.to_string(), body.to_string()))
}

/// An upgraded connection through `127.0.0.1:port` to `path`: sends `hello`, returns what
/// came back once it holds the echo (or all that came within 10 s).
fn upgrade_echo(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .expect("send request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent = false;
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if !sent && text.contains("\r\n\r\n") {
            s.write_all(b"hello through the proxy\n").expect("send");
            sent = true;
        }
        if text.contains("hello through the proxy") {
            return text;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `kubectl proxy --port=PORT`, stopped when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pods_and_services_through_the_apiserver_proxy() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", OBJECTS);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/pod-1",
        "--timeout=60s",
    ]);

    // `kubectl get --raw` through the pod's proxy: the port named, else the first declared.
    let raw = |path: &str| c.ok(&["get", "--raw", path]);
    let base = "/api/v1/namespaces/default";
    let body = eventually(20, || {
        let out = c.kubectl(&["get", "--raw", &format!("{base}/pods/pod-1:8080/proxy/")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(body.contains("Hostname: pod-1"), "{body}");
    let first = eventually(20, || {
        let out = c.kubectl(&["get", "--raw", &format!("{base}/pods/pod-1/proxy/")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(first.contains("Hostname: pod-1"), "{first}");
    // A path and a query reach the pod; the port by its container port name.
    assert_eq!(raw(&format!("{base}/pods/pod-1:web/proxy/healthz")), "ok");
    assert_eq!(
        raw(&format!("{base}/pods/http:pod-1:8000/proxy/status/201?x=1")),
        "201\n"
    );
    // The backend's status comes through: 404 from the pod, not from the apiserver.
    let err = c.fails(&[
        "get",
        "--raw",
        &format!("{base}/pods/pod-1:8080/proxy/status/404"),
    ]);
    assert!(err.contains("NotFound") || err.contains("404"), "{err}");

    // A Service: by port name and by port number, to a ready endpoint's target port.
    let svc = eventually(30, || {
        let out = c.kubectl(&[
            "get",
            "--raw",
            &format!("{base}/services/svc-1:http/proxy/"),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(svc.contains("Hostname: pod-1"), "{svc}");
    assert_eq!(
        raw(&format!("{base}/services/svc-1:80/proxy/healthz")),
        "ok"
    );
    assert_eq!(
        raw(&format!("{base}/services/svc-1:other/proxy/status/202")),
        "202\n"
    );

    // Upstream's errors.
    let err = c.fails(&["get", "--raw", &format!("{base}/pods/nope/proxy/")]);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", &format!("{base}/pods/pod-1:8081/proxy/")]);
    assert!(
        err.contains(
            "Error from server (ServiceUnavailable): error trying to reach service: dial tcp "
        ) && err.contains(":8081: connect: connection refused"),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", &format!("{base}/pods/nowhere/proxy/")]);
    assert!(
        err.contains("Error from server (BadRequest): address not allowed"),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", &format!("{base}/services/empty/proxy/")]);
    assert!(
        err.contains(
            "Error from server (ServiceUnavailable): no endpoints available for service \"empty\""
        ),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", &format!("{base}/services/svc-1:81/proxy/")]);
    assert!(
        err.contains("no service port 81 found for service \"svc-1\""),
        "{err}"
    );
    let err = c.fails(&[
        "get",
        "--raw",
        &format!("{base}/services/missing:80/proxy/"),
    ]);
    assert!(
        err.contains("Error from server (NotFound): services \"missing\" not found"),
        "{err}"
    );

    // Seed 004: `kubectl proxy`, then curl the API and a pod's proxy path through it.
    let port = free_port();
    let _proxy = Proxy(
        c.kubectl_cmd(&["proxy", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl proxy"),
    );
    let (code, _, pods) = eventually(20, || get(port, &format!("{base}/pods")));
    assert_eq!(code, 200, "{pods}");
    assert!(
        pods.contains("\"kind\":\"PodList\"") && pods.contains("\"pod-1\""),
        "{pods}"
    );
    let (code, _, body) = get(port, &format!("{base}/pods/pod-1:8080/proxy/")).expect("answer");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Hostname: pod-1"), "{body}");
    // The proxy's root without its slash redirects to it, as upstream.
    let (code, head, _) = get(port, &format!("{base}/pods/pod-1:8080/proxy")).expect("answer");
    assert_eq!(code, 301, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: {base}/pods/pod-1:8080/proxy/")),
        "{head}"
    );
    let (code, _, body) = get(port, &format!("{base}/services/svc-1:http/proxy/")).expect("answer");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Hostname: pod-1"), "{body}");

    // An upgraded connection is relayed both ways (kubectl proxy → apiserver → pod).
    c.ok(&["wait", "--for=condition=Ready", "pod/echo", "--timeout=60s"]);
    let echoed = eventually(20, || {
        let text = upgrade_echo(port, &format!("{base}/pods/echo:9000/proxy/ws"));
        text.contains("hello through the proxy").then_some(text)
    });
    assert!(echoed.starts_with("HTTP/1.1 101"), "{echoed}");
    assert!(echoed.contains("GET /ws HTTP/1.1"), "{echoed}");
}
