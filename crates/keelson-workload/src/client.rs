//! `curl`: a minimal HTTP GET client with its own name resolution (/etc/hosts, then DNS over
//! UDP with resolv.conf's search list), since a static glibc binary cannot load NSS modules.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use crate::sys;

/// The command line of `curl`: the subset tests and probes use.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    pub url: String,
    /// `-s`: no error messages.
    pub silent: bool,
    /// `-f`: no body and exit 22 when the status is 400 or more.
    pub fail: bool,
    /// `-o FILE`: write the body there (`-` or absent: stdout).
    pub output: Option<String>,
    /// `-w FORMAT`: printed after the body; `%{http_code}` and `\n` are replaced.
    pub write_out: Option<String>,
    /// `-m SECONDS`: limit for the whole transfer.
    pub max_time: Option<f64>,
    /// `--connect-timeout SECONDS`.
    pub connect_timeout: Option<f64>,
    /// `-H 'Name: value'` headers sent as given.
    pub headers: Vec<String>,
}

impl Request {
    pub fn parse(args: &[String]) -> Result<Request, String> {
        let mut r = Request::default();
        let mut url = None;
        let mut it = args.iter();
        let seconds = |v: Option<&String>, flag: &str| -> Result<f64, String> {
            v.and_then(|v| v.parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or(format!("curl: {flag} needs a number of seconds"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--silent" => r.silent = true,
                "--fail" => r.fail = true,
                "--show-error" | "--location" => {}
                "-o" | "--output" => {
                    r.output = Some(it.next().ok_or("curl: -o needs a file")?.clone())
                }
                "-w" | "--write-out" => {
                    r.write_out = Some(it.next().ok_or("curl: -w needs a format")?.clone())
                }
                "-H" | "--header" => r
                    .headers
                    .push(it.next().ok_or("curl: -H needs a header")?.clone()),
                "-m" | "--max-time" => r.max_time = Some(seconds(it.next(), a)?),
                "--connect-timeout" => r.connect_timeout = Some(seconds(it.next(), a)?),
                f if f.len() > 1 && f.starts_with('-') && !f.starts_with("--") => {
                    for c in f[1..].chars() {
                        match c {
                            's' => r.silent = true,
                            'f' => r.fail = true,
                            'S' | 'L' => {}
                            _ => return Err(format!("curl: unsupported option -{c}")),
                        }
                    }
                }
                f if f.starts_with('-') => return Err(format!("curl: unsupported option {f:?}")),
                u => url = Some(u.to_string()),
            }
        }
        r.url = url.ok_or("curl: no URL specified")?;
        Ok(r)
    }
}

/// Expands curl's `-w` format for one response.
pub fn write_out(format: &str, status: u16) -> String {
    format
        .replace("%{http_code}", &format!("{status:03}"))
        .replace("%{response_code}", &format!("{status:03}"))
        .replace("\\n", "\n")
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, PartialEq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => return Err(format!("Protocol \"{scheme}\" not supported")),
        None => url,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("bad IPv6 host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("Port number was not a decimal number: {p}"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err("no host part in the URL".into());
    }
    Ok(Url { host, port, path })
}

/// Runs the request; the result is curl's exit code (6 resolve, 7 connect, 22 HTTP >= 400).
pub fn run(req: &Request) -> i32 {
    let say = |code: i32, msg: String| {
        if !req.silent {
            eprintln!("curl: ({code}) {msg}");
        }
        code
    };
    let url = match parse_url(&req.url) {
        Ok(u) => u,
        Err(e) => return say(if e.starts_with("Protocol") { 1 } else { 3 }, e),
    };
    let Some(ip) = resolve(&url.host) else {
        return say(6, format!("Could not resolve host: {}", url.host));
    };
    let addr = SocketAddr::new(ip, url.port);
    let total = req.max_time.map(Duration::from_secs_f64);
    let connect_limit = req
        .connect_timeout
        .map(Duration::from_secs_f64)
        .or(total)
        .unwrap_or(Duration::from_secs(10));
    let mut stream = match TcpStream::connect_timeout(&addr, connect_limit) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return say(
                28,
                format!(
                    "Failed to connect to {} port {} after {} ms: Timeout was reached",
                    url.host,
                    url.port,
                    connect_limit.as_millis()
                ),
            );
        }
        Err(e) => {
            return say(
                7,
                format!("Failed to connect to {} port {}: {e}", url.host, url.port),
            );
        }
    };
    let _ = stream.set_read_timeout(Some(total.unwrap_or(Duration::from_secs(60))));
    let host_header = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: curl/8.0 (keelson-workload)\r\nAccept: */*\r\n",
        url.path
    );
    for h in &req.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return say(55, format!("Failed sending data to the peer: {e}"));
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return say(28, "Operation timed out".into());
        }
        if raw.is_empty() {
            return say(
                56,
                format!("Failure when receiving data from the peer: {e}"),
            );
        }
    }
    let Some((status, body)) = parse_response(&raw) else {
        return say(8, "Weird server reply".into());
    };
    let failed = req.fail && status >= 400;
    if !failed {
        let written = match req.output.as_deref() {
            None | Some("-") => std::io::stdout().write_all(&body),
            Some(file) => std::fs::write(file, &body),
        };
        if let Err(e) = written {
            return say(23, format!("Failure writing output to destination: {e}"));
        }
    }
    if let Some(format) = &req.write_out {
        print!("{}", write_out(format, status));
    }
    let _ = std::io::stdout().flush();
    if failed {
        return say(22, format!("The requested URL returned error: {status}"));
    }
    0
}

/// Splits a raw HTTP/1.x response into the status code and the (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || size > data.len() {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// IP literal, `localhost`, /etc/hosts, then DNS A records through resolv.conf.
fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if let Some(ip) = lookup_hosts(&hosts, host) {
        return Some(ip);
    }
    let rc = sys::resolv_conf();
    for name in candidates(host, &rc) {
        for ns in &rc.nameservers {
            if let Some(ip) = query_a(ns, &name) {
                return Some(IpAddr::V4(ip));
            }
        }
    }
    None
}

fn lookup_hosts(hosts: &str, host: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let ip = words.next()?.parse::<IpAddr>().ok()?;
        words.any(|w| w.eq_ignore_ascii_case(host)).then_some(ip)
    })
}

/// Names to try, in resolv.conf order: with the search domains first when the name has
/// fewer dots than ndots.
fn candidates(host: &str, rc: &sys::ResolvConf) -> Vec<String> {
    if let Some(abs) = host.strip_suffix('.') {
        return vec![abs.to_string()];
    }
    let searched: Vec<String> = rc.search.iter().map(|d| format!("{host}.{d}")).collect();
    if host.matches('.').count() >= rc.ndots {
        std::iter::once(host.to_string()).chain(searched).collect()
    } else {
        searched
            .into_iter()
            .chain(std::iter::once(host.to_string()))
            .collect()
    }
}

/// Builds a DNS query for the A record of `name`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The first A record in a DNS answer with the given id.
pub fn parse_a_answer(id: u16, msg: &[u8]) -> Option<Ipv4Addr> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[3] & 0x0f != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let rr = msg.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = msg.get(pos + 10..pos + 10 + len)?;
        if rtype == 1 && len == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += 10 + len;
    }
    None
}

fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some(pos + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        pos += 1 + len;
    }
}

fn query_a(ns: &str, name: &str) -> Option<Ipv4Addr> {
    let server: IpAddr = ns.parse().ok()?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.connect(SocketAddr::new(server, 53)).ok()?;
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(8);
    for _ in 0..2 {
        sock.send(&dns_query(id, name)).ok()?;
        let mut buf = [0u8; 1500];
        if let Ok(n) = sock.recv(&mut buf) {
            return parse_a_answer(id, &buf[..n]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let check = |url: &str, want: Result<(&str, u16, &str), &str>| {
            let got = parse_url(url);
            match want {
                Ok((h, p, path)) => assert_eq!(
                    got,
                    Ok(Url {
                        host: h.into(),
                        port: p,
                        path: path.into()
                    }),
                    "{url}"
                ),
                Err(e) => assert!(got.as_ref().is_err_and(|g| g.contains(e)), "{url}: {got:?}"),
            }
        };
        check("localhost:8080", Ok(("localhost", 8080, "/")));
        check("http://10.0.0.1/x?y=1", Ok(("10.0.0.1", 80, "/x?y=1")));
        check("http://[::1]:81/", Ok(("::1", 81, "/")));
        check(
            "http://web.default.svc:8080/healthz",
            Ok(("web.default.svc", 8080, "/healthz")),
        );
        check("https://x/", Err("Protocol \"https\" not supported"));
        check("http://x:port/", Err("Port number"));
    }

    #[test]
    fn parses_curl_arguments() {
        let check = |line: &str, want: Result<Request, &str>| {
            let args: Vec<String> = line.split_whitespace().map(String::from).collect();
            match (Request::parse(&args), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{line}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{line}: {got}"),
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        };
        let url = |u: &str| Request {
            url: u.into(),
            ..Default::default()
        };
        check("localhost:8080", Ok(url("localhost:8080")));
        check(
            "-sSf x",
            Ok(Request {
                silent: true,
                fail: true,
                ..url("x")
            }),
        );
        check(
            "-s -o /dev/null -w %{http_code} -m 2 -H X-A:1 x",
            Ok(Request {
                silent: true,
                output: Some("/dev/null".into()),
                write_out: Some("%{http_code}".into()),
                max_time: Some(2.0),
                headers: vec!["X-A:1".into()],
                ..url("x")
            }),
        );
        check("-s", Err("no URL specified"));
        check("-X POST x", Err("unsupported option -X"));
        check("-m 0 x", Err("-m needs a number of seconds"));
        assert_eq!(write_out("%{http_code}\\n", 404), "404\n");
    }

    #[test]
    fn parses_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain), Some((200, b"ok".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((404, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn resolves_from_hosts_and_search_list() {
        let hosts = "127.0.0.1 localhost\n10.42.0.9 pod-1 pod-1.example # comment\n";
        assert_eq!(
            lookup_hosts(hosts, "pod-1"),
            Some("10.42.0.9".parse().unwrap())
        );
        assert_eq!(lookup_hosts(hosts, "pod-2"), None);
        let rc = sys::parse_resolv_conf(
            "search default.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
        );
        assert_eq!(
            candidates("web", &rc),
            [
                "web.default.svc.cluster.local",
                "web.svc.cluster.local",
                "web"
            ]
        );
        assert_eq!(candidates("example.com.", &rc), ["example.com"]);
    }

    #[test]
    fn builds_and_reads_dns_messages() {
        let q = dns_query(7, "web.svc");
        assert_eq!(&q[12..], b"\x03web\x03svc\x00\x00\x01\x00\x01");
        // The answer: the query, then one CNAME and one A record using name pointers.
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2;
        a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 12]);
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 43, 0, 10]);
        assert_eq!(parse_a_answer(7, &a), Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(parse_a_answer(8, &a), None);
    }
}
