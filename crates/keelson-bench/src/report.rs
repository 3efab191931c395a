//! The results of `keelson bench api`: the human table, the goals (PASS/MISS) and the JSON line.

use std::fmt::Write;

use serde_json::{Map, Value, json};

use crate::stats::{Phase, Summary};
use crate::watch::FanOut;

/// The goals the figures are held to.
pub const GOAL_MUTATING_P99_MS: f64 = 10.0;
pub const GOAL_MUTATING_RATE: f64 = 1000.0;
pub const GOAL_LIST_MS: f64 = 100.0;
pub const GOAL_LIST_PODS: usize = 10_000;
pub const GOAL_WATCH_P99_MS: f64 = 50.0;
pub const GOAL_WATCHERS: usize = 1000;
pub const GOAL_IDLE_RSS_MIB: f64 = 30.0;

/// One line of the verb table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub verb: &'static str,
    pub ops: usize,
    pub errors: usize,
    /// Successful operations per second.
    pub rate: f64,
    pub summary: Summary,
}

impl Row {
    pub fn of(verb: &'static str, phase: &Phase) -> Row {
        Row {
            verb,
            ops: phase.latencies.len(),
            errors: phase.errors,
            rate: phase.rate(),
            summary: phase.summary(),
        }
    }
}

/// Everything `keelson bench api` measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub cores: usize,
    pub store: &'static str,
    /// The requested write rate per second.
    pub target_rate: f64,
    pub idle_rss_mib: f64,
    pub rss_after_load_mib: f64,
    pub peak_rss_mib: f64,
    /// create, update, get, list (in that order when all ran).
    pub rows: Vec<Row>,
    /// Creates and updates together.
    pub mutating: Summary,
    pub mutating_rate: f64,
    pub mutating_errors: usize,
    pub list_pods: usize,
    pub list: Summary,
    pub watch: FanOut,
    pub watch_summary: Summary,
}

/// One goal and whether the figure met it.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub key: &'static str,
    pub figure: String,
    pub goal: String,
    pub pass: bool,
    /// Why a figure that looks fine still misses (e.g. a smaller load than the goal's).
    pub note: Option<String>,
}

impl Goal {
    /// `PASS  figure  goal ... (note)`, one line of a report.
    pub fn line(&self) -> String {
        let verdict = if self.pass { "PASS" } else { "MISS" };
        let note = self
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        format!("{verdict}  {:<48} goal {}{note}\n", self.figure, self.goal)
    }
}

