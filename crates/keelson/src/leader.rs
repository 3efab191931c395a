//! Leader-election flags of the controller manager and the scheduler (upstream's names and
//! defaults), and running a component only while it leads.

use std::future::Future;
use std::time::Duration;

use crate::server::parse_seconds;

#[derive(clap::Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Hold a Lease in kube-system before acting, so several copies can run side by side and
    /// only one acts (`--leader-elect=false` to act at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long the others wait after the leader's last renewal they saw.
    #[arg(long, default_value = "15s", value_parser = parse_seconds)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = parse_seconds)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = parse_seconds)]
    pub leader_elect_retry_period: Duration,
}

impl Default for LeaderArgs {
    fn default() -> Self {
        LeaderArgs {
            leader_elect: true,
            leader_elect_lease_duration: Duration::from_secs(15),
            leader_elect_renew_deadline: Duration::from_secs(10),
            leader_elect_retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderArgs {
    fn config(&self, lease: &str, identity: String) -> keelson_leader::Config {
        keelson_leader::Config {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            ..keelson_leader::Config::new(lease, identity)
        }
    }

    /// Runs `work` now, or while this process holds the `lease` Lease.
    pub async fn run<F, Fut, T>(
        &self,
        client: kube::Client,
        lease: &str,
        identity: String,
        mut work: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        if self.leader_elect {
            keelson_leader::run(client, self.config(lease, identity), work).await
        } else {
            work().await
        }
    }
}
