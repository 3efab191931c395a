//! `serve`: a small HTTP/1.1 server answering as seed 001's Node.js app does, plus health,
//! status and exit endpoints for probe and restart tests.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

pub const DEFAULT_MESSAGE: &str = "HELLO World!";

/// Where to listen and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub ports: Vec<u16>,
    pub message: String,
    /// Paths other than `/`, `/index.html` and the control endpoints answer 404, as a web
    /// server with only an index page does (nginx, httpd stand-ins).
    pub strict_paths: bool,
}

impl Config {
    /// `[--port N]... [--message TEXT] [--strict-paths] [TEXT]`; `$PORT` when no --port is given, else 8080.
    pub fn parse(args: &[String], env_port: Option<&str>) -> Result<Config, String> {
        let mut ports = Vec::new();
        let mut message = None;
        let mut strict_paths = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or(format!("{flag} needs a value"))
            };
            match flag {
                "--port" | "-p" => ports.push(parse_port(&value()?)?),
                "--message" | "-m" => message = Some(value()?),
                "--strict-paths" => strict_paths = true,
                f if f.starts_with("--") => return Err(format!("serve: unknown flag {f:?}")),
                _ => message = Some(a.clone()),
            }
        }
        if ports.is_empty() {
            ports.push(match env_port {
                Some(p) if !p.is_empty() => parse_port(p)?,
                _ => 8080,
            });
        }
        Ok(Config {
            ports,
            message: message.unwrap_or_else(|| DEFAULT_MESSAGE.into()),
            strict_paths,
        })
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("serve: bad port {s:?}"))
}

/// What the app reports about where it runs.
pub struct Facts {
    pub hostname: String,
    pub uptime: String,
    pub ip: String,
    pub dns: Vec<String>,
}

impl Facts {
    fn current() -> Facts {
        Facts {
            hostname: sys::hostname(),
            uptime: sys::uptime(),
            ip: sys::ip_address(),
            dns: sys::resolv_conf().nameservers,
        }
    }
}

/// The body of `GET /`, line for line as seed 001's index.js writes it.
pub fn info_text(message: &str, f: &Facts) -> String {
    format!(
        "Message: {message}\nHostname: {}\nPlatform: linux\nUptime: {}\nIP: {}\nDNS: {}\n",
        f.hostname,
        f.uptime,
        f.ip,
        f.dns.join(",")
    )
}

/// A response, and whether the process should exit (with that code) once it is sent.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub exit: Option<i32>,
}

fn resp(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        body: body.into(),
        exit: None,
    }
}