impl Report {
    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        let mut_note = if self.mutating_errors > 0 {
            Some(format!("{} writes failed", self.mutating_errors))
        } else if self.mutating_rate < 0.95 * GOAL_MUTATING_RATE {
            Some(format!(
                "achieved {:.0} writes/s, below the goal's {GOAL_MUTATING_RATE:.0}",
                self.mutating_rate
            ))
        } else {
            None
        };
        goals.push(Goal {
            key: "mutating",
            figure: format!(
                "mutating p99 {:.2} ms at {:.0} writes/s",
                self.mutating.p99_ms, self.mutating_rate
            ),
            goal: format!("≤ {GOAL_MUTATING_P99_MS} ms at {GOAL_MUTATING_RATE:.0} writes/s"),
            pass: self.mutating.count > 0
                && self.mutating.p99_ms <= GOAL_MUTATING_P99_MS
                && mut_note.is_none(),
            note: mut_note,
        });
        let list_note = (self.list_pods < GOAL_LIST_PODS)
            .then(|| format!("only {} pods listed", self.list_pods));
        goals.push(Goal {
            key: "list",
            figure: format!(
                "LIST of {} pods p50 {:.1} ms (min {:.1})",
                self.list_pods, self.list.p50_ms, self.list.min_ms
            ),
            goal: format!("≤ {GOAL_LIST_MS} ms for {GOAL_LIST_PODS} pods"),
            pass: self.list.count > 0 && self.list.p50_ms <= GOAL_LIST_MS && list_note.is_none(),
            note: list_note,
        });
        let w = &self.watch;
        let watch_note = if w.delivered < w.expected || w.expected == 0 {
            Some(format!(
                "MISSING DELIVERIES: {} of {} events delivered",
                w.delivered, w.expected
            ))
        } else if w.watchers < GOAL_WATCHERS {
            Some(format!("only {} watchers", w.watchers))
        } else {
            None
        };
        goals.push(Goal {
            key: "watch",
            figure: format!(
                "{} watchers p99 {:.1} ms",
                w.watchers, self.watch_summary.p99_ms
            ),
            goal: format!("≤ {GOAL_WATCH_P99_MS} ms with {GOAL_WATCHERS} watchers"),
            pass: self.watch_summary.p99_ms <= GOAL_WATCH_P99_MS && watch_note.is_none(),
            note: watch_note,
        });
        goals.push(Goal {
            key: "idle_rss",
            figure: format!("idle RSS {:.1} MiB", self.idle_rss_mib),
            goal: format!("≤ {GOAL_IDLE_RSS_MIB} MiB"),
            pass: self.idle_rss_mib > 0.0 && self.idle_rss_mib <= GOAL_IDLE_RSS_MIB,
            note: None,
        });
        goals
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9}",
            "verb", "ops", "errors", "rate/s", "p50 ms", "p99 ms", "max ms"
        );
        for r in &self.rows {
            let s = &r.summary;
            let _ = writeln!(
                out,
                "{:<8} {:>8} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2}",
                r.verb, r.ops, r.errors, r.rate, s.p50_ms, s.p99_ms, s.max_ms
            );
        }
        let w = &self.watch;
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>7} {:>10} {:>9.2} {:>9.2} {:>9.2}",
            "watch",
            w.delivered,
            w.watcher_errors + w.update_errors,
            "",
            self.watch_summary.p50_ms,
            self.watch_summary.p99_ms,
            self.watch_summary.max_ms
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "cores {}, store {}", self.cores, self.store);
        let _ = writeln!(
            out,
            "server RSS: idle {:.1} MiB, after load {:.1} MiB, peak {:.1} MiB",
            self.idle_rss_mib, self.rss_after_load_mib, self.peak_rss_mib
        );
        let _ = writeln!(
            out,
            "watch: {} watchers ({} established) over {} connections, {} updates (PUT p50 {:.2} ms, \
             p99 {:.2} ms, included in the watch latency), {} of {} deliveries",
            w.watchers,
            w.established,
            w.connections,
            w.updates,
            Summary::of(&w.put_latencies).p50_ms,
            Summary::of(&w.put_latencies).p99_ms,
            w.delivered,
            w.expected
        );
        if let Some(e) = &w.first_error {
            let _ = writeln!(out, "watch: first error: {e}");
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
        put("mutating_p99_ms", json!(round(self.mutating.p99_ms)));
        put("mutating_p50_ms", json!(round(self.mutating.p50_ms)));
        put("mutating_rate", json!(round(self.mutating_rate)));
        put("mutating_errors", json!(self.mutating_errors));
        put("target_rate", json!(round(self.target_rate)));
        put("list_10k_pods_ms", json!(round(self.list.p50_ms)));
        put("list_min_ms", json!(round(self.list.min_ms)));
        put("list_pods", json!(self.list_pods));
        put("watch_p99_ms", json!(round(self.watch_summary.p99_ms)));
        put("watch_p50_ms", json!(round(self.watch_summary.p50_ms)));
        put("watch_max_ms", json!(round(self.watch_summary.max_ms)));
        let puts = Summary::of(&self.watch.put_latencies);
        put("watch_put_p50_ms", json!(round(puts.p50_ms)));
        put("watch_put_p99_ms", json!(round(puts.p99_ms)));
        put("watchers", json!(self.watch.watchers));
        put("watch_connections", json!(self.watch.connections));
        put("watch_updates", json!(self.watch.updates));
        put("watch_delivered", json!(self.watch.delivered));
        put("watch_expected", json!(self.watch.expected));
        put("idle_rss_mib", json!(round(self.idle_rss_mib)));
        put("rss_after_load_mib", json!(round(self.rss_after_load_mib)));
        put("peak_rss_mib", json!(round(self.peak_rss_mib)));
        put("cores", json!(self.cores));
        put("store", json!(self.store));
        for r in &self.rows {
            put(&format!("{}_ops", r.verb), json!(r.ops));
            put(&format!("{}_errors", r.verb), json!(r.errors));
            put(&format!("{}_rate", r.verb), json!(round(r.rate)));
            put(
                &format!("{}_p50_ms", r.verb),
                json!(round(r.summary.p50_ms)),
            );
            put(
                &format!("{}_p99_ms", r.verb),
                json!(round(r.summary.p99_ms)),
            );
            put(
                &format!("{}_max_ms", r.verb),
                json!(round(r.summary.max_ms)),
            );
        }
        let goals: Map<String, Value> = self
            .goals()
            .into_iter()
            .map(|g| (g.key.to_string(), json!(g.pass)))
            .collect();
        put("goals", Value::Object(goals));
        Value::Object(obj)
    }
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

    /// A report that meets every goal.
    fn good() -> Report {
        Report {
            cores: 2,
            store: "sqlite",
            target_rate: 1000.0,
            idle_rss_mib: 20.0,
            rss_after_load_mib: 90.0,
            peak_rss_mib: 120.0,
            rows: vec![Row {
                verb: "create",
                ops: 5000,
                errors: 0,
                rate: 999.0,
                summary: summary(1.0, 4.0),
            }],
            mutating: summary(1.0, 4.0),
            mutating_rate: 998.0,
            mutating_errors: 0,
            list_pods: 10_000,
            list: summary(60.0, 70.0),
            watch: FanOut {
                watchers: 1000,
                established: 1000,
                connections: 10,
                updates: 100,
                delivered: 100_000,
                expected: 100_000,
                ..FanOut::default()
            },
            watch_summary: summary(5.0, 20.0),
        }
    }

    fn verdicts(r: &Report) -> Vec<(&'static str, bool)> {
        r.goals().into_iter().map(|g| (g.key, g.pass)).collect()
    }

    #[test]
    fn goals() {
        fn check(change: fn(&mut Report), want: [bool; 4]) {
            let mut r = good();
            change(&mut r);
            let want: Vec<_> = ["mutating", "list", "watch", "idle_rss"]
                .into_iter()
                .zip(want)
                .collect();
            assert_eq!(verdicts(&r), want);
        }
        check(|_| {}, [true, true, true, true]);
        check(|r| r.mutating.p99_ms = 10.5, [false, true, true, true]);
        check(|r| r.mutating_rate = 400.0, [false, true, true, true]);
        check(|r| r.mutating_errors = 1, [false, true, true, true]);
        check(|r| r.list.p50_ms = 101.0, [true, false, true, true]);
        check(|r| r.list_pods = 500, [true, false, true, true]);
        check(|r| r.watch_summary.p99_ms = 51.0, [true, true, false, true]);
        check(|r| r.watch.delivered = 99_999, [true, true, false, true]);
        check(|r| r.watch.watchers = 10, [true, true, false, true]);
        check(|r| r.idle_rss_mib = 30.5, [true, true, true, false]);
    }

    #[test]
    fn missing_deliveries_are_loud() {
        let mut r = good();
        r.watch.delivered = 90_000;
        let table = r.table();
        assert!(table.contains("MISS  1000 watchers p99 20.0 ms"), "{table}");
        assert!(
            table.contains("MISSING DELIVERIES: 90000 of 100000"),
            "{table}"
        );
    }

    #[test]
    fn table_has_a_row_per_verb() {
        let table = good().table();
        let create = table
            .lines()
            .find(|l| l.starts_with("create"))
            .expect("create row");
        let cells: Vec<&str> = create.split_whitespace().collect();
        assert_eq!(
            cells,
            ["create", "5000", "0", "999.0", "1.00", "4.00", "8.00"]
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("watch") && l.contains("100000")),
            "{table}"
        );
        assert!(table.contains("PASS  idle RSS 20.0 MiB"), "{table}");
    }

    #[test]
    fn json_has_the_headline_figures() {
        let j = good().json();
        for (key, want) in [
            ("mutating_p99_ms", json!(4.0)),
            ("list_10k_pods_ms", json!(60.0)),
            ("watch_p99_ms", json!(20.0)),
            ("idle_rss_mib", json!(20.0)),
            ("cores", json!(2)),
            ("store", json!("sqlite")),
            ("create_p99_ms", json!(4.0)),
            ("create_rate", json!(999.0)),
            ("watch_delivered", json!(100_000)),
        ] {
            assert_eq!(j[key], want, "{key}");
        }
        assert_eq!(
            j["goals"],
            json!({"mutating": true, "list": true, "watch": true, "idle_rss": true})
        );
        assert!(!j.to_string().contains('\n'));
    }
}
