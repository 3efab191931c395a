//! Container probes (liveness, readiness, startup): one task per running container instance
//! and probe kind, the kubelet's threshold rules as a value ([`Tracker`]), and the results
//! ([`Results`]) that the planner and the status builder read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_controllers::events::EventType;
use keelson_cri::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::AbortHandle;

use super::hooks;
use super::observe::{Instance, PodRuntime, State};

/// The User-Agent of HTTP probes (upstream's `kube-probe/<major>.<minor>`).
const USER_AGENT: &str = "kube-probe/1.33";

/// The three kinds of probe a container may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];

    /// The name events use (`Liveness probe failed: ...`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// A probe's timing and thresholds, with upstream's defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn positive(v: Option<i32>, default: u32) -> u32 {
    match v {
        Some(n) if n > 0 => n as u32,
        _ => default,
    }
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: Duration::from_secs(positive(p.period_seconds, 10) as u64),
            timeout: Duration::from_secs(positive(p.timeout_seconds, 1) as u64),
            success_threshold: positive(p.success_threshold, 1),
            failure_threshold: positive(p.failure_threshold, 3),
        }
    }

    /// How long to wait before the first probe of a container that started at `started_ns`:
    /// until `initialDelaySeconds` have passed, and at least a period (at most a second) after
    /// the start, as upstream's first probe comes on a tick after the container started.
    pub fn first_wait(&self, started_ns: i64, now_ns: i64) -> Duration {
        let since = Duration::from_nanos(now_ns.saturating_sub(started_ns).max(0) as u64);
        let floor = self.period.min(Duration::from_secs(1));
        self.initial_delay.max(floor).saturating_sub(since)
    }
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The probe ran and failed; the kubelet's message.
    Failure(String),
    /// The probe could not be run (e.g. an unknown named port): reported, otherwise ignored.
    Error(String),
}

/// The kubelet's threshold rules for one probe worker: a result is published once it has been
/// seen `successThreshold` (or `failureThreshold`) times in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    /// The published result (`None`: nothing yet).
    pub published: Option<bool>,
}

impl Tracker {
    pub fn new(t: &Timing) -> Tracker {
        Tracker {
            success_threshold: t.success_threshold,
            failure_threshold: t.failure_threshold,
            last: None,
            run: 0,
            published: None,
        }
    }

    /// Records one probe result; returns the newly published result when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.published == Some(ok) {
            return None;
        }
        self.published = Some(ok);
        Some(ok)
    }
}

/// Whether a probe worker stops after publishing `result`: a failed liveness or startup probe
/// holds until the container is replaced; a passed startup probe is done.
pub fn stops_after(kind: Kind, result: bool) -> bool {
    match kind {
        Kind::Liveness => !result,
        Kind::Startup => true,
        Kind::Readiness => false,
    }
}

/// Published probe results by (container instance ID, kind). A missing result means upstream's
/// initial value: liveness passes, readiness fails, startup has not passed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Results {
    by: HashMap<(String, Kind), bool>,
    /// Instances killed after a failed liveness or startup probe, while the runtime holds them.
    killed: HashSet<String>,
}

impl Results {
    pub fn get(&self, id: &str, kind: Kind) -> Option<bool> {
        self.by.get(&(id.to_string(), kind)).copied()
    }

    pub fn set(&mut self, id: &str, kind: Kind, ok: bool) {
        self.by.insert((id.to_string(), kind), ok);
    }

    /// Records that instance `id` was killed after a failed probe.
    pub fn set_killed(&mut self, id: &str) {
        self.killed.insert(id.to_string());
    }

    /// Whether instance `id` was killed after a failed probe: it restarts unless the restart
    /// policy is Never, whatever its exit code.
    pub fn killed(&self, id: &str) -> bool {
        self.killed.contains(id)
    }

    /// Whether the instance of `c` has started: it runs and its startup probe (if any) passed.
    pub fn started(&self, c: &Container, i: &Instance) -> bool {
        i.state == State::Running
            && (c.startup_probe.is_none() || self.get(&i.id, Kind::Startup) == Some(true))
    }

    /// Whether the instance of `c` is ready: started, and its readiness probe (if any) passed.
    pub fn ready(&self, c: &Container, i: &Instance) -> bool {
        self.started(c, i)
            && (c.readiness_probe.is_none() || self.get(&i.id, Kind::Readiness) == Some(true))
    }

    /// The probe whose failure means the running instance of `c` must be killed.
    pub fn failed(&self, c: &Container, i: &Instance) -> Option<Kind> {
        if i.state != State::Running {
            return None;
        }
        [Kind::Liveness, Kind::Startup]
            .into_iter()
            .find(|k| k.of(c).is_some() && self.get(&i.id, *k) == Some(false))
    }
}