/// Routes one request path. `healthy` is the shared /healthz state that /fail and /ok flip.
pub fn route(
    path: &str,
    cfg: &Config,
    healthy: &AtomicBool,
    facts: &dyn Fn() -> Facts,
) -> Response {
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/healthz" | "/health" | "/livez" | "/readyz" => {
            if healthy.load(Ordering::SeqCst) {
                resp(200, "ok")
            } else {
                resp(500, "unhealthy")
            }
        }
        "/fail" | "/healthz/fail" => {
            healthy.store(false, Ordering::SeqCst);
            resp(200, "health checks now fail\n")
        }
        "/ok" | "/healthz/ok" => {
            healthy.store(true, Ordering::SeqCst);
            resp(200, "health checks now pass\n")
        }
        "/hostname" => resp(200, sys::hostname()),
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                return match code.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => resp(c, format!("{c}\n")),
                    _ => resp(400, format!("bad status code {code:?}\n")),
                };
            }
            if let Some(code) = path.strip_prefix("/exit/") {
                return match code.parse::<i32>() {
                    Ok(c) => Response {
                        status: 200,
                        body: format!("exiting with {c}\n"),
                        exit: Some(c),
                    },
                    _ => resp(400, format!("bad exit code {code:?}\n")),
                };
            }
            if cfg.strict_paths && path != "/" && path != "/index.html" {
                return resp(404, "404 Not Found\n");
            }
            resp(200, info_text(&cfg.message, &facts()))
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Binds every port, then serves until killed. Returns 1 when a port cannot be bound.
pub fn run(cfg: &Config) -> i32 {
    let mut listeners = Vec::new();
    for &port in &cfg.ports {
        match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                let why = match e.kind() {
                    ErrorKind::AddrInUse => "address already in use".to_string(),
                    ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                };
                eprintln!("listen tcp :{port}: bind: {why}");
                return 1;
            }
        }
    }
    let ports: Vec<String> = cfg.ports.iter().map(|p| format!(":{p}")).collect();
    println!("{}", sys::js_date_now());
    println!(
        "...start keelson-workload, listening on {}...",
        ports.join(" ")
    );
    let healthy = Arc::new(AtomicBool::new(true));
    let cfg = Arc::new(cfg.clone());
    let mut threads = Vec::new();
    for l in listeners {
        let healthy = healthy.clone();
        let cfg = cfg.clone();
        threads.push(std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let healthy = healthy.clone();
                let cfg = cfg.clone();
                std::thread::spawn(move || handle(stream, &cfg, &healthy));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    0
}

fn handle(stream: TcpStream, cfg: &Config, healthy: &AtomicBool) {
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    // An idle keep-alive connection gives its thread back after a minute.
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut keep_alive = request_line.contains("HTTP/1.1");
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") {
                    keep_alive = !value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                }
            }
        }
        if content_length > 1 << 20 {
            // Bodies are not used; past 1 MiB the rest is not read and the connection ends.
            keep_alive = false;
        }
        if content_length > 0 {
            let mut sink = vec![0u8; content_length.min(1 << 20)];
            if std::io::Read::read_exact(&mut reader, &mut sink).is_err() {
                return;
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("/");
        // One println! holds the stdout lock, so concurrent requests do not interleave lines.
        println!("{}\nReceived Request From {peer}", sys::js_date_now());
        let r = route(path, cfg, healthy, &Facts::current);
        let body = if method == "HEAD" {
            ""
        } else {
            r.body.as_str()
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            r.status,
            reason(r.status),
            r.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        let sent = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(body.as_bytes()));
        let _ = writer.flush();
        if let Some(code) = r.exit {
            std::process::exit(code);
        }
        if sent.is_err() || !keep_alive {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            hostname: "pod-1".into(),
            uptime: "123.45".into(),
            ip: "10.42.0.7".into(),
            dns: vec!["10.43.0.10".into(), "8.8.8.8".into()],
        }
    }

    #[test]
    fn builds_the_seed_response() {
        assert_eq!(
            info_text("HELLO World!", &facts()),
            "Message: HELLO World!\nHostname: pod-1\nPlatform: linux\nUptime: 123.45\nIP: 10.42.0.7\nDNS: 10.43.0.10,8.8.8.8\n"
        );
    }

    fn cfg(strict_paths: bool) -> Config {
        Config {
            ports: vec![8080],
            message: "hi".into(),
            strict_paths,
        }
    }

    #[test]
    fn strict_paths_answer_404_elsewhere() {
        let healthy = AtomicBool::new(true);
        let check = |path: &str, status: u16| {
            assert_eq!(
                route(path, &cfg(true), &healthy, &facts).status,
                status,
                "{path}"
            );
        };
        check("/", 200);
        check("/index.html?x", 200);
        check("/healthz", 200);
        check("/status/201", 201);
        check("/nope", 404);
    }

    #[test]
    fn routes_requests() {
        let healthy = AtomicBool::new(true);
        let check = |path: &str, status: u16, body: &str, exit: Option<i32>| {
            let r = route(path, &cfg(false), &healthy, &facts);
            assert_eq!((r.status, r.exit), (status, exit), "{path}");
            assert!(r.body.starts_with(body), "{path}: body {:?}", r.body);
        };
        check("/", 200, "Message: hi\nHostname: pod-1\n", None);
        check("/anything?x=1", 200, "Message: hi\n", None);
        check("/healthz", 200, "ok", None);
        check("/fail", 200, "health checks now fail", None);
        check("/healthz", 500, "unhealthy", None);
        check("/ok", 200, "health checks now pass", None);
        check("/healthz", 200, "ok", None);
        check("/healthz/fail", 200, "", None);
        check("/healthz", 500, "", None);
        check("/status/404", 404, "404", None);
        check("/status/abc", 400, "bad status code", None);
        check("/exit/3", 200, "exiting with 3", Some(3));
    }
}
