//! The keelson binary: every component of the cluster behind one command line.

mod client;
mod image;
mod leader;
mod node;
mod server;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keelson",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole single-node cluster: API server, controller manager, scheduler and a node
    /// agent on containerd, in one process.
    Up(up::UpArgs),
    /// Run the control plane: the Kubernetes API server and its store.
    Server(server::ServerArgs),
    /// Run a node agent that joins the cluster a kubeconfig names and runs its pods.
    Agent(up::AgentArgs),
    /// Work with the images of this node's containerd.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Run the controller manager alone, against the cluster a kubeconfig names.
    ControllerManager {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[command(flatten)]
        leader: leader::LeaderArgs,
        #[command(flatten)]
        pod_gc: server::PodGcArgs,
    },
    /// Run the scheduler alone, against the cluster a kubeconfig names.
    Scheduler {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[command(flatten)]
        leader: leader::LeaderArgs,
        #[command(flatten)]
        config: server::SchedulerConfigArgs,
    },
    /// Simulate nodes (like KWOK) for the cluster a kubeconfig names.
    Sim(keelson_sim::SimArgs),
    /// Print the version of keelson and of the Kubernetes API it serves.
    Version,
    /// Measure keelson against its performance goals.
    Bench(keelson_bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One TLS crypto provider for every client and server in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEELSON_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!(
                "keelson {} (Kubernetes {})",
                env!("CARGO_PKG_VERSION"),
                keelson_apiserver::KUBE_VERSION
            );
            Ok(())
        }
        Command::Up(args) => runtime()?.block_on(up::up(args)),
        Command::Server(args) => runtime()?.block_on(server::run(args)),
        Command::Agent(args) => runtime()?.block_on(up::agent(args)),
        Command::Image(cmd) => image::run(cmd),
        Command::Bench(args) => runtime()?.block_on(keelson_bench::run(args)),
        Command::ControllerManager {
            kubeconfig,
            leader,
            pod_gc,
        } => runtime()?.block_on(async move {
            let client = client::limited(&kubeconfig, server::CONTROLLER_MANAGER_IN_FLIGHT).await?;
            let identity = keelson_leader::random_identity();
            let mut options = keelson_controllers::Options::default();
            pod_gc.apply(&mut options);
            leader
                .run(
                    client.clone(),
                    server::CONTROLLER_MANAGER_LEASE,
                    identity,
                    || keelson_controllers::run(client.clone(), options.clone()),
                )
                .await
        }),
        Command::Scheduler {
            kubeconfig,
            leader,
            config,
        } => runtime()?.block_on(async move {
            let client = client::from_kubeconfig(&kubeconfig).await?;
            let identity = keelson_leader::random_identity();
            let options = config.options();
            leader
                .run(client.clone(), server::SCHEDULER_LEASE, identity, || {
                    keelson_scheduler::run(client.clone(), options.clone())
                })
                .await
        }),
        Command::Sim(args) => runtime()?.block_on(async move {
            let client = client::from_kubeconfig(&args.kubeconfig).await?;
            keelson_sim::run(client, args).await
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