/// One probe worker the pod needs: a running instance of a container with a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub id: String,
    pub container: String,
    pub kind: Kind,
}

/// The probe workers a pod needs now: one per probe of each running instance in the current
/// sandbox (init containers are not probed).
pub fn wanted(pod: Option<&Pod>, rt: &PodRuntime) -> Vec<Want> {
    let (Some(spec), Some(sandbox)) = (pod.and_then(|p| p.spec.as_ref()), rt.sandbox()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for i in rt.of(&c.name) {
            if i.state != State::Running || i.sandbox_id != sandbox.id {
                continue;
            }
            for kind in Kind::ALL {
                if kind.of(c).is_some() {
                    out.push(Want {
                        id: i.id.clone(),
                        container: c.name.clone(),
                        kind,
                    });
                }
            }
        }
    }
    out
}

/// What a probe worker tells the pod manager.
pub trait Sink: Send + Sync + 'static {
    /// A published result changed: the pod's worker should look again.
    fn changed(&self, uid: &str);
    /// A probe failed (Warning `Unhealthy` with `message`).
    fn unhealthy(&self, pod: &Pod, container: &str, message: &str);
}

impl Sink for Arc<super::PodManager> {
    fn changed(&self, uid: &str) {
        self.wake(uid);
    }

    fn unhealthy(&self, pod: &Pod, container: &str, message: &str) {
        self.event(
            pod,
            Some(container),
            EventType::Warning,
            "Unhealthy",
            message,
        );
    }
}

type Tasks = HashMap<(String, Kind), AbortHandle>;

/// The probe workers of every pod and their published results.
#[derive(Default)]
pub struct Prober {
    results: Arc<Mutex<Results>>,
    /// Workers by pod UID.
    tasks: Mutex<HashMap<String, Tasks>>,
    /// Instances killed after a failed probe, by pod UID.
    killed: Mutex<HashMap<String, HashSet<String>>>,
}

impl Prober {
    /// All published results.
    pub fn results(&self) -> Results {
        let mut r = self.results.lock().map(|r| r.clone()).unwrap_or_default();
        if let Ok(killed) = self.killed.lock() {
            r.killed = killed.values().flatten().cloned().collect();
        }
        r
    }

    /// Records that instance `id` of pod `uid` was killed after a failed probe.
    pub fn mark_killed(&self, uid: &str, id: &str) {
        if let Ok(mut k) = self.killed.lock() {
            k.entry(uid.to_string()).or_default().insert(id.to_string());
        }
    }

    /// Starts the probe workers pod `uid` needs and stops the ones it no longer needs
    /// (forgetting their results); returns the results now.
    pub fn sync(
        &self,
        pod: Option<&Arc<Pod>>,
        uid: &str,
        rt: &PodRuntime,
        runtime: &Arc<dyn Runtime>,
        sink: Arc<dyn Sink>,
    ) -> Results {
        let want = wanted(pod.map(|p| p.as_ref()), rt);
        if let Ok(mut k) = self.killed.lock()
            && let Some(ids) = k.get_mut(uid)
        {
            ids.retain(|id| rt.instances.iter().any(|i| &i.id == id));
            if ids.is_empty() {
                k.remove(uid);
            }
        }
        let Ok(mut all) = self.tasks.lock() else {
            return self.results();
        };
        let tasks = all.entry(uid.to_string()).or_default();
        let mut gone = Vec::new();
        tasks.retain(|key, handle| {
            let keep = want.iter().any(|w| w.id == key.0 && w.kind == key.1);
            if !keep {
                handle.abort();
                gone.push(key.clone());
            }
            keep
        });
        if !gone.is_empty()
            && let Ok(mut r) = self.results.lock()
        {
            for key in gone {
                r.by.remove(&key);
            }
        }
        for w in want {
            let key = (w.id.clone(), w.kind);
            if tasks.contains_key(&key) {
                continue;
            }
            let Some(pod) = pod.cloned() else { continue };
            let Some(c) = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == w.container))
                .cloned()
            else {
                continue;
            };
            let started_ns = rt
                .instances
                .iter()
                .find(|i| i.id == w.id)
                .map_or(0, |i| i.started_ns);
            let worker = Worker {
                uid: uid.to_string(),
                pod,
                container: c,
                id: w.id,
                kind: w.kind,
                ip: rt.ip.clone(),
                started_ns,
                runtime: runtime.clone(),
                results: self.results.clone(),
                sink: sink.clone(),
            };
            tasks.insert(key, tokio::spawn(worker.run()).abort_handle());
        }
        if tasks.is_empty() {
            all.remove(uid);
        }
        drop(all);
        self.results()
    }
}

