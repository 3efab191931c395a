//! The results of `keelson bench pods`: the human table, the goals (PASS/MISS) and the JSON line.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cripeer::CriPeer;
use crate::report::Goal;
use crate::stats::Summary;

/// The goals the figures are held to (issue 6).
pub const GOAL_P99_MS: f64 = 1000.0;
pub const GOAL_RATE: f64 = 5.0;
pub const GOAL_RATIO_VS_CTR: f64 = 1.5;
pub const GOAL_AGENT_RSS_MIB: f64 = 40.0;
pub const GOAL_START_TO_READY_S: f64 = 2.0;
pub const GOAL_IDLE_RSS_MIB: f64 = 64.0;
/// The pod count the goals are stated for.
pub const GOAL_PODS: usize = 100;

/// One phase of pod creations: each pod timed from its create request to the watch event that
/// shows it Running and Ready.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodPhase {
    /// Pods the phase was to create.
    pub pods: usize,
    /// Creates the API server accepted.
    pub created: usize,
    /// Pods seen Running and Ready.
    pub running: usize,
    pub summary: Summary,
    /// From the create request to the watch event showing the pod bound to the node.
    pub to_bound: Summary,
    /// From that event to the one showing it Running and Ready.
    pub bound_to_running: Summary,
    /// From the first create to the last pod Running (or to giving up).
    pub wall: Duration,
    /// From the first delete to the last pod gone.
    pub delete: Duration,
    pub first_error: Option<String>,
}

impl PodPhase {
    pub fn failed(&self) -> usize {
        self.pods - self.running.min(self.pods)
    }
}

/// `ctr run -d` of the same image, one container after another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CtrPeer {
    pub runs: usize,
    pub errors: usize,
    pub summary: Summary,
    pub first_error: Option<String>,
}

/// Everything `keelson bench pods` measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodsReport {
    pub cores: usize,
    pub pods: usize,
    /// The open-loop rate of the first phase, pods per second.
    pub rate: f64,
    /// Creates in flight at once in the full-speed phase.
    pub in_flight: usize,
    pub start_to_ready_s: f64,
    /// `keelson up` (one process: API server, controllers, scheduler, agent) when idle.
    pub idle_rss_mib: f64,
    pub idle_containerd_rss_mib: f64,
    /// `keelson up` with the pods of the first phase running.
    pub agent_rss_mib: f64,
    pub containerd_rss_mib: f64,
    pub shims_rss_mib: f64,
    pub shims: usize,
    pub slow: PodPhase,
    pub full: PodPhase,
    pub ctr: CtrPeer,
    /// The same pod straight through CRI on the same containerd, no control plane.
    pub cri: CriPeer,
    /// The 1-minute load average at the start and at the end (other work on the machine
    /// skews every figure).
    pub load_before: f64,
    pub load_after: f64,
}

impl PodsReport {
    /// p50 of the first phase over p50 of `ctr run`; None without both.
    pub fn ratio_vs_ctr(&self) -> Option<f64> {
        (self.ctr.summary.count > 0 && self.ctr.summary.p50_ms > 0.0 && self.slow.running > 0)
            .then(|| self.slow.summary.p50_ms / self.ctr.summary.p50_ms)
    }

