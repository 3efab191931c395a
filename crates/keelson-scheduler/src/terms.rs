//! Label selectors and pod (anti-)affinity terms, parsed once per pod so the InterPodAffinity
//! and PodTopologySpread plugins only compare strings in a cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The operator of one label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

/// A parsed `metav1.LabelSelector`: a missing or invalid selector matches nothing, an empty
/// one everything (as upstream's `LabelSelectorAsSelector`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    /// `None`: matches nothing.
    requirements: Option<Vec<Requirement>>,
}

impl Selector {
    pub fn new(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector { requirements: None };
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Selector { requirements: None },
            };
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        Selector {
            requirements: Some(reqs),
        }
    }

    /// Adds `key in (value)` (for matchLabelKeys).
    pub fn require(&mut self, key: &str, value: &str) {
        if let Some(reqs) = &mut self.requirements {
            reqs.push(Requirement {
                key: key.to_string(),
                op: Op::In,
                values: vec![value.to_string()],
            });
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .as_ref()
            .is_some_and(|reqs| reqs.iter().all(|r| r.matches(labels)))
    }

    /// Whether the selector has no requirements (it then matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.as_ref().is_some_and(|r| r.is_empty())
    }
}

/// Which namespaces a term looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Namespaces {
    /// An empty `namespaceSelector`: every namespace.
    All,
    /// The listed namespaces (or the owning pod's own when none are listed).
    Listed(Vec<String>),
}

/// One pod affinity term, its namespaces resolved against the pod that owns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    pub namespaces: Namespaces,
    pub selector: Selector,
    pub topology_key: String,
}

impl Term {
    fn new(t: &PodAffinityTerm, own_namespace: &str) -> Term {
        let listed = t.namespaces.clone().unwrap_or_default();
        let namespaces = match &t.namespace_selector {
            // A selector with requirements needs the namespaces' labels, which the scheduler
            // does not watch: only the listed namespaces count then.
            Some(sel)
                if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty()) =>
            {
                Namespaces::All
            }
            Some(_) => Namespaces::Listed(listed),
            None if listed.is_empty() => Namespaces::Listed(vec![own_namespace.to_string()]),
            None => Namespaces::Listed(listed),
        };
        Term {
            namespaces,
            selector: Selector::new(t.label_selector.as_ref()),
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether a pod (its namespace and labels) matches this term.
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.contains(namespace) && self.selector.matches(labels)
    }
}

impl Namespaces {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Listed(l) => l.iter().any(|n| n == namespace),
        }
    }
}

/// Which pods a count covers: those matching every (namespaces, selector) pair, optionally
/// leaving out pods being deleted. The cache keeps counts per matcher across cycles.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodMatcher {
    pub terms: Vec<(Namespaces, Selector)>,
    /// Leave out pods with a deletionTimestamp (PodTopologySpread counts only live pods).
    pub skip_terminating: bool,
}

impl PodMatcher {
    /// The pods one term matches.
    pub fn of_term(term: &Term) -> PodMatcher {
        PodMatcher {
            terms: vec![(term.namespaces.clone(), term.selector.clone())],
            skip_terminating: false,
        }
    }

    /// Whether a pod (its namespace, labels and whether it is being deleted) matches.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        terminating: bool,
    ) -> bool {
        !(self.skip_terminating && terminating)
            && self
                .terms
                .iter()
                .all(|(ns, sel)| ns.contains(namespace) && sel.matches(labels))
    }
}

/// A pod's affinity and anti-affinity terms, required and preferred (with weights).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AffinityTerms {
    pub required_affinity: Vec<Term>,
    pub required_anti_affinity: Vec<Term>,
    pub preferred_affinity: Vec<(Term, i64)>,
    pub preferred_anti_affinity: Vec<(Term, i64)>,
}

impl AffinityTerms {
    pub fn of(pod: &Pod) -> AffinityTerms {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |v: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
            v.into_iter().flatten().map(|t| Term::new(t, ns)).collect()
        };
        let pref = |v: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<(Term, i64)> {
            v.into_iter()
                .flatten()
                .map(|w| (Term::new(&w.pod_affinity_term, ns), i64::from(w.weight)))
                .collect()
        };
        AffinityTerms {
            required_affinity: req(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: req(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: pref(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: pref(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_upstream() {
        let sel = |v: serde_json::Value| -> Selector {
            let s: LabelSelector = serde_json::from_value(v).expect("selector");
            Selector::new(Some(&s))
        };
        let app_web = labels(&[("app", "web")]);
        assert!(
            !Selector::new(None).matches(&app_web),
            "nil matches nothing"
        );
        assert!(sel(json!({})).matches(&app_web), "empty matches all");
        assert!(sel(json!({"matchLabels": {"app": "web"}})).matches(&app_web));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})).matches(&app_web));
        let expr = |op: &str, values: serde_json::Value| {
            sel(json!({"matchExpressions": [{"key": "app", "operator": op, "values": values}]}))
        };
        assert!(expr("In", json!(["web", "db"])).matches(&app_web));
        assert!(!expr("NotIn", json!(["web"])).matches(&app_web));
        assert!(expr("NotIn", json!(["web"])).matches(&labels(&[])));
        assert!(expr("Exists", json!(null)).matches(&app_web));
        assert!(!expr("DoesNotExist", json!(null)).matches(&app_web));
        assert!(!expr("Bogus", json!(null)).matches(&app_web));
    }

    #[test]
    fn term_namespaces_default_to_the_owner() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns1"},
            "spec": {"containers": [], "affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {}, "topologyKey": "k"},
                    {"labelSelector": {}, "topologyKey": "k", "namespaceSelector": {}},
                    {"labelSelector": {}, "topologyKey": "k", "namespaces": ["ns2"]}]}}}}))
        .expect("pod");
        let t = AffinityTerms::of(&pod);
        let l = labels(&[]);
        let got: Vec<(bool, bool)> = t
            .required_anti_affinity
            .iter()
            .map(|t| (t.matches("ns1", &l), t.matches("ns2", &l)))
            .collect();
        assert_eq!(got, vec![(true, false), (true, true), (false, true)]);
    }
}
