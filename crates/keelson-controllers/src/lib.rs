//! The controller manager: workload, garbage-collection, namespace, endpoint and node
//! controllers, each a level-triggered kube-runtime controller talking to the apiserver.

pub mod backoff;
pub mod clock;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod pod;
pub mod podgc;
pub mod replicaset;
pub mod selector;
pub mod serviceaccount;
pub mod servicelb;
pub mod volume;

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;

use crate::informer::Informer;

/// What the controller manager runs and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long after a namespace's deletion starts its content is deleted (upstream: 5 s,
    /// so writes racing the deletion land first and are cleaned up too).
    pub namespace_deletion_grace: Duration,
    /// The delay before a Job retries its first failed pod, doubling per failure up to six
    /// minutes (upstream: 10 s).
    pub job_backoff_base: Duration,
    /// The time CronJobs are scheduled by (real time by default; tests drive their own).
    pub clock: clock::Clock,
    /// The range node pod CIDRs are carved from.
    pub cluster_cidr: String,
    /// How nodes whose agents go quiet are judged.
    pub node_lifecycle: nodelifecycle::Settings,
    /// Where LoadBalancer Services get their external IP: a CIDR pool, or (none) the Ready
    /// nodes' InternalIPs as k3s's ServiceLB does.
    pub service_lb_pool: Option<String>,
    /// The PersistentVolume controllers and the local-path provisioner.
    pub storage: volume::Settings,
    /// The pod garbage collector (terminated-pod threshold, period, orphan quarantine).
    pub pod_gc: podgc::Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace_deletion_grace: Duration::from_secs(5),
            job_backoff_base: Duration::from_secs(10),
            clock: clock::Clock::real(),
            cluster_cidr: "10.42.0.0/16".into(),
            node_lifecycle: nodelifecycle::Settings::default(),
            service_lb_pool: None,
            storage: volume::Settings::default(),
            pod_gc: podgc::Settings::default(),
        }
    }
}

/// Runs every controller until the process ends.
pub async fn run(client: kube::Client, options: Options) -> anyhow::Result<()> {
    let pods = Informer::<Pod>::new(Api::all(client.clone()));
    let replicasets = Informer::<ReplicaSet>::new(Api::all(client.clone()));
    let rcs = Informer::<ReplicationController>::new(Api::all(client.clone()));
    let deployments = Informer::<Deployment>::new(Api::all(client.clone()));
    let namespaces = Informer::<Namespace>::keeping_annotations(Api::all(client.clone()));
    let accounts = Informer::<ServiceAccount>::new(Api::all(client.clone()));
    let daemonsets = Informer::<DaemonSet>::new(Api::all(client.clone()));
    let nodes = Informer::<Node>::new(Api::all(client.clone()));
    let revisions = Informer::<ControllerRevision>::new(Api::all(client.clone()));
    let jobs = Informer::<Job>::new(Api::all(client.clone()));
    let cronjobs = Informer::<CronJob>::new(Api::all(client.clone()));
    let services = Informer::<Service>::new(Api::all(client.clone()));
    let endpoints = Informer::<Endpoints>::keeping_annotations(Api::all(client.clone()));
    let slices = Informer::<EndpointSlice>::keeping_annotations(Api::all(client.clone()));
    let leases = Informer::<Lease>::new(Api::namespaced(client.clone(), "kube-node-lease"));
    let claims = Informer::<PersistentVolumeClaim>::keeping_annotations(Api::all(client.clone()));
    let volumes = Informer::<PersistentVolume>::keeping_annotations(Api::all(client.clone()));
    let classes = Informer::<StorageClass>::new(Api::all(client.clone()));
    // Controllers subscribe when built, before the informers start.
    let controllers: Vec<BoxFuture<'static, ()>> = vec![
        replicaset::run(client.clone(), &pods, &replicasets).boxed(),
        replicaset::run(client.clone(), &pods, &rcs).boxed(),
        deployment::run(client.clone(), &deployments, &replicasets).boxed(),
        namespace::run(
            client.clone(),
            &namespaces,
            options.namespace_deletion_grace,
        )
        .boxed(),
        serviceaccount::run(client.clone(), &namespaces, &accounts).boxed(),
        endpoints::run(client.clone(), &services, &pods, &endpoints, &slices).boxed(),
        daemonset::run(client.clone(), &daemonsets, &pods, &nodes, &revisions).boxed(),
        job::run(client.clone(), &jobs, &pods, options.job_backoff_base).boxed(),
        cronjob::run(client.clone(), &cronjobs, &jobs, options.clock.clone()).boxed(),
        gc::run(client.clone()).boxed(),
        podgc::run(client.clone(), &pods, &nodes, options.pod_gc.clone()).boxed(),
        nodeipam::run(client.clone(), &nodes, options.cluster_cidr.clone()).boxed(),
        servicelb::run(
            client.clone(),
            &services,
            &nodes,
            options.service_lb_pool.clone(),
        )
        .boxed(),
        nodelifecycle::run(
            client.clone(),
            &nodes,
            &pods,
            &leases,
            options.node_lifecycle.clone(),
            options.clock.clone(),
        )
        .boxed(),
        volume::run(
            client.clone(),
            volume::Informers {
                claims: &claims,
                volumes: &volumes,
                classes: &classes,
                pods: &pods,
                nodes: &nodes,
            },
            options.storage.clone(),
        )
        .boxed(),
    ];
    pods.start();
    replicasets.start();
    rcs.start();
    deployments.start();
    namespaces.start();
    accounts.start();
    daemonsets.start();
    nodes.start();
    revisions.start();
    jobs.start();
    cronjobs.start();
    services.start();
    endpoints.start();
    slices.start();
    leases.start();
    claims.start();
    volumes.start();
    classes.start();
    // One waiter per store: a store's readiness signal wakes only one task.
    pods.wait_ready().await;
    replicasets.wait_ready().await;
    rcs.wait_ready().await;
    deployments.wait_ready().await;
    namespaces.wait_ready().await;
    accounts.wait_ready().await;
    daemonsets.wait_ready().await;
    nodes.wait_ready().await;
    revisions.wait_ready().await;
    jobs.wait_ready().await;
    cronjobs.wait_ready().await;
    services.wait_ready().await;
    endpoints.wait_ready().await;
    slices.wait_ready().await;
    leases.wait_ready().await;
    claims.wait_ready().await;
    volumes.wait_ready().await;
    classes.wait_ready().await;
    tracing::debug!("caches filled; starting controllers");
    futures::future::join_all(controllers).await;
    std::future::pending().await
}