    /// p50 of the first phase over p50 of the same pod through CRI alone; None without both.
    pub fn ratio_vs_cri(&self) -> Option<f64> {
        (self.cri.summary.count > 0 && self.cri.summary.p50_ms > 0.0 && self.slow.running > 0)
            .then(|| self.slow.summary.p50_ms / self.cri.summary.p50_ms)
    }

    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        let slow_note = if self.slow.failed() > 0 {
            Some(format!(
                "{} of {} pods never ran",
                self.slow.failed(),
                self.slow.pods
            ))
        } else if self.pods < GOAL_PODS {
            Some(format!("only {} pods", self.pods))
        } else if self.rate < GOAL_RATE {
            Some(format!(
                "at {} pods/s, below the goal's {GOAL_RATE}",
                self.rate
            ))
        } else {
            None
        };
        goals.push(Goal {
            key: "p99_5pps",
            figure: format!(
                "create→Running p99 {:.0} ms at {} pods/s",
                self.slow.summary.p99_ms, self.rate
            ),
            goal: format!("≤ {GOAL_P99_MS:.0} ms at {GOAL_RATE} pods/s"),
            pass: self.slow.summary.count > 0
                && self.slow.summary.p99_ms <= GOAL_P99_MS
                && slow_note.is_none(),
            note: slow_note,
        });
        let ratio = self.ratio_vs_ctr();
        let ratio_note = ratio
            .is_none()
            .then(|| "no ctr run or no pod succeeded".to_string());
        goals.push(Goal {
            key: "ratio_vs_ctr",
            figure: format!(
                "p50 {:.0} ms vs ctr run {:.0} ms: {:.2}×",
                self.slow.summary.p50_ms,
                self.ctr.summary.p50_ms,
                ratio.unwrap_or(0.0)
            ),
            goal: format!("≤ {GOAL_RATIO_VS_CTR}× ctr run"),
            pass: ratio.is_some_and(|r| r <= GOAL_RATIO_VS_CTR),
            note: ratio_note,
        });
        goals.push(Goal {
            key: "agent_rss",
            figure: format!(
                "keelson up RSS {:.1} MiB with {} pods",
                self.agent_rss_mib, self.slow.running
            ),
            goal: format!("≤ {GOAL_AGENT_RSS_MIB} MiB (agent alone)"),
            pass: self.agent_rss_mib > 0.0 && self.agent_rss_mib <= GOAL_AGENT_RSS_MIB,
            note: Some("control plane and agent in one process".to_string()),
        });
        goals.push(Goal {
            key: "start_to_ready",
            figure: format!("start → node Ready {:.2} s", self.start_to_ready_s),
            goal: format!("≤ {GOAL_START_TO_READY_S} s"),
            pass: self.start_to_ready_s > 0.0 && self.start_to_ready_s <= GOAL_START_TO_READY_S,
            note: None,
        });
        goals.push(Goal {
            key: "idle_rss",
            figure: format!("keelson up idle RSS {:.1} MiB", self.idle_rss_mib),
            goal: format!("≤ {GOAL_IDLE_RSS_MIB} MiB"),
            pass: self.idle_rss_mib > 0.0 && self.idle_rss_mib <= GOAL_IDLE_RSS_MIB,
            note: Some("containerd not included".to_string()),
        });
        goals
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>8} {:>7} {:>9} {:>9} {:>9} {:>8} {:>9}",
            "phase",
            "pods",
            "running",
            "failed",
            "p50 ms",
            "p99 ms",
            "max ms",
            "wall s",
            "delete s"
        );
        let rate_label = format!("{} pods/s", self.rate);
        let full_label = format!("full ({} at once)", self.in_flight);
        for (label, p) in [(rate_label, &self.slow), (full_label, &self.full)] {
            let s = &p.summary;
            let _ = writeln!(
                out,
                "{:<18} {:>6} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>9.2}",
                label,
                p.pods,
                p.running,
                p.failed(),
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                p.wall.as_secs_f64(),
                p.delete.as_secs_f64()
            );
        }
        let c = &self.ctr.summary;
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            "ctr run -d",
            self.ctr.runs,
            self.ctr.runs - self.ctr.errors.min(self.ctr.runs),
            self.ctr.errors,
            c.p50_ms,
            c.p99_ms,
            c.max_ms
        );
        let c = &self.cri.summary;
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            "CRI alone",
            self.cri.runs,
            self.cri.runs - self.cri.errors.min(self.cri.runs),
            self.cri.errors,
            c.p50_ms,
            c.p99_ms,
            c.max_ms
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "pods: one pause container each ({}), imagePullPolicy Never; timed from the create \
             request to the watch event showing the pod Running and Ready",
            keelson_oci::PAUSE_IMAGE
        );
        let _ = writeln!(
            out,
            "ctr run: the same image on the same containerd, one after another; it sets up no \
             pod sandbox and no CNI network, a pod does both"
        );
        let _ = writeln!(
            out,
            "CRI alone: the same pod (the agent's configs, same CNI network) through RunPodSandbox, \
             CreateContainer and StartContainer, one after another, no control plane: p50 \
             sandbox {:.0} ms, create {:.0} ms, start {:.0} ms; keelson's own part of the 5 pods/s \
             p50: {:.0} ms ({:.2}× CRI alone)",
            self.cri.sandbox.p50_ms,
            self.cri.create.p50_ms,
            self.cri.start.p50_ms,
            self.slow.summary.p50_ms - self.cri.summary.p50_ms,
            self.ratio_vs_cri().unwrap_or(0.0)
        );
        for (label, p) in [
            (rate_label_short(self.rate), &self.slow),
            ("full speed".to_string(), &self.full),
        ] {
            let _ = writeln!(
                out,
                "{label}: create → bound p50 {:.0} ms, p99 {:.0} ms; bound → Running p50 {:.0} ms, p99 {:.0} ms",
                p.to_bound.p50_ms,
                p.to_bound.p99_ms,
                p.bound_to_running.p50_ms,
                p.bound_to_running.p99_ms
            );
        }
        let _ = writeln!(
            out,
            "cores {}, load average {:.2} at the start, {:.2} at the end",
            self.cores, self.load_before, self.load_after
        );
        let _ = writeln!(
            out,
            "start → node Ready {:.2} s (from spawning keelson up)",
            self.start_to_ready_s
        );
        let _ = writeln!(
            out,
            "keelson up RSS (API server, controllers, scheduler and agent in ONE process): idle \
             {:.1} MiB, with {} pods {:.1} MiB",
            self.idle_rss_mib, self.slow.running, self.agent_rss_mib
        );
        let _ = writeln!(
            out,
            "containerd RSS (a separate process): idle {:.1} MiB, with {} pods {:.1} MiB; its {} \
             shims {:.1} MiB together",
            self.idle_containerd_rss_mib,
            self.slow.running,
            self.containerd_rss_mib,
            self.shims,
            self.shims_rss_mib
        );
        for (what, e) in [
            (rate_label_short(self.rate), &self.slow.first_error),
            ("full speed".to_string(), &self.full.first_error),
            ("ctr run".to_string(), &self.ctr.first_error),
            ("CRI alone".to_string(), &self.cri.first_error),
        ] {
            if let Some(e) = e {
                let _ = writeln!(out, "{what}: first error: {e}");
            }
        }
        let _ = writeln!(out);
        for g in self.goals() {
            out.push_str(&g.line());
        }
        out
    }

    /// The one-line JSON summary.
    pub fn json(&self) -> Value {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let mut obj = Map::new();
        let mut put = |k: &str, v: Value| {
            obj.insert(k.to_string(), v);
        };
        for (suffix, p) in [("5pps", &self.slow), ("full", &self.full)] {
            put(&format!("p50_ms_{suffix}"), json!(round(p.summary.p50_ms)));
            put(&format!("p99_ms_{suffix}"), json!(round(p.summary.p99_ms)));
            put(&format!("max_ms_{suffix}"), json!(round(p.summary.max_ms)));
            put(&format!("running_{suffix}"), json!(p.running));
            put(
                &format!("bound_p50_ms_{suffix}"),
                json!(round(p.to_bound.p50_ms)),
            );
            put(
                &format!("bound_to_running_p50_ms_{suffix}"),
                json!(round(p.bound_to_running.p50_ms)),
            );
            put(&format!("failed_{suffix}"), json!(p.failed()));
            put(
                &format!("wall_s_{suffix}"),
                json!(round(p.wall.as_secs_f64())),
            );
            put(
                &format!("delete_s_{suffix}"),
                json!(round(p.delete.as_secs_f64())),
            );
        }
        put("ctr_run_ms", json!(round(self.ctr.summary.p50_ms)));
        put("ctr_run_p99_ms", json!(round(self.ctr.summary.p99_ms)));
        put("ctr_runs", json!(self.ctr.runs));
        put("ctr_errors", json!(self.ctr.errors));
        put("ratio_vs_ctr", json!(self.ratio_vs_ctr().map(round)));
        put("cri_run_ms", json!(round(self.cri.summary.p50_ms)));
        put("cri_run_p99_ms", json!(round(self.cri.summary.p99_ms)));
        put("cri_sandbox_ms", json!(round(self.cri.sandbox.p50_ms)));
        put("cri_create_ms", json!(round(self.cri.create.p50_ms)));
        put("cri_start_ms", json!(round(self.cri.start.p50_ms)));
        put("cri_runs", json!(self.cri.runs));
        put("cri_errors", json!(self.cri.errors));
        put("ratio_vs_cri", json!(self.ratio_vs_cri().map(round)));
        put("agent_rss_mib", json!(round(self.agent_rss_mib)));
        put("containerd_rss_mib", json!(round(self.containerd_rss_mib)));
        put("shims_rss_mib", json!(round(self.shims_rss_mib)));
        put("shims", json!(self.shims));
        put("start_to_ready_s", json!(round(self.start_to_ready_s)));
        put("idle_rss_mib", json!(round(self.idle_rss_mib)));
        put(
            "idle_containerd_rss_mib",
            json!(round(self.idle_containerd_rss_mib)),
        );
        put("pods", json!(self.pods));
        put("rate", json!(round(self.rate)));
        put("in_flight", json!(self.in_flight));
        put("cores", json!(self.cores));
        put("load_before", json!(round(self.load_before)));
        put("load_after", json!(round(self.load_after)));
        let goals: Map<String, Value> = self
            .goals()
            .into_iter()
            .map(|g| (g.key.to_string(), json!(g.pass)))
            .collect();
        put("goals", Value::Object(goals));
        Value::Object(obj)
    }
}

