//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! does: one holder at a time runs the work; the others watch the Lease and take over once
//! it has gone unrenewed for its duration, as they observed it (never by comparing clocks).

mod decide;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};

pub use decide::{Action, Observed, decide};

type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the leader identity {path}: {source}")]
    Identity {
        path: String,
        source: std::io::Error,
    },
}

/// Where the Lease lives and how it is kept (upstream's flags and defaults).
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// Who this process is, as written in `holderIdentity`.
    pub identity: String,
    /// `--leader-elect-lease-duration` (15 s): how long others wait after the last renewal
    /// they saw.
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline` (10 s): how long the leader keeps trying to renew
    /// before it gives up leading.
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period` (2 s): how often candidates try and leaders renew.
    pub retry_period: Duration,
}

impl Config {
    /// A Lease in kube-system named `name`, with upstream's timings.
    pub fn new(name: &str, identity: String) -> Config {
        Config {
            namespace: "kube-system".into(),
            name: name.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A fresh identity, `<hostname>_<uuid>` as upstream's components make.
pub fn random_identity() -> String {
    format!("{}_{}", hostname(), uuid::Uuid::new_v4())
}

/// An identity kept in `dir` (made on first use), so a restarted process recognises the
/// Lease it held and takes it back at once instead of waiting for it to expire.
pub fn stable_identity(dir: &Path) -> Result<String> {
    let path = dir.join("leader-identity");
    let err = |source| Error::Identity {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => write_identity(&path).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_identity(&path).map_err(err),
        Err(e) => Err(err(e)),
    }
}

fn write_identity(path: &Path) -> std::io::Result<String> {
    let id = random_identity();
    std::fs::write(path, format!("{id}\n"))?;
    Ok(id)
}

/// Runs `work` while this process holds the Lease. When leadership is lost the work is
/// dropped (cancelled) and the campaign starts again; returns what the work returns when it
/// ends by itself.
pub async fn run<F, Fut, T>(client: Client, cfg: Config, mut work: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut seen: Option<Observed> = None;
    loop {
        // Campaign.
        loop {
            if try_once(&api, &cfg, &mut seen).await {
                break;
            }
            tokio::time::sleep(cfg.retry_period).await;
        }
        tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
        let mut last_renewal = Instant::now();
        let job = work();
        tokio::pin!(job);
        loop {
            tokio::select! {
                out = &mut job => return out,
                () = tokio::time::sleep(cfg.retry_period) => {}
            }
            if try_once(&api, &cfg, &mut seen).await {
                last_renewal = Instant::now();
            } else if last_renewal.elapsed() >= cfg.renew_deadline
                || seen.as_ref().is_some_and(|s| s.holder != cfg.identity)
            {
                tracing::warn!(lease = %cfg.name, "lost leadership; stopping and campaigning again");
                break;
            }
        }
    }
}

/// One attempt to acquire or renew; true when this process holds the Lease afterwards.
async fn try_once(api: &Api<Lease>, cfg: &Config, seen: &mut Option<Observed>) -> bool {
    let current = match api.get_opt(&cfg.name).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(lease = %cfg.name, error = %e, "reading the lease");
            return false;
        }
    };
    let now = Instant::now();
    let action = decide(cfg, current.as_ref(), seen, now, jiff::Timestamp::now());
    let result = match action {
        Action::Wait => return false,
        Action::Create(lease) => api.create(&PostParams::default(), &lease).await,
        Action::Update(lease) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
    };
    match result {
        Ok(lease) => {
            *seen = Some(Observed::of(&lease, now));
            true
        }
        Err(e) => {
            // Someone else wrote first (409) or the apiserver is away: try again next period.
            tracing::debug!(lease = %cfg.name, error = %e, "writing the lease");
            false
        }
    }
}
