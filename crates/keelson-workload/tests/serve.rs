//! Runs the built workload binary: serves on a free port, answers like seed 001's app, flips
//! its health check, refuses a taken port, and its `curl` mode fetches from it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keelson-workload");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(args: &[&str]) -> Server {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

/// GET path → (status, body), waiting up to 5 s for the server to come up.
fn get(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("server on {port} never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[test]
fn serves_like_the_seed_app() {
    let port = free_port();
    let _server = start(&[
        "serve",
        "--port",
        &port.to_string(),
        "--message",
        "Hi there",
    ]);
    let (status, body) = get(port, "/");
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.lines().collect();
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["Message", "Hostname", "Platform", "Uptime", "IP", "DNS"],
        "{body}"
    );
    assert_eq!(lines[0], "Message: Hi there");
    assert_eq!(lines[2], "Platform: linux");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(lines[1], format!("Hostname: {}", hostname.trim()));
    assert!(
        lines[3]["Uptime: ".len()..].parse::<f64>().is_ok(),
        "{}",
        lines[3]
    );

    let check = |path: &str, want_status: u16, want_body: &str| {
        let (s, b) = get(port, path);
        assert_eq!((s, b.as_str()), (want_status, want_body), "{path}");
    };
    check("/healthz", 200, "ok");
    check("/fail", 200, "health checks now fail\n");
    check("/healthz", 500, "unhealthy");
    check("/ok", 200, "health checks now pass\n");
    check("/healthz", 200, "ok");
    check("/status/503", 503, "503\n");
    check("/hostname", 200, hostname.trim());

    // curl mode, through a symlink named curl, as the images install it.
    let dir = tempfile::tempdir().unwrap();
    let curl = dir.path().join("curl");
    std::os::unix::fs::symlink(BIN, &curl).unwrap();
    let out = Command::new(&curl)
        .arg(format!("http://localhost:{port}/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Message: Hi there\n"));
    // As real curl: a 404 is no error unless -f is given.
    let url404 = format!("127.0.0.1:{port}/status/404");
    let out = Command::new(&curl)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url404])
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "404")
    );
    let out = Command::new(&curl).args(["-sf", &url404]).output().unwrap();
    assert_eq!(out.status.code(), Some(22));
    let closed = free_port();
    let out = Command::new(&curl)
        .arg(format!("http://127.0.0.1:{closed}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

#[test]
fn a_taken_port_fails_like_the_seed() {
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["serve", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("listen tcp :{port}: bind: address already in use")
    );
}

#[test]
fn exit_endpoint_and_mode_set_the_exit_code() {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut stdout = server.0.stdout.take().unwrap();
    assert_eq!(get(port, "/exit/4").0, 200);
    assert_eq!(server.0.wait().unwrap().code(), Some(4));
    // The log, as seed 001's app writes it: a date line before each message.
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(
        lines[0].ends_with("GMT+0000 (Coordinated Universal Time)"),
        "{log}"
    );
    assert_eq!(
        lines[1],
        format!("...start keelson-workload, listening on :{port}...")
    );
    assert_eq!(lines[3], "Received Request From 127.0.0.1");

    let status = Command::new(BIN).args(["exit", "3"]).status().unwrap();
    assert_eq!(status.code(), Some(3));
    let out = Command::new(BIN)
        .args(["echo", "init", "done"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "init done\n");
}

#[test]
fn pause_exits_zero_on_sigterm() {
    let mut child = Command::new(BIN).arg("pause").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if killed.map(|s| !s.success()).unwrap_or(true) {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("skipping: no `kill` command to send SIGTERM");
        return;
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