/// One probe of one container instance, run every period until stopped.
struct Worker {
    uid: String,
    pod: Arc<Pod>,
    container: Container,
    id: String,
    kind: Kind,
    ip: Option<String>,
    started_ns: i64,
    runtime: Arc<dyn Runtime>,
    results: Arc<Mutex<Results>>,
    sink: Arc<dyn Sink>,
}

impl Worker {
    async fn run(self) {
        let Some(probe) = self.kind.of(&self.container).cloned() else {
            return;
        };
        let timing = Timing::of(&probe);
        let mut tracker = Tracker::new(&timing);
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        tokio::time::sleep(timing.first_wait(self.started_ns, now)).await;
        loop {
            let tick = Instant::now();
            if self.gated() {
                tokio::time::sleep(timing.period).await;
                continue;
            }
            let outcome = tokio::time::timeout(
                timing.timeout + Duration::from_secs(5),
                run(
                    self.runtime.as_ref(),
                    &probe,
                    &self.container,
                    &self.id,
                    self.ip.as_deref(),
                ),
            )
            .await
            .unwrap_or_else(|_| Outcome::Failure("probe timed out".into()));
            let ok = match outcome {
                Outcome::Success => Some(true),
                Outcome::Failure(msg) => {
                    let message = format!("{} probe failed: {msg}", self.kind.label());
                    self.sink
                        .unhealthy(&self.pod, &self.container.name, &message);
                    Some(false)
                }
                Outcome::Error(msg) => {
                    let message = format!("{} probe errored: {msg}", self.kind.label());
                    self.sink
                        .unhealthy(&self.pod, &self.container.name, &message);
                    None
                }
            };
            if let Some(result) = ok.and_then(|ok| tracker.record(ok)) {
                if let Ok(mut r) = self.results.lock() {
                    r.set(&self.id, self.kind, result);
                }
                self.sink.changed(&self.uid);
                if stops_after(self.kind, result) {
                    return;
                }
            }
            tokio::time::sleep(timing.period.saturating_sub(tick.elapsed())).await;
        }
    }

    /// Whether liveness and readiness wait for the startup probe still.
    fn gated(&self) -> bool {
        self.kind != Kind::Startup
            && self.container.startup_probe.is_some()
            && self
                .results
                .lock()
                .map(|r| r.get(&self.id, Kind::Startup) != Some(true))
                .unwrap_or(true)
    }
}

/// Runs one probe of container `c` (instance `id`) of a pod at `pod_ip`.
pub async fn run(
    runtime: &dyn Runtime,
    p: &Probe,
    c: &Container,
    id: &str,
    pod_ip: Option<&str>,
) -> Outcome {
    let timing = Timing::of(p);
    let host_or = |h: Option<&String>| {
        h.filter(|h| !h.is_empty())
            .cloned()
            .or(pod_ip.map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into())
    };
    if let Some(exec) = &p.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match runtime
            .exec_sync(id, cmd.clone(), timing.timeout.as_secs() as i64)
            .await
        {
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            Ok(r) => {
                let mut out = r.stdout;
                out.extend_from_slice(&r.stderr);
                Outcome::Failure(String::from_utf8_lossy(&out).into_owned())
            }
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("deadline") || msg.contains("timeout") {
                    Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")))
                } else {
                    Outcome::Error(msg)
                }
            }
        };
    }
    if let Some(get) = &p.http_get {
        let port = match port_of(&get.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(e),
        };
        let scheme = get.scheme.as_deref().unwrap_or("HTTP");
        let https = match scheme.to_ascii_uppercase().as_str() {
            "HTTP" => false,
            "HTTPS" => true,
            _ => return Outcome::Error(format!("unsupported probe scheme {scheme:?}")),
        };
        let mut path = get.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let target = Target {
            https,
            host: host_or(get.host.as_ref()),
            port,
            path,
        };
        let headers: Vec<(String, String)> = get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let url = target.url();
        let code = match tokio::time::timeout(timing.timeout, http_get(target, &headers)).await {
            Err(_) => {
                return Outcome::Failure(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ));
            }
            Ok(Err(e)) => return Outcome::Failure(e),
            Ok(Ok(code)) => code,
        };
        return if (200..400).contains(&code) {
            Outcome::Success
        } else {
            Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(tcp) = &p.tcp_socket {
        let port = match port_of(&tcp.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(e),
        };
        let host = host_or(tcp.host.as_ref());
        return match tokio::time::timeout(timing.timeout, dial(&host, port)).await {
            Err(_) => Outcome::Failure(format!(
                "dial tcp {}: i/o timeout",
                join_host_port(&host, port)
            )),
            Ok(Err(e)) => Outcome::Failure(e),
            Ok(Ok(_)) => Outcome::Success,
        };
    }
    if let Some(g) = &p.grpc {
        let Some(port) = u16::try_from(g.port).ok().filter(|p| *p > 0) else {
            return Outcome::Error(format!("invalid port number: {}", g.port));
        };
        let host = host_or(None);
        let service = g.service.clone().unwrap_or_default();
        return grpc_check(&host, port, &service, timing.timeout).await;
    }
    Outcome::Error("missing probe handler".into())
}

