//! Simulated nodes, as KWOK does: register nodes, renew their Leases, and move the pods bound
//! to them through their lifecycle without running containers.

pub mod node;
pub mod pod;
mod run;

use std::collections::BTreeMap;

/// `keelson sim` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Kubeconfig of the cluster to join.
    #[arg(long)]
    pub kubeconfig: std::path::PathBuf,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// How many pods each node takes.
    #[arg(long, default_value_t = 110)]
    pub pods: u32,
    /// Extra node labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Node names are this prefix followed by 0, 1, ...
    #[arg(long, default_value = "sim-")]
    pub name_prefix: String,
}

/// Errors in `keelson sim`'s flags.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --labels entry {0:?}: want key=value")]
    Label(String),
}

/// Parses `k=v,k2=v2` (an empty string is no labels).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, Error> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(Error::Label(e.to_string())),
        })
        .collect()
}

/// Runs the simulated nodes until the process ends.
pub async fn run(client: kube::Client, args: SimArgs) -> anyhow::Result<()> {
    let labels = parse_labels(&args.labels)?;
    run::Sim::new(client, args, labels).run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: Result<&[(&str, &str)], &str>) {
        let got = parse_labels(input).map_err(|e| e.to_string());
        let want = want
            .map(|kv| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            })
            .map_err(str::to_string);
        assert_eq!(got, want, "{input:?}");
    }

    #[test]
    fn labels() {
        check("", Ok(&[]));
        check("zone=a", Ok(&[("zone", "a")]));
        check("zone=a, disk=ssd", Ok(&[("zone", "a"), ("disk", "ssd")]));
        check("empty=", Ok(&[("empty", "")]));
        check(
            "zone",
            Err("invalid --labels entry \"zone\": want key=value"),
        );
        check("=a", Err("invalid --labels entry \"=a\": want key=value"));
    }
}
