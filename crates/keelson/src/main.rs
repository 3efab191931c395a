//! The keelson binary: every component of the cluster behind one command line.

mod server;

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
    /// Run the control plane: the Kubernetes API server and its store.
    Server(server::ServerArgs),
    /// Print the version of keelson and of the Kubernetes API it serves.
    Version,
    /// Measure keelson against its performance goals.
    Bench(keelson_bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
        Command::Server(args) => runtime()?.block_on(server::run(args)),
        Command::Bench(args) => runtime()?.block_on(keelson_bench::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