fn rate_label_short(rate: f64) -> String {
    format!("{rate} pods/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p50: f64, p99: f64) -> Summary {
        Summary {
            count: 100,
            min_ms: p50 / 2.0,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: p99 * 2.0,
        }
    }

    fn phase(p50: f64, p99: f64) -> PodPhase {
        PodPhase {
            pods: 100,
            created: 100,
            running: 100,
            summary: summary(p50, p99),
            to_bound: summary(p50 / 10.0, p99 / 10.0),
            bound_to_running: summary(p50 * 0.9, p99 * 0.9),
            wall: Duration::from_secs(20),
            delete: Duration::from_secs(3),
            first_error: None,
        }
    }

    /// A report that meets every goal.
    fn good() -> PodsReport {
        PodsReport {
            cores: 2,
            pods: 100,
            rate: 5.0,
            in_flight: 16,
            start_to_ready_s: 0.9,
            idle_rss_mib: 40.0,
            idle_containerd_rss_mib: 30.0,
            agent_rss_mib: 39.0,
            containerd_rss_mib: 50.0,
            shims_rss_mib: 700.0,
            shims: 100,
            slow: phase(150.0, 400.0),
            full: phase(900.0, 2500.0),
            ctr: CtrPeer {
                runs: 20,
                errors: 0,
                summary: summary(120.0, 150.0),
                first_error: None,
            },
            cri: CriPeer {
                runs: 20,
                errors: 0,
                summary: summary(125.0, 160.0),
                sandbox: summary(70.0, 90.0),
                create: summary(10.0, 20.0),
                start: summary(45.0, 50.0),
                first_error: None,
            },
            load_before: 0.5,
            load_after: 1.25,
        }
    }

    const KEYS: [&str; 5] = [
        "p99_5pps",
        "ratio_vs_ctr",
        "agent_rss",
        "start_to_ready",
        "idle_rss",
    ];

    #[test]
    fn goals() {
        fn check(change: fn(&mut PodsReport), want: [bool; 5]) {
            let mut r = good();
            change(&mut r);
            let got: Vec<_> = r.goals().into_iter().map(|g| (g.key, g.pass)).collect();
            let want: Vec<_> = KEYS.into_iter().zip(want).collect();
            assert_eq!(got, want);
        }
        check(|_| {}, [true, true, true, true, true]);
        check(
            |r| r.slow.summary.p99_ms = 1001.0,
            [false, true, true, true, true],
        );
        check(|r| r.slow.running = 99, [false, true, true, true, true]);
        check(|r| r.pods = 10, [false, true, true, true, true]);
        check(|r| r.rate = 1.0, [false, true, true, true, true]);
        check(
            |r| r.slow.summary.p50_ms = 181.0,
            [true, false, true, true, true],
        );
        check(
            |r| r.ctr.summary = Summary::default(),
            [true, false, true, true, true],
        );
        check(|r| r.agent_rss_mib = 41.0, [true, true, false, true, true]);
        check(
            |r| r.start_to_ready_s = 2.1,
            [true, true, true, false, true],
        );
        check(|r| r.idle_rss_mib = 65.0, [true, true, true, true, false]);
        // The full-speed phase has no goal of its own.
        check(|r| r.full.running = 0, [true, true, true, true, true]);
    }

    #[test]
    fn json_has_the_headline_figures() {
        let j = good().json();
        for (key, want) in [
            ("p99_ms_5pps", json!(400.0)),
            ("p50_ms_5pps", json!(150.0)),
            ("p50_ms_full", json!(900.0)),
            ("p99_ms_full", json!(2500.0)),
            ("wall_s_full", json!(20.0)),
            ("ctr_run_ms", json!(120.0)),
            ("ratio_vs_ctr", json!(1.25)),
            ("cri_run_ms", json!(125.0)),
            ("cri_sandbox_ms", json!(70.0)),
            ("cri_start_ms", json!(45.0)),
            ("ratio_vs_cri", json!(1.2)),
            ("agent_rss_mib", json!(39.0)),
            ("start_to_ready_s", json!(0.9)),
            ("idle_rss_mib", json!(40.0)),
            ("containerd_rss_mib", json!(50.0)),
            ("cores", json!(2)),
            ("bound_p50_ms_5pps", json!(15.0)),
            ("load_after", json!(1.25)),
            ("pods", json!(100)),
        ] {
            assert_eq!(j[key], want, "{key}");
        }
        assert_eq!(
            j["goals"],
            json!({"p99_5pps": true, "ratio_vs_ctr": true, "agent_rss": true,
                   "start_to_ready": true, "idle_rss": true})
        );
        assert!(!j.to_string().contains('\n'));

        let mut none = good();
        none.ctr = CtrPeer::default();
        none.cri = CriPeer::default();
        assert_eq!(none.json()["ratio_vs_ctr"], Value::Null);
        assert_eq!(none.json()["ratio_vs_cri"], Value::Null);
    }

    #[test]
    fn table_rows() {
        let table = good().table();
        let row = |start: &str| -> Vec<String> {
            table
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} row in\n{table}"))
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        assert_eq!(
            row("5 pods/s"),
            [
                "5", "pods/s", "100", "100", "0", "150.0", "400.0", "800.0", "20.00", "3.00"
            ]
        );
        assert_eq!(row("full")[4..6], ["100".to_string(), "100".to_string()]);
        assert_eq!(
            row("ctr run -d"),
            [
                "ctr", "run", "-d", "20", "20", "0", "120.0", "150.0", "300.0"
            ]
        );
        assert_eq!(
            row("CRI alone"),
            ["CRI", "alone", "20", "20", "0", "125.0", "160.0", "320.0"]
        );
        assert!(
            table.contains("keelson's own part of the 5 pods/s p50: 25 ms (1.20× CRI alone)"),
            "{table}"
        );
        assert!(table.contains("in ONE process"), "{table}");
        assert!(table.contains("no CNI network"), "{table}");
        assert!(table.contains("PASS  start → node Ready 0.90 s"), "{table}");
        assert!(
            table.contains("cores 2, load average 0.50 at the start, 1.25 at the end"),
            "{table}"
        );
        assert!(
            table.contains(
                "5 pods/s: create → bound p50 15 ms, p99 40 ms; bound → Running p50 135 ms"
            ),
            "{table}"
        );
    }
}
