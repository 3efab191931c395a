//! The container runtime side of a node: the CRI operations the agent uses (a trait, with a
//! client for containerd and an in-memory fake), the containerd keelson starts and owns, and
//! the CNI network config it gives containerd.

pub mod client;
pub mod cni;
pub mod containerd;
pub mod fake;
pub mod runtime;

pub use client::{CriClient, connect, connect_lazy};
pub use cni::{render_conflist, write_conflist};
pub use containerd::{
    Containerd, ContainerdConfig, find_binary, find_cni_bin_dir, render_registry_hosts,
    render_registry_hosts_offline, write_registry_mirrors, write_registry_mirrors_offline,
};
pub use fake::FakeRuntime;
pub use k8s_cri::v1 as cri;
pub use runtime::{Error, Runtime};
