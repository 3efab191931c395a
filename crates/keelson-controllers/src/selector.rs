//! Label selectors as controllers use them: equality maps (ReplicationController) and
//! `matchLabels` plus `matchExpressions` (ReplicaSet, Deployment).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object; an absent map is empty.
pub type Labels = BTreeMap<String, String>;

/// A selector ready for matching.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// `key=value` for every entry; an empty map selects nothing (as upstream treats an RC
    /// without a selector once defaulting has failed).
    Equality(Labels),
    /// A metav1 LabelSelector; an empty one selects everything, an absent one nothing.
    Label(Option<LabelSelector>),
}

impl Selector {
    /// Whether `labels` are selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Equality(map) => {
                !map.is_empty() && map.iter().all(|(k, v)| labels.get(k) == Some(v))
            }
            Selector::Label(None) => false,
            Selector::Label(Some(sel)) => label_selector_matches(sel, labels),
        }
    }
}

/// Whether a metav1 LabelSelector selects `labels` (an empty selector selects everything).
pub fn label_selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let by_label = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The selector in the string form `kubectl` and the scale subresource print.
pub fn label_selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(s: &str) -> Labels {
        s.split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn check(sel: &Selector, pod: &str, want: bool) {
        assert_eq!(sel.matches(&labels(pod)), want, "{sel:?} on {pod:?}");
    }

    #[test]
    fn equality_selectors_need_every_pair() {
        let sel = Selector::Equality(labels("app=web,tier=fe"));
        for (pod, want) in [
            ("app=web,tier=fe", true),
            ("app=web,tier=fe,extra=1", true),
            ("app=web", false),
            ("app=db,tier=fe", false),
            ("", false),
        ] {
            check(&sel, pod, want);
        }
        check(&Selector::Equality(Labels::new()), "app=web", false);
    }

    #[test]
    fn label_selectors_with_every_operator() {
        let sel = Selector::Label(Some(LabelSelector {
            match_labels: Some(labels("app=web")),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "qa"]),
                expr("tier", "NotIn", &["db"]),
                expr("owner", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        }));
        for (pod, want) in [
            ("app=web,env=prod,owner=me", true),
            ("app=web,env=qa,owner=me,tier=fe", true),
            ("app=web,env=dev,owner=me", false),
            ("app=web,env=prod,owner=me,tier=db", false),
            ("app=web,env=prod", false),
            ("app=web,env=prod,owner=me,legacy=1", false),
            ("env=prod,owner=me", false),
        ] {
            check(&sel, pod, want);
        }
        check(
            &Selector::Label(Some(LabelSelector::default())),
            "x=y",
            true,
        );
        check(&Selector::Label(None), "x=y", false);
    }

    #[test]
    fn selector_strings() {
        let sel = LabelSelector {
            match_labels: Some(labels("app=web")),
            match_expressions: Some(vec![
                expr("env", "In", &["a", "b"]),
                expr("x", "Exists", &[]),
            ]),
        };
        assert_eq!(label_selector_string(&sel), "app=web,env in (a,b),x");
    }
}