/// The port number a probe names (a number, or the name of one of the container's ports).
pub fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {s} in {}", c.name))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error of connecting to `addr`, as Go's net package words it.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connect: connection refused".to_string(),
        Some(libc::EHOSTUNREACH) => "connect: no route to host".to_string(),
        Some(libc::ENETUNREACH) => "connect: network is unreachable".to_string(),
        Some(libc::ETIMEDOUT) => "i/o timeout".to_string(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or_default();
            format!("connect: {}", s.to_lowercase())
        }
    };
    format!("dial tcp {addr}: {what}")
}

async fn dial(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let addr = join_host_port(host, port);
    tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| dial_error(&addr, &e))
}

/// The request line and headers of an HTTP probe; `headers` (the probe's httpHeaders) override
/// the defaults, and a `Host` header among them sets the host.
pub fn request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !has("Host") {
        req += &format!("Host: {}\r\n", join_host_port(host, port));
    }
    if !has("User-Agent") {
        req += &format!("User-Agent: {USER_AGENT}\r\n");
    }
    if !has("Accept") {
        req += "Accept: */*\r\n";
    }
    for (n, v) in headers {
        if !n.eq_ignore_ascii_case("Connection") {
            req += &format!("{n}: {v}\r\n");
        }
    }
    req + "Connection: close\r\n\r\n"
}

/// Where an HTTP probe sends its GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            join_host_port(&self.host, self.port),
            self.path
        )
    }

    /// Where a redirect to `location` leads from here.
    pub fn redirect(&self, location: &str) -> Option<Target> {
        let absolute = |rest: &str, https: bool| {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].to_string()),
                None => (rest, "/".to_string()),
            };
            let default_port = if https { 443 } else { 80 };
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => match p.parse::<u16>() {
                    Ok(port) => (h, port),
                    Err(_) => (authority, default_port),
                },
                None => (authority, default_port),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(Target {
                https,
                host: host.to_string(),
                port,
                path,
            })
        };
        if let Some(rest) = location.strip_prefix("http://") {
            return absolute(rest, false);
        }
        if let Some(rest) = location.strip_prefix("https://") {
            return absolute(rest, true);
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = self.path.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{location}")
        };
        Some(Target {
            path,
            ..self.clone()
        })
    }
}

/// Sends an HTTP(S) GET, following redirects on the same host as upstream's prober does (a
/// redirect elsewhere ends with its own 3xx status); returns the final status code, or the
/// probe's failure message.
async fn http_get(first: Target, headers: &[(String, String)]) -> Result<u16, String> {
    let mut target = first.clone();
    for _ in 0..=10 {
        let (code, location) = exchange(&target, headers)
            .await
            .map_err(|e| format!("Get \"{}\": {e}", target.url()))?;
        let next = location
            .filter(|_| (300..400).contains(&code))
            .and_then(|l| target.redirect(&l))
            .filter(|t| t.host == first.host);
        match next {
            Some(t) => target = t,
            None => return Ok(code),
        }
    }
    Err(format!(
        "Get \"{}\": stopped after 10 redirects",
        target.url()
    ))
}

/// One request over a new connection: the response's status code and Location header.
async fn exchange(
    t: &Target,
    headers: &[(String, String)],
) -> Result<(u16, Option<String>), String> {
    let tcp = dial(&t.host, t.port).await?;
    let req = request(&t.host, t.port, &t.path, headers);
    if !t.https {
        return response_head(tcp, &req).await;
    }
    let name = rustls::pki_types::ServerName::try_from(t.host.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", t.host))?;
    let tls = tokio_rustls::TlsConnector::from(insecure_tls()?)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    response_head(tls, &req).await
}

async fn response_head<S>(mut s: S, req: &str) -> Result<(u16, Option<String>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.is_empty() {
        return Err("EOF".into());
    }
    parse_head(&String::from_utf8_lossy(&buf)).ok_or_else(|| "malformed HTTP response".into())
}

/// The status code and Location header of an HTTP response head.
pub fn parse_head(head: &str) -> Option<(u16, Option<String>)> {
    let mut lines = head.split("\r\n");
    let mut words = lines.next()?.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?.parse().ok()?;
    let location = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Some((code, location))
}

/// A TLS client config that, like upstream's HTTPS probes, does not verify the server.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    keelson_pki::tls::insecure_client_config().map_err(|e| e.to_string())
}

