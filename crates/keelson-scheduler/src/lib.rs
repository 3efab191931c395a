//! The scheduler: a queue of pending pods, a framework of filter and score plugins, and a
//! binder that writes each decision through `pods/binding`.
//!
//! Data flow: watch events (pods, nodes) update the [`cache::Cache`] and the
//! [`queue::Queue`]; the loop pops pods, runs one [`schedule::schedule`] cycle each (pure, over
//! the cache), assumes the pod on the chosen node, and hands the bind to a task; failures
//! write the PodScheduled condition and a FailedScheduling event.

pub mod cache;
pub mod config;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule;
mod scheduler;
pub mod terms;
pub mod workloads;
mod writer;

/// The scheduler name pods ask for by default (`spec.schedulerName`).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// How the scheduler is configured.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The profiles (`--config`; default: one profile, `default-scheduler`).
    pub config: config::Configuration,
}

/// Schedules pods until the process ends.
pub async fn run(client: kube::Client, options: Options) -> anyhow::Result<()> {
    scheduler::Scheduler::new(client, options).run().await
}
