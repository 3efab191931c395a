//! Benchmarks of keelson against its performance goals (`keelson bench ...`).

pub mod api;
pub mod client;
pub mod cluster;
pub mod controllers;
pub mod cripeer;
pub mod load;
pub mod pods;
pub mod pods_report;
pub mod podwatch;
pub mod proxy;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod stats;
pub mod watch;

pub use server::Store;

/// `keelson bench ...`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// The API server: write latency, LIST of 10,000 pods, watch fan-out, idle memory.
    Api {
        /// Writes per second of the open-loop create and update phases.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Seconds each of the create and update phases lasts.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        seconds: u32,
        /// Pods in the namespace when it is LISTed.
        #[arg(long, default_value_t = 10_000)]
        list_pods: usize,
        /// Concurrent watches of the watch fan-out phase.
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        /// The store of the server under test.
        #[arg(long, value_enum, default_value = "sqlite")]
        store: Store,
        /// Also print one JSON object with the figures as the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Keep the server's temporary data directory (its store, PKI and log).
        #[arg(long)]
        keep: bool,
    },
    /// The controller manager: a Deployment created on simulated nodes until all its replicas
    /// are available, then rolled to a new image; the controller manager's memory.
    Controllers {
        /// Simulated nodes (`keelson sim`).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        nodes: u64,
        /// Replicas of the Deployment.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        replicas: u32,
        /// The store of the server.
        #[arg(long, value_enum, default_value = "sqlite")]
        store: Store,
        /// Also print one JSON object with the figures as the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Keep the server's temporary data directory (its store, PKI and logs).
        #[arg(long)]
        keep: bool,
    },
    /// The scheduler (its own process): Node objects, pods placed first, then measured pods
    /// created as fast as the API takes them; pods/s from the watch events showing them bound.
    Scheduler {
        /// Nodes (Node objects, no kubelets).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
        nodes: u64,
        /// Pods placed before the measurement.
        #[arg(long, default_value_t = 1000)]
        init_pods: u64,
        /// Pods measured.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        pods: u64,
        /// The kind of pods.
        #[arg(long, value_enum, default_value = "basic")]
        workload: scheduler::Workload,
        /// Creates in flight at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
        in_flight: u64,
        /// The store of the server.
        #[arg(long, value_enum, default_value = "sqlite")]
        store: Store,
        /// Also print one JSON object with the figures as the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Keep the server's temporary data directory (its store, PKI and logs).
        #[arg(long)]
        keep: bool,
    },
    /// Pods on one node (`keelson up` on containerd): create → Running at a fixed rate and at
    /// full speed, side by side with `ctr run`; start → node Ready; memory. Needs root.
    Pods {
        /// Pods created in each of the two phases.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=250))]
        pods: u32,
        /// Pods per second of the open-loop phase.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Creates in flight at once in the full-speed phase.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
        in_flight: u32,
        /// Also print one JSON object with the figures as the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Keep the cluster's temporary data directory (its store, PKI, containerd state, log).
        #[arg(long)]
        keep: bool,
    },
    /// The service proxy in network namespaces of its own: full sync of 10,000 Services
    /// (50,000 endpoints), endpoint change → rule in force, and requests per second through
    /// a ClusterIP against straight to the pod IP. Needs root, `ip` and `nft`.
    Proxy {
        /// Services (one port each).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
        services: u32,
        /// Ready endpoints per Service.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        endpoints: u32,
        /// Single endpoint changes applied one by one.
        #[arg(long, default_value_t = 200)]
        changes: u32,
        /// Seconds of each throughput run.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        seconds: u32,
        /// Keep-alive connections of the load generator.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
        connections: u32,
        /// Also print one JSON object with the figures as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        What::Api {
            rate,
            seconds,
            list_pods,
            watchers,
            store,
            json,
            keep,
        } => {
            let opts = api::Options {
                rate: f64::from(rate),
                seconds,
                list_pods,
                watchers,
                store,
                keep,
            };
            let report = until_interrupted(api::bench(&opts), "the server was stopped").await?;
            print(report.table(), json.then(|| report.json()));
            Ok(())
        }
        What::Controllers {
            nodes,
            replicas,
            store,
            json,
            keep,
        } => {
            let opts = controllers::Options {
                nodes: nodes as usize,
                replicas,
                store,
                keep,
            };
            let report =
                until_interrupted(controllers::bench(&opts), "the cluster was stopped").await?;
            print(report.table(), json.then(|| report.json()));
            Ok(())
        }
        What::Scheduler {
            nodes,
            init_pods,
            pods,
            workload,
            in_flight,
            store,
            json,
            keep,
        } => {
            let opts = scheduler::Options {
                nodes: nodes as usize,
                init_pods: init_pods as usize,
                pods: pods as usize,
                workload,
                in_flight: in_flight as usize,
                store,
                keep,
            };
            let report =
                until_interrupted(scheduler::bench(&opts), "the server was stopped").await?;
            print(report.table(), json.then(|| report.json()));
            Ok(())
        }
        What::Pods {
            pods,
            rate,
            in_flight,
            json,
            keep,
        } => {
            let opts = pods::Options {
                pods: pods as usize,
                rate: f64::from(rate),
                in_flight: in_flight as usize,
                keep,
            };
            // On Ctrl-C the bench future is dropped, and with it the cluster: dropping it
            // stops `keelson up` with SIGTERM, which removes its pods and stops its containerd.
            let report = until_interrupted(pods::bench(&opts), "keelson up was stopped").await?;
            print(report.table(), json.then(|| report.json()));
            Ok(())
        }
        What::Proxy {
            services,
            endpoints,
            changes,
            seconds,
            connections,
            json,
        } => {
            let opts = proxy::Options {
                services,
                endpoints_per_service: endpoints,
                changes,
                seconds,
                connections,
            };
            let report =
                until_interrupted(proxy::bench(&opts), "its network namespaces are removed")
                    .await?;
            print(report.table(), json.then(|| report.json()));
            Ok(())
        }
    }
}

/// Runs a bench until it ends or Ctrl-C, which drops it (and with it what it started).
async fn until_interrupted<R>(
    bench: impl Future<Output = anyhow::Result<R>>,
    stopped: &str,
) -> anyhow::Result<R> {
    tokio::select! {
        r = bench => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; {stopped}"),
    }
}

/// Prints a report's table, and its JSON object as the last line when asked.
fn print(table: String, json: Option<serde_json::Value>) {
    print!("{table}");
    if let Some(json) = json {
        println!("{json}");
    }
}