/// grpc.health.v1.HealthCheckRequest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// grpc.health.v1.HealthCheckResponse.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The name of a grpc.health.v1 serving status.
fn serving_status(n: i32) -> String {
    match n {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// Calls grpc.health.v1.Health/Check on `host:port` for `service`, with upstream's messages.
async fn grpc_check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let secs = timeout.as_secs();
    let connect_failed = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {addr:?} within {secs}s: context deadline exceeded"
        ))
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return Outcome::Error(format!("invalid address {addr:?}: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        _ => return connect_failed(),
    };
    let mut client = tonic::client::Grpc::new(channel);
    if client.ready().await.is_err() {
        return connect_failed();
    }
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    let call = tokio::time::timeout(timeout, client.unary(request, path, codec)).await;
    match call {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {secs}s"
        )),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unimplemented => Outcome::Failure(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            )),
            tonic::Code::DeadlineExceeded => Outcome::Failure(format!(
                "timeout: health rpc did not complete within {secs}s"
            )),
            _ => Outcome::Failure(format!(
                "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            )),
        },
        Ok(Ok(resp)) if resp.get_ref().status == 1 => Outcome::Success,
        Ok(Ok(resp)) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            serving_status(resp.get_ref().status)
        )),
    }
}

/// What the Killing event says when a probe failure kills a container.
pub fn kill_message(kind: Kind, container: &str, restart: bool) -> String {
    let probe = match kind {
        Kind::Startup => "startup",
        _ => "liveness",
    };
    let mut m = format!("Container {container} failed {probe} probe");
    if restart {
        m += ", will be restarted";
    }
    m
}

/// The grace period of a kill after a failed probe: the probe's own, else the pod's, at least 2.
pub fn kill_grace(pod: &Pod, c: &Container, kind: Kind) -> i64 {
    kind.of(c)
        .and_then(|p| p.termination_grace_period_seconds)
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(2)
}

