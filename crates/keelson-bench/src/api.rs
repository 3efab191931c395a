//! `keelson bench api`: starts the server and runs the phases in order, printing progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::load::{self, PODS};
use crate::report::{Report, Row};
use crate::server::{ServerProcess, Store};
use crate::stats::{Phase, Summary};
use crate::watch;

/// How long the server idles after start-up before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Closed-loop GET clients and how long they run.
const GET_CLIENTS: usize = 4;
const GET_FOR: Duration = Duration::from_secs(2);
/// Concurrent creates topping the namespace up for the LIST.
const TOP_UP_WORKERS: usize = 32;
/// LISTs timed.
const LISTS: usize = 10;
/// Updates of the watched ConfigMap, and their rate.
const WATCH_UPDATES: usize = 100;
const WATCH_UPDATES_PER_SECOND: f64 = 50.0;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub rate: f64,
    pub seconds: u32,
    pub list_pods: usize,
    pub watchers: usize,
    pub store: Store,
    pub keep: bool,
}

/// Progress lines on stderr, stamped with the time since the bench started.
struct Progress(Instant);

impl Progress {
    fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }

    fn phase(&self, verb: &str, phase: &Phase) {
        let s = phase.summary();
        self.say(format_args!(
            "{verb}: {} ok, {} failed, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.count,
            phase.errors,
            phase.rate(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms
        ));
        if let Some(e) = &phase.first_error {
            self.say(format_args!("{verb}: FAILURES, the first: {e}"));
        }
    }
}

/// Starts the server, measures, stops the server (also when measuring fails).
pub async fn bench(opts: &Options) -> anyhow::Result<Report> {
    let progress = Progress(Instant::now());
    progress.say(format_args!(
        "starting keelson server (store {})",
        opts.store.as_str()
    ));
    let server = ServerProcess::start(opts.store, opts.keep)
        .await
        .context("starting the server under test")?;
    progress.say(format_args!(
        "server ready at {} (pid {})",
        server.base,
        server.pid()
    ));
    let result = measure(&server, opts, &progress).await;
    let result =
        result.with_context(|| format!("the server log ends with:\n{}", server.log_tail()));
    if opts.keep {
        progress.say(format_args!(
            "kept the server's data in {}",
            server.dir().display()
        ));
    }
    server.stop().await;
    result
}

async fn measure(
    server: &ServerProcess,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let mut report = Report {
        cores,
        store: opts.store.as_str(),
        target_rate: opts.rate,
        ..Report::default()
    };
    tokio::time::sleep(SETTLE).await;
    report.idle_rss_mib = server.rss_mib()?;
    progress.say(format_args!(
        "idle RSS {:.1} MiB ({cores} cores)",
        report.idle_rss_mib
    ));

    let api = server.connect();
    let total = (opts.rate * f64::from(opts.seconds)).round() as usize;
    let names: Vec<String> = (0..total).map(|i| format!("bench-w-{i}")).collect();
    progress.say(format_args!(
        "create: {total} pods open loop at {:.0}/s",
        opts.rate
    ));
    let creates = load::create_open(&api, opts.rate, &names, "write").await;
    progress.phase("create", &creates);

    let updates = load::prepare_updates(&api, "write").await?;
    progress.say(format_args!(
        "update: {} pods open loop at {:.0}/s",
        updates.len(),
        opts.rate
    ));
    let updated = load::update_open(&api, opts.rate, &updates).await;
    progress.phase("update", &updated);
    let mut mutating = creates.clone();
    mutating.merge(updated.clone());
    mutating.elapsed = creates.elapsed + updated.elapsed;
    report.mutating = mutating.summary();
    report.mutating_rate = mutating.rate();
    report.mutating_errors = mutating.errors;

    let paths: Arc<Vec<String>> = Arc::new(updates.iter().map(|(path, _)| path.clone()).collect());
    progress.say(format_args!(
        "get: {GET_CLIENTS} closed-loop clients for {} s",
        GET_FOR.as_secs()
    ));
    let gets = load::get_closed(&api, GET_CLIENTS, GET_FOR, paths).await;
    progress.phase("get", &gets);

    progress.say(format_args!(
        "list: topping default up to {} pods",
        opts.list_pods
    ));
    let (tried, topped) = load::top_up(&api, opts.list_pods, "bench-l", TOP_UP_WORKERS).await?;
    progress.say(format_args!(
        "list: created {} of {tried} pods at {:.0}/s",
        topped.latencies.len(),
        topped.rate()
    ));
    if topped.errors > 0 {
        progress.phase("top-up", &topped);
    }
    let want = load::count(&api, PODS).await?;
    anyhow::ensure!(
        want == opts.list_pods,
        "the namespace default holds {want} pods, not the {} to list",
        opts.list_pods
    );
    let lists = load::list_timed(&api, LISTS, want).await?;
    report.list = lists.summary();
    report.list_pods = want;
    progress.say(format_args!(
        "list: {LISTS} LISTs of {want} pods, p50 {:.1} ms, min {:.1} ms",
        report.list.p50_ms, report.list.min_ms
    ));

    progress.say(format_args!(
        "watch: {} watchers over {} connections, {WATCH_UPDATES} updates at {WATCH_UPDATES_PER_SECOND}/s",
        opts.watchers,
        opts.watchers.div_ceil(watch::STREAMS_PER_CONNECTION).max(1)
    ));
    let fan = watch::fan_out(
        &api,
        || server.connect(),
        opts.watchers,
        WATCH_UPDATES,
        WATCH_UPDATES_PER_SECOND,
    )
    .await?;
    report.watch_summary = Summary::of(&fan.latencies);
    progress.say(format_args!(
        "watch: {} of {} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        fan.delivered,
        fan.expected,
        report.watch_summary.p50_ms,
        report.watch_summary.p99_ms,
        report.watch_summary.max_ms
    ));
    let puts = Summary::of(&fan.put_latencies);
    progress.say(format_args!(
        "watch: the updates themselves (PUT) took p50 {:.1} ms, p99 {:.1} ms",
        puts.p50_ms, puts.p99_ms
    ));
    if fan.delivered < fan.expected {
        progress.say(format_args!(
            "watch: MISSING DELIVERIES: {} events never arrived",
            fan.expected - fan.delivered
        ));
    }
    if let Some(e) = &fan.first_error {
        progress.say(format_args!(
            "watch: FAILURES ({} watchers, {} updates), the first: {e}",
            fan.watcher_errors, fan.update_errors
        ));
    }
    report.watch = fan;

    report.rss_after_load_mib = server.rss_mib()?;
    report.peak_rss_mib = server.peak_rss_mib()?;
    report.rows = vec![
        Row::of("create", &creates),
        Row::of("update", &updated),
        Row::of("get", &gets),
        Row::of("list", &lists),
    ];
    Ok(report)
}