impl super::PodManager {
    /// Stops one container after a failed probe: the Killing event, its preStop hook, then a
    /// stop within the grace period.
    pub(super) async fn kill_container(
        &self,
        pod: &Pod,
        rt: &PodRuntime,
        id: &str,
        name: &str,
        grace_s: i64,
        message: &str,
    ) {
        self.event(pod, Some(name), EventType::Normal, "Killing", message);
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.probes.mark_killed(uid, id);
        }
        let mut grace_s = grace_s;
        let c = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name));
        if let Some(c) = c
            && let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        {
            let started = Instant::now();
            let budget = Duration::from_secs(grace_s.max(1) as u64);
            if let Err(e) = hooks::run(
                self.runtime.as_ref(),
                handler,
                c,
                id,
                rt.ip.as_deref(),
                budget,
            )
            .await
            {
                self.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "FailedPreStopHook",
                    &format!("PreStopHook failed: {e}"),
                );
            }
            grace_s = (grace_s - started.elapsed().as_secs() as i64).max(2);
        }
        if let Err(e) = self.runtime.stop_container(id, grace_s).await {
            tracing::debug!(container = %id, error = %e, "stop after a failed probe failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_cri::cri;
    use keelson_cri::fake::FakeRuntime;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        let mut base = json!({"name": "c", "image": "x"});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            b.extend(o.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn timing_defaults_and_initial_delay() {
        let t = Timing::of(&probe(json!({})));
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let t = Timing::of(&probe(
            json!({"initialDelaySeconds": 5, "periodSeconds": 1}),
        ));
        let s = 1_000_000_000;
        assert_eq!(t.first_wait(0, 2 * s), Duration::from_secs(3));
        assert_eq!(t.first_wait(0, 9 * s), Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(1));
        // Without a delay, the first probe comes a second after the start.
        let t = Timing::of(&probe(json!({})));
        assert_eq!(t.first_wait(0, 0), Duration::from_secs(1));
        assert_eq!(t.first_wait(0, 2 * s), Duration::ZERO);
    }

    #[test]
    fn thresholds_publish_results() {
        // (successThreshold, failureThreshold, probe results, published after each)
        type Case = (i32, i32, &'static [bool], &'static [Option<bool>]);
        let cases: &[Case] = &[
            (
                1,
                3,
                &[true, false, false, false, false],
                &[Some(true), Some(true), Some(true), Some(false), Some(false)],
            ),
            (1, 1, &[false], &[Some(false)]),
            (
                2,
                1,
                &[true, false, true, true],
                &[None, Some(false), Some(false), Some(true)],
            ),
            (
                1,
                2,
                &[false, true, false, true],
                &[None, Some(true), Some(true), Some(true)],
            ),
        ];
        for (success, failure, seq, want) in cases {
            let t = Timing::of(&probe(
                json!({"successThreshold": success, "failureThreshold": failure}),
            ));
            let mut tr = Tracker::new(&t);
            let got: Vec<Option<bool>> = seq
                .iter()
                .map(|ok| {
                    tr.record(*ok);
                    tr.published
                })
                .collect();
            assert_eq!(&got, want, "{success}/{failure} {seq:?}");
        }
        // A change is reported once.
        let mut tr = Tracker::new(&Timing::of(&probe(json!({"failureThreshold": 1}))));
        assert_eq!(tr.record(false), Some(false));
        assert_eq!(tr.record(false), None);
        assert_eq!(tr.record(true), Some(true));
    }

    fn inst(id: &str, state: State) -> Instance {
        Instance {
            id: id.into(),
            name: "c".into(),
            attempt: 0,
            sandbox_id: "s".into(),
            state,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            created_ns: 1,
            started_ns: 1,
            finished_ns: 0,
            image_ref: String::new(),
            log_path: String::new(),
        }
    }

    #[test]
    fn results_decide_started_ready_and_failed() {
        let plain = container(json!({}));
        let probed = container(json!({
            "readinessProbe": {"exec": {"command": ["true"]}},
            "livenessProbe": {"exec": {"command": ["true"]}},
            "startupProbe": {"exec": {"command": ["true"]}},
        }));
        let running = inst("i1", State::Running);
        let mut r = Results::default();
        // (container, results to set, started, ready, failed)
        let check = |c: &Container, r: &Results, want: (bool, bool, Option<Kind>)| {
            let got = (
                r.started(c, &running),
                r.ready(c, &running),
                r.failed(c, &running),
            );
            assert_eq!(got, want);
        };
        check(&plain, &r, (true, true, None));
        check(&probed, &r, (false, false, None));
        r.set("i1", Kind::Startup, true);
        check(&probed, &r, (true, false, None));
        r.set("i1", Kind::Readiness, true);
        check(&probed, &r, (true, true, None));
        r.set("i1", Kind::Liveness, false);
        check(&probed, &r, (true, true, Some(Kind::Liveness)));
        assert!(!r.ready(&probed, &inst("i1", State::Exited)));
        assert_eq!(r.failed(&probed, &inst("i1", State::Exited)), None);
    }

    #[test]
    fn kill_wording_and_grace() {
        assert_eq!(
            kill_message(Kind::Liveness, "web", true),
            "Container web failed liveness probe, will be restarted"
        );
        assert_eq!(
            kill_message(Kind::Startup, "web", false),
            "Container web failed startup probe"
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": []},
        }))
        .unwrap();
        let c = container(json!({"livenessProbe": {"terminationGracePeriodSeconds": 7}}));
        assert_eq!(kill_grace(&pod, &c, Kind::Liveness), 7);
        assert_eq!(kill_grace(&pod, &c, Kind::Startup), 2);
    }

    #[test]
    fn request_carries_probe_headers() {
        let r = request("10.0.0.1", 80, "/h", &[]);
        assert!(
            r.starts_with("GET /h HTTP/1.1\r\nHost: 10.0.0.1:80\r\n"),
            "{r}"
        );
        assert!(r.contains("User-Agent: kube-probe/1.33\r\n"));
        let r = request(
            "10.0.0.1",
            80,
            "/",
            &[
                ("Host".into(), "example.com".into()),
                ("X-A".into(), "b".into()),
            ],
        );
        assert!(
            r.contains("Host: example.com\r\n") && !r.contains("10.0.0.1"),
            "{r}"
        );
        assert!(r.contains("X-A: b\r\n"));
    }

    /// An HTTP server answering `status` (with `extra` headers); returns its port.
    async fn serve_with(status: u16, extra: &str) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let extra = extra.to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
            }
        });
        port
    }

    async fn serve(status: u16) -> u16 {
        serve_with(status, "").await
    }

    /// An HTTPS server (with a certificate no one trusts) answering `status`; returns its port.
    async fn serve_tls(status: u16) -> (u16, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let pki = keelson_pki::tls::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let config = keelson_pki::tls::server_config(&pki).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let Ok(mut s) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (port, dir)
    }

    #[test]
    fn redirects_resolve() {
        let t = Target {
            https: false,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/a/b".into(),
        };
        let at = |https, host: &str, port, path: &str| Target {
            https,
            host: host.into(),
            port,
            path: path.into(),
        };
        let cases = [
            ("/x", at(false, "10.0.0.1", 8080, "/x")),
            ("c", at(false, "10.0.0.1", 8080, "/a/c")),
            ("http://10.0.0.1/y", at(false, "10.0.0.1", 80, "/y")),
            (
                "https://example.com:8443",
                at(true, "example.com", 8443, "/"),
            ),
            ("http://[fd00::1]:81/z", at(false, "fd00::1", 81, "/z")),
        ];
        for (location, want) in cases {
            assert_eq!(t.redirect(location), Some(want), "{location}");
        }
        assert_eq!(
            parse_head("HTTP/1.1 302 Found\r\nlocation: /h\r\n\r\n"),
            Some((302, Some("/h".into())))
        );
        assert_eq!(parse_head("SSH-2.0\r\n"), None);
    }

    #[tokio::test]
    async fn probes_report_like_the_kubelet() {
        let rt = FakeRuntime::new();
        let ok = serve(200).await;
        let moved = serve(302).await;
        let missing = serve(404).await;
        let to_missing = serve_with(
            301,
            &format!("Location: http://127.0.0.1:{missing}/gone\r\n"),
        )
        .await;
        let elsewhere = serve_with(302, "Location: http://example.invalid/\r\n").await;
        let (secure, _pki) = serve_tls(200).await;
        let (secure_missing, _pki2) = serve_tls(404).await;
        // A port nothing listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = container(json!({"ports": [{"name": "http", "containerPort": ok}]}));
        let cases = [
            (
                json!({"httpGet": {"port": ok, "path": "/healthz"}}),
                Outcome::Success,
            ),
            (json!({"httpGet": {"port": "http"}}), Outcome::Success),
            (json!({"httpGet": {"port": moved}}), Outcome::Success),
            (
                json!({"httpGet": {"port": to_missing}}),
                Outcome::Failure("HTTP probe failed with statuscode: 404".into()),
            ),
            (json!({"httpGet": {"port": elsewhere}}), Outcome::Success),
            (
                json!({"httpGet": {"port": secure, "scheme": "HTTPS"}}),
                Outcome::Success,
            ),
            (
                json!({"httpGet": {"port": secure_missing, "scheme": "HTTPS"}}),
                Outcome::Failure("HTTP probe failed with statuscode: 404".into()),
            ),
            (
                json!({"httpGet": {"port": missing, "path": "/nope"}}),
                Outcome::Failure("HTTP probe failed with statuscode: 404".into()),
            ),
            (
                json!({"httpGet": {"port": closed, "path": "/x"}}),
                Outcome::Failure(format!(
                    "Get \"http://127.0.0.1:{closed}/x\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
                )),
            ),
            (json!({"tcpSocket": {"port": ok}}), Outcome::Success),
            (
                json!({"tcpSocket": {"port": closed}}),
                Outcome::Failure(format!(
                    "dial tcp 127.0.0.1:{closed}: connect: connection refused"
                )),
            ),
            (
                json!({"tcpSocket": {"port": "nope"}}),
                Outcome::Error("couldn't find port: nope in c".into()),
            ),
        ];
        for (p, want) in cases {
            let got = run(&rt, &probe(p.clone()), &c, "none", Some("127.0.0.1")).await;
            assert_eq!(got, want, "{p}");
        }
    }

    /// A grpc.health.v1.Health server answering every Check with one status.
    #[derive(Clone)]
    struct Health(i32);

    impl tonic::server::NamedService for Health {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    struct Check(i32);

    impl tonic::server::UnaryService<HealthCheckRequest> for Check {
        type Response = HealthCheckResponse;
        type Future =
            std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

        fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
            std::future::ready(Ok(tonic::Response::new(HealthCheckResponse {
                status: self.0,
            })))
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Health {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
        >;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let status = self.0;
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                    HealthCheckResponse,
                    HealthCheckRequest,
                >::default());
                Ok(grpc.unary(Check(status), req).await)
            })
        }
    }

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    async fn serve_health(status: i32) -> u16 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Health(status))
                .serve(addr),
        );
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        port
    }

    #[tokio::test]
    async fn grpc_probes_check_health() {
        let rt = FakeRuntime::new();
        let serving = serve_health(1).await;
        let not_serving = serve_health(2).await;
        let closed = free_port();
        let c = container(json!({}));
        let cases = [
            (serving, Outcome::Success),
            (
                not_serving,
                Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into()),
            ),
            (
                closed,
                Outcome::Failure(format!(
                    "timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s: context deadline exceeded"
                )),
            ),
        ];
        for (port, want) in cases {
            let p = probe(json!({"grpc": {"port": port}}));
            assert_eq!(
                run(&rt, &p, &c, "none", Some("127.0.0.1")).await,
                want,
                "{port}"
            );
        }
    }

    /// Records what probe workers report.
    #[derive(Default)]
    struct Recorder {
        changed: Mutex<Vec<String>>,
        unhealthy: Mutex<Vec<String>>,
    }

    impl Sink for Recorder {
        fn changed(&self, uid: &str) {
            self.changed.lock().unwrap().push(uid.to_string());
        }

        fn unhealthy(&self, _: &Pod, container: &str, message: &str) {
            self.unhealthy
                .lock()
                .unwrap()
                .push(format!("{container}: {message}"));
        }
    }

    #[tokio::test]
    async fn workers_publish_results_and_stop_with_their_container() {
        let ok = serve(200).await;
        let closed = free_port();
        let pod: Arc<Pod> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                "spec": {"containers": [{"name": "c", "image": "x",
                    "readinessProbe": {"httpGet": {"port": ok}, "periodSeconds": 1},
                    "livenessProbe": {"tcpSocket": {"port": closed},
                        "periodSeconds": 1, "failureThreshold": 1}}]},
            }))
            .unwrap(),
        );
        let mut i = inst("i1", State::Running);
        i.sandbox_id = "s".into();
        i.started_ns = jiff::Timestamp::now().as_nanosecond() as i64 - 5_000_000_000;
        let mut rt = PodRuntime {
            sandboxes: vec![super::super::observe::Sandbox {
                id: "s".into(),
                attempt: 0,
                ready: true,
                created_ns: 1,
            }],
            instances: vec![i],
            ip: Some("127.0.0.1".into()),
        };
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new());
        let sink = Arc::new(Recorder::default());
        let prober = Prober::default();
        let sync = |rt: &PodRuntime| prober.sync(Some(&pod), "u1", rt, &runtime, sink.clone());
        assert_eq!(sync(&rt), Results::default());
        let mut published = Results::default();
        for _ in 0..100 {
            published = prober.results();
            if published.get("i1", Kind::Readiness).is_some()
                && published.get("i1", Kind::Liveness).is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(published.get("i1", Kind::Readiness), Some(true));
        assert_eq!(published.get("i1", Kind::Liveness), Some(false));
        assert!(sink.changed.lock().unwrap().iter().all(|u| u == "u1"));
        assert_eq!(
            sink.unhealthy.lock().unwrap().first().cloned(),
            Some(format!(
                "c: Liveness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        // Once the instance has exited, its workers stop and its results go; that it was
        // killed is remembered while the runtime holds it.
        prober.mark_killed("u1", "i1");
        rt.instances[0].state = State::Exited;
        let mut killed = Results::default();
        killed.set_killed("i1");
        assert_eq!(sync(&rt), killed);
        assert!(prober.tasks.lock().unwrap().is_empty());
        rt.instances.clear();
        assert_eq!(sync(&rt), Results::default());
    }

    #[tokio::test]
    async fn exec_probes_use_the_exit_code_and_output() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let sandbox = rt
            .run_pod_sandbox(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "p".into(),
                    uid: "u".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = rt
            .create_container(&sandbox, config, cri::PodSandboxConfig::default())
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        let c = container(json!({}));
        let p = probe(json!({"exec": {"command": ["cat", "/tmp/healthy"]}}));
        assert_eq!(run(&rt, &p, &c, &id, None).await, Outcome::Success);
        rt.set_exec_result(
            &id,
            cri::ExecSyncResponse {
                stdout: Vec::new(),
                stderr: b"cat: can't open '/tmp/healthy': No such file or directory\n".to_vec(),
                exit_code: 1,
            },
        );
        assert_eq!(
            run(&rt, &p, &c, &id, None).await,
            Outcome::Failure("cat: can't open '/tmp/healthy': No such file or directory\n".into())
        );
        assert!(
            rt.calls()
                .contains(&"exec_sync p/c cat /tmp/healthy".to_string()),
            "{:?}",
            rt.calls()
        );
    }
}
