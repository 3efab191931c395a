//! The scheduler's configuration file: upstream's `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`, YAML or JSON) read strictly — an unknown field is an
//! error naming its path — then defaulted, validated and merged with the default plugins as
//! kube-scheduler does (per extension point `enabled`/`disabled` incl. `"*"`, `multiPoint`,
//! score weights, `pluginConfig` args of NodeResourcesFit, PodTopologySpread and
//! InterPodAffinity), and turned into one [`Framework`] per profile. A pod is scheduled by the
//! profile its `spec.schedulerName` names.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use keelson_apimachinery::FieldError;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::DEFAULT_SCHEDULER_NAME;
use crate::framework::Framework;
pub use crate::plugins::pod_topology_spread::{DefaultingType, PodTopologySpreadArgs};
use crate::plugins::scoring_strategy::{
    NodeResourcesFitScore, ResourceWeights, ScoringStrategy, ShapePoint,
};
use crate::plugins::{
    balanced_allocation, inter_pod_affinity, node_affinity, node_name, node_ports,
    node_resources_fit, node_unschedulable, pod_topology_spread, taint_toleration, volume_binding,
};

/// The only version of the configuration this scheduler reads.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The configuration's kind.
pub const KIND: &str = "KubeSchedulerConfiguration";

/// Errors reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading scheduler configuration {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("scheduler configuration {file}: {message}")]
    Parse { file: String, message: String },
    #[error("scheduler configuration {file}: {}", join(errors))]
    Invalid {
        file: String,
        errors: Vec<FieldError>,
    },
}

fn join(errors: &[FieldError]) -> String {
    let all: Vec<String> = errors.iter().map(FieldError::message).collect();
    all.join("; ")
}

/// The configuration, defaulted and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Configuration {
    /// Accepted and validated; the scheduling cycle decides its own parallelism.
    pub parallelism: i32,
    /// The share of nodes a cycle filters before it scores (0 or none: upstream's adaptive
    /// share); profiles without their own take it.
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Accepted and validated; the queue keeps upstream's default back-off (1 s to 10 s).
    pub pod_initial_backoff_seconds: i64,
    pub pod_max_backoff_seconds: i64,
    /// One per scheduler name, in the file's order.
    pub profiles: Vec<Profile>,
}

impl Default for Configuration {
    /// Upstream's default: one profile, `default-scheduler`, with the default plugins.
    fn default() -> Self {
        Configuration {
            parallelism: 16,
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            profiles: vec![Profile::default()],
        }
    }
}

impl Configuration {
    /// The profile named `scheduler_name`.
    pub fn profile(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.scheduler_name == scheduler_name)
    }
}

/// One profile: the plugins that run at each extension point this scheduler has, and their
/// arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub scheduler_name: String,
    /// The profile's `percentageOfNodesToScore`, or the configuration's (0 or none: upstream's
    /// adaptive share).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// PreFilter plugins, in order.
    pub pre_filter: Vec<String>,
    /// Filter plugins, in order.
    pub filter: Vec<String>,
    /// PostFilter plugins (DefaultPreemption).
    pub post_filter: Vec<String>,
    /// Score plugins with their weights, in order.
    pub score: Vec<(String, i64)>,
    pub args: PluginArgs,
}

impl Default for Profile {
    fn default() -> Self {
        resolve_profile(
            DEFAULT_SCHEDULER_NAME.into(),
            None,
            &RawPlugins::default(),
            PluginArgs::default(),
        )
    }
}

/// The arguments of the plugins that take some.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginArgs {
    pub node_resources_fit: NodeResourcesFitArgs,
    pub pod_topology_spread: PodTopologySpreadArgs,
    pub inter_pod_affinity: InterPodAffinityArgs,
}

/// NodeResourcesFit's `scoringStrategy`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeResourcesFitArgs {
    pub strategy: Option<ScoringStrategy>,
    pub resources: ResourceWeights,
}

impl NodeResourcesFitArgs {
    /// The strategy (LeastAllocated unless configured).
    pub fn strategy(&self) -> ScoringStrategy {
        self.strategy
            .clone()
            .unwrap_or(ScoringStrategy::LeastAllocated)
    }
}

/// InterPodAffinity's `hardPodAffinityWeight` (0..=100, default 1).
#[derive(Clone, Debug, PartialEq)]
pub struct InterPodAffinityArgs {
    pub hard_pod_affinity_weight: i32,
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plugins and extension points

/// The extension points of the v1 configuration, by field name.
const POINTS: [&str; 12] = [
    "preEnqueue",
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
];

/// The plugins this scheduler has, with the extension points each implements (as upstream's).
const PLUGINS: &[(&str, &[&str])] = &[
    ("PrioritySort", &["queueSort"]),
    ("NodeUnschedulable", &["filter"]),
    ("NodeName", &["filter"]),
    ("TaintToleration", &["filter", "preScore", "score"]),
    (
        "NodeAffinity",
        &["preFilter", "filter", "preScore", "score"],
    ),
    ("NodePorts", &["preFilter", "filter"]),
    (
        "NodeResourcesFit",
        &["preFilter", "filter", "preScore", "score"],
    ),
    (
        "VolumeBinding",
        &["preFilter", "filter", "reserve", "preBind"],
    ),
    (
        "PodTopologySpread",
        &["preFilter", "filter", "preScore", "score"],
    ),
    (
        "InterPodAffinity",
        &["preFilter", "filter", "preScore", "score"],
    ),
    ("DefaultPreemption", &["postFilter"]),
    ("NodeResourcesBalancedAllocation", &["preScore", "score"]),
    ("DefaultBinder", &["bind"]),
];

/// Upstream's in-tree plugins this scheduler does not have: they may be disabled, not enabled.
const NOT_IMPLEMENTED: &[&str] = &[
    "SchedulingGates",
    "ImageLocality",
    "VolumeRestrictions",
    "NodeVolumeLimits",
    "VolumeZone",
    "DynamicResources",
];

/// Upstream's default profile (v1), less the plugins this scheduler does not have:
/// `multiPoint` with these plugins and score weights, in upstream's order.
const DEFAULT_MULTI_POINT: &[(&str, i32)] = &[
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeBinding", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("DefaultBinder", 0),
];

fn points_of(name: &str) -> Option<&'static [&'static str]> {
    PLUGINS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

fn implements(name: &str, point: &str) -> bool {
    points_of(name).is_some_and(|p| p.contains(&point))
}

// ---------------------------------------------------------------------------------------------
// The file as written

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    api_version: Option<String>,
    kind: Option<String>,
    parallelism: Option<i32>,
    percentage_of_nodes_to_score: Option<i32>,
    pod_initial_backoff_seconds: Option<i64>,
    pod_max_backoff_seconds: Option<i64>,
    /// Taken from keelson's own flags; accepted so upstream files load.
    leader_election: Option<Value>,
    /// Taken from `--kubeconfig`; accepted so upstream files load.
    client_connection: Option<Value>,
    profiles: Option<Vec<RawProfile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProfile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<i32>,
    plugins: Option<RawPlugins>,
    plugin_config: Option<Vec<RawPluginConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPlugins {
    pre_enqueue: Option<PluginSet>,
    queue_sort: Option<PluginSet>,
    pre_filter: Option<PluginSet>,
    filter: Option<PluginSet>,
    post_filter: Option<PluginSet>,
    pre_score: Option<PluginSet>,
    score: Option<PluginSet>,
    reserve: Option<PluginSet>,
    permit: Option<PluginSet>,
    pre_bind: Option<PluginSet>,
    bind: Option<PluginSet>,
    post_bind: Option<PluginSet>,
    multi_point: Option<PluginSet>,
}

impl RawPlugins {
    /// The set of an extension point (or `multiPoint`), by field name.
    fn set(&self, point: &str) -> Option<&PluginSet> {
        match point {
            "preEnqueue" => self.pre_enqueue.as_ref(),
            "queueSort" => self.queue_sort.as_ref(),
            "preFilter" => self.pre_filter.as_ref(),
            "filter" => self.filter.as_ref(),
            "postFilter" => self.post_filter.as_ref(),
            "preScore" => self.pre_score.as_ref(),
            "score" => self.score.as_ref(),
            "reserve" => self.reserve.as_ref(),
            "permit" => self.permit.as_ref(),
            "preBind" => self.pre_bind.as_ref(),
            "bind" => self.bind.as_ref(),
            "postBind" => self.post_bind.as_ref(),
            "multiPoint" => self.multi_point.as_ref(),
            _ => None,
        }
    }
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct PluginSet {
    enabled: Option<Vec<PluginRef>>,
    disabled: Option<Vec<PluginRef>>,
}

impl PluginSet {
    fn enabled(&self) -> &[PluginRef] {
        self.enabled.as_deref().unwrap_or_default()
    }

    fn disabled(&self) -> &[PluginRef] {
        self.disabled.as_deref().unwrap_or_default()
    }
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct PluginRef {
    name: String,
    weight: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginConfig {
    name: String,
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFitArgs {
    api_version: Option<String>,
    kind: Option<String>,
    scoring_strategy: Option<RawScoringStrategy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScoringStrategy {
    #[serde(rename = "type")]
    type_: Option<String>,
    resources: Option<Vec<RawResource>>,
    requested_to_capacity_ratio: Option<RawRatio>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    #[serde(default)]
    weight: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRatio {
    shape: Option<Vec<RawShapePoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShapePoint {
    #[serde(default)]
    utilization: i32,
    #[serde(default)]
    score: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpreadArgs {
    api_version: Option<String>,
    kind: Option<String>,
    default_constraints: Option<Vec<RawConstraint>>,
    defaulting_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConstraint {
    #[serde(default)]
    max_skew: i32,
    #[serde(default)]
    topology_key: String,
    #[serde(default)]
    when_unsatisfiable: String,
    label_selector: Option<LabelSelector>,
    min_domains: Option<i32>,
    node_affinity_policy: Option<String>,
    node_taints_policy: Option<String>,
    match_label_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAffinityArgs {
    api_version: Option<String>,
    kind: Option<String>,
    hard_pod_affinity_weight: Option<i32>,
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads, defaults and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Configuration, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Reads a configuration from `text` (YAML or JSON); `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Configuration, Error> {
    let parse_err = |message: String| Error::Parse {
        file: file.to_string(),
        message,
    };
    let value: Value = if text.trim_start().starts_with('{') {
        // JSON, or a YAML flow mapping.
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(json) => serde_saphyr::from_str(text)
                .map_err(|_| parse_err(format!("invalid JSON: {json}")))?,
        }
    } else {
        serde_saphyr::from_str(text).map_err(|e| parse_err(format!("invalid YAML: {e}")))?
    };
    if !value.is_object() {
        return Err(parse_err(
            "expected a KubeSchedulerConfiguration object".into(),
        ));
    }
    // The version first: a file of another version fails on it, not on its fields.
    let invalid = |e: FieldError| Error::Invalid {
        file: file.to_string(),
        errors: vec![e],
    };
    match value.get("apiVersion") {
        None | Some(Value::Null) => return Err(invalid(FieldError::required("apiVersion", ""))),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => {
            return Err(invalid(FieldError::not_supported(
                "apiVersion",
                other.clone(),
                &[API_VERSION],
            )));
        }
    }
    match value.get("kind") {
        None | Some(Value::Null) => return Err(invalid(FieldError::required("kind", ""))),
        Some(Value::String(k)) if k == KIND => {}
        Some(other) => {
            return Err(invalid(FieldError::not_supported(
                "kind",
                other.clone(),
                &[KIND],
            )));
        }
    }
    let raw: RawConfig = decode(value, "").map_err(parse_err)?;
    resolve(raw).map_err(|bad| match bad {
        ArgsError::Decode(message) => parse_err(message),
        ArgsError::Fields(errors) => Error::Invalid {
            file: file.to_string(),
            errors,
        },
    })
}

/// Decodes `value` strictly; the error names the field's path under `prefix`.
fn decode<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix.is_empty(), path.as_str()) {
            (true, ".") => String::new(),
            (true, p) => p.to_string(),
            (false, ".") => prefix.to_string(),
            (false, p) => format!("{prefix}.{p}"),
        };
        let inner = e.into_inner();
        if path.is_empty() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn resolve(raw: RawConfig) -> Result<Configuration, ArgsError> {
    let _ = (&raw.api_version, &raw.kind);
    if raw.leader_election.is_some() || raw.client_connection.is_some() {
        tracing::info!(
            "the scheduler configuration's leaderElection and clientConnection are ignored: \
             keelson takes them from its flags"
        );
    }
    let mut errs = Vec::new();
    let parallelism = raw.parallelism.unwrap_or(16);
    if parallelism <= 0 {
        errs.push(FieldError::invalid(
            "parallelism",
            parallelism,
            "should be an integer value greater than zero",
        ));
    }
    check_percentage(
        "percentageOfNodesToScore",
        raw.percentage_of_nodes_to_score,
        &mut errs,
    );
    let initial = raw.pod_initial_backoff_seconds.unwrap_or(1);
    let max = raw.pod_max_backoff_seconds.unwrap_or(10);
    if initial <= 0 {
        errs.push(FieldError::invalid(
            "podInitialBackoffSeconds",
            initial,
            "must be greater than 0",
        ));
    }
    if max < initial {
        errs.push(FieldError::invalid(
            "podMaxBackoffSeconds",
            max,
            "must be greater than or equal to PodInitialBackoffSeconds",
        ));
    }
    let mut raw_profiles = raw.profiles.unwrap_or_default();
    if raw_profiles.is_empty() {
        raw_profiles.push(RawProfile::default());
    }
    let mut profiles = Vec::new();
    let mut undecodable = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, p) in raw_profiles.into_iter().enumerate() {
        let path = format!("profiles[{i}]");
        let name = p
            .scheduler_name
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into());
        if name.is_empty() {
            errs.push(FieldError::required(&format!("{path}.schedulerName"), ""));
        } else if let Some(first) = seen.get(&name) {
            errs.push(FieldError::duplicate(
                &format!("{path}.schedulerName"),
                format!("profiles[{first}].schedulerName"),
            ));
        } else {
            seen.insert(name.clone(), i);
        }
        check_percentage(
            &format!("{path}.percentageOfNodesToScore"),
            p.percentage_of_nodes_to_score,
            &mut errs,
        );
        let plugins = p.plugins.unwrap_or_default();
        check_plugins(&path, &plugins, &mut errs);
        let args = plugin_args(
            &path,
            p.plugin_config.unwrap_or_default(),
            &mut errs,
            &mut undecodable,
        );
        profiles.push(resolve_profile(
            name,
            p.percentage_of_nodes_to_score
                .or(raw.percentage_of_nodes_to_score),
            &plugins,
            args,
        ));
    }
    if !undecodable.is_empty() {
        return Err(ArgsError::Decode(undecodable.join("; ")));
    }
    if !errs.is_empty() {
        return Err(ArgsError::Fields(errs));
    }
    Ok(Configuration {
        parallelism,
        percentage_of_nodes_to_score: raw.percentage_of_nodes_to_score,
        pod_initial_backoff_seconds: initial,
        pod_max_backoff_seconds: max,
        profiles,
    })
}

fn check_percentage(path: &str, value: Option<i32>, errs: &mut Vec<FieldError>) {
    if let Some(v) = value
        && !(0..=100).contains(&v)
    {
        errs.push(FieldError::invalid(path, v, "not in valid range [0-100]"));
    }
}

/// Every plugin named exists and extends the point it is listed at; none is enabled twice
/// at one point; weights are not negative.
fn check_plugins(profile: &str, plugins: &RawPlugins, errs: &mut Vec<FieldError>) {
    let known: Vec<&str> = PLUGINS.iter().map(|(n, _)| *n).collect();
    for point in POINTS.iter().copied().chain(["multiPoint"]) {
        let Some(set) = plugins.set(point) else {
            continue;
        };
        let path = format!("{profile}.plugins.{point}");
        let mut enabled = HashSet::new();
        for (i, p) in set.enabled().iter().enumerate() {
            let at = format!("{path}.enabled[{i}]");
            if NOT_IMPLEMENTED.contains(&p.name.as_str()) {
                errs.push(FieldError::invalid(
                    &format!("{at}.name"),
                    p.name.as_str(),
                    "plugin is not implemented by keelson (it may only be disabled)",
                ));
                continue;
            }
            let Some(points) = points_of(&p.name) else {
                errs.push(FieldError::not_supported(
                    &format!("{at}.name"),
                    p.name.as_str(),
                    &known,
                ));
                continue;
            };
            if point != "multiPoint" && !points.contains(&point) {
                errs.push(FieldError::invalid(
                    &format!("{at}.name"),
                    p.name.as_str(),
                    &format!("plugin does not extend the {point} extension point"),
                ));
            }
            if !enabled.insert(p.name.as_str()) {
                errs.push(FieldError::duplicate(
                    &format!("{at}.name"),
                    p.name.as_str(),
                ));
            }
            if let Some(w) = p.weight
                && w < 0
            {
                errs.push(FieldError::invalid(
                    &format!("{at}.weight"),
                    w,
                    "must not be negative",
                ));
            }
        }
        for (i, p) in set.disabled().iter().enumerate() {
            let name = p.name.as_str();
            if name != "*" && points_of(name).is_none() && !NOT_IMPLEMENTED.contains(&name) {
                errs.push(FieldError::not_supported(
                    &format!("{path}.disabled[{i}].name"),
                    name,
                    &known,
                ));
            }
        }
    }
}

/// Upstream's `mergePluginSet`: the default set less what the custom set disables (all of it
/// with `"*"`), a default re-configured by the custom set updated in place, then the rest of
/// the custom set.
fn merge_set(default: &PluginSet, custom: &PluginSet) -> PluginSet {
    let disabled: Vec<PluginRef> = custom
        .disabled()
        .iter()
        .chain(default.disabled())
        .cloned()
        .collect();
    let off: HashSet<&str> = disabled.iter().map(|p| p.name.as_str()).collect();
    let mut replaced = HashSet::new();
    let mut enabled = Vec::new();
    if !off.contains("*") {
        for d in default.enabled() {
            if off.contains(d.name.as_str()) {
                continue;
            }
            match custom.enabled().iter().position(|c| c.name == d.name) {
                Some(i) => {
                    replaced.insert(i);
                    enabled.push(custom.enabled()[i].clone());
                }
                None => enabled.push(d.clone()),
            }
        }
    }
    for (i, c) in custom.enabled().iter().enumerate() {
        if !replaced.contains(&i) {
            enabled.push(c.clone());
        }
    }
    PluginSet {
        enabled: Some(enabled),
        disabled: Some(disabled),
    }
}

/// The plugins enabled at `point` after upstream's multiPoint expansion: plugins listed at the
/// point itself that multiPoint also names (in the point's order), then multiPoint's others
/// that extend the point and are not disabled there, then the rest of the point's own.
fn expand(point: &str, own: &PluginSet, multi: &PluginSet) -> Vec<String> {
    let listed: Vec<&str> = own.enabled().iter().map(|p| p.name.as_str()).collect();
    let off: HashSet<&str> = own.disabled().iter().map(|p| p.name.as_str()).collect();
    if off.contains("*") {
        return listed.into_iter().map(String::from).collect();
    }
    let mut overridden = HashSet::new();
    let mut from_multi = Vec::new();
    for p in multi.enabled() {
        let name = p.name.as_str();
        if !implements(name, point) || off.contains(name) {
            continue;
        }
        if listed.contains(&name) {
            overridden.insert(name);
            continue;
        }
        if !from_multi.contains(&name) {
            from_multi.push(name);
        }
    }
    let first = listed.iter().filter(|n| overridden.contains(*n));
    let rest = listed.iter().filter(|n| !overridden.contains(*n));
    first
        .chain(from_multi.iter())
        .chain(rest)
        .map(|s| s.to_string())
        .collect()
}

/// One profile's plugins: its sets merged into the defaults, multiPoint expanded, and the
/// score weights (the score point's own weight first, then multiPoint's; 0 counts as 1).
fn resolve_profile(
    scheduler_name: String,
    percentage_of_nodes_to_score: Option<i32>,
    plugins: &RawPlugins,
    args: PluginArgs,
) -> Profile {
    let empty = PluginSet::default();
    let default_multi = PluginSet {
        enabled: Some(
            DEFAULT_MULTI_POINT
                .iter()
                .map(|(name, weight)| PluginRef {
                    name: name.to_string(),
                    weight: (*weight != 0).then_some(*weight),
                })
                .collect(),
        ),
        disabled: None,
    };
    let multi = merge_set(
        &default_multi,
        plugins.multi_point.as_ref().unwrap_or(&empty),
    );
    let set = |point: &str| merge_set(&empty, plugins.set(point).unwrap_or(&empty));
    let score_set = set("score");
    let mut weights: HashMap<&str, i64> = HashMap::new();
    for p in score_set.enabled().iter().chain(multi.enabled()) {
        if implements(&p.name, "score") && !weights.contains_key(p.name.as_str()) {
            let w = i64::from(p.weight.unwrap_or(0));
            weights.insert(p.name.as_str(), if w == 0 { 1 } else { w });
        }
    }
    let score = expand("score", &score_set, &multi)
        .into_iter()
        .map(|name| {
            let w = weights.get(name.as_str()).copied().unwrap_or(1);
            (name, w)
        })
        .collect();
    Profile {
        scheduler_name,
        percentage_of_nodes_to_score,
        pre_filter: expand("preFilter", &set("preFilter"), &multi),
        filter: expand("filter", &set("filter"), &multi),
        post_filter: expand("postFilter", &set("postFilter"), &multi),
        score,
        args,
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin arguments

fn plugin_args(
    profile: &str,
    configs: Vec<RawPluginConfig>,
    errs: &mut Vec<FieldError>,
    undecodable: &mut Vec<String>,
) -> PluginArgs {
    let mut args = PluginArgs::default();
    let mut seen = HashSet::new();
    for (i, c) in configs.into_iter().enumerate() {
        let path = format!("{profile}.pluginConfig[{i}]");
        if !seen.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(&path, c.name.as_str()));
            continue;
        }
        let at = format!("{path}.args");
        let value = c.args.unwrap_or(Value::Object(Default::default()));
        let result = match c.name.as_str() {
            "NodeResourcesFit" => fit_args(&at, value).map(|a| args.node_resources_fit = a),
            "PodTopologySpread" => spread_args(&at, value).map(|a| args.pod_topology_spread = a),
            "InterPodAffinity" => affinity_args(&at, value).map(|a| args.inter_pod_affinity = a),
            name if points_of(name).is_some() || NOT_IMPLEMENTED.contains(&name) => {
                Err(ArgsError::Fields(vec![FieldError::forbidden(
                    &at,
                    &format!("keelson takes no arguments for plugin {name}"),
                )]))
            }
            name => {
                let known: Vec<&str> = PLUGINS.iter().map(|(n, _)| *n).collect();
                Err(ArgsError::Fields(vec![FieldError::not_supported(
                    &format!("{path}.name"),
                    name,
                    &known,
                )]))
            }
        };
        match result {
            Ok(()) => {}
            Err(ArgsError::Fields(e)) => errs.extend(e),
            Err(ArgsError::Decode(message)) => undecodable.push(message),
        }
    }
    args
}

/// Why a plugin's args were refused: they do not decode (unknown field, wrong type), or a
/// value is invalid.
enum ArgsError {
    Decode(String),
    Fields(Vec<FieldError>),
}

impl From<Vec<FieldError>> for ArgsError {
    fn from(errors: Vec<FieldError>) -> Self {
        ArgsError::Fields(errors)
    }
}

/// Decodes a plugin's args; `apiVersion` and `kind`, when given, must name its args type.
fn decode_args<T: DeserializeOwned>(at: &str, kind: &str, value: Value) -> Result<T, ArgsError> {
    if let Some(v) = value.get("apiVersion").filter(|v| !v.is_null())
        && v.as_str() != Some(API_VERSION)
    {
        return Err(vec![FieldError::not_supported(
            &format!("{at}.apiVersion"),
            v.clone(),
            &[API_VERSION],
        )]
        .into());
    }
    if let Some(k) = value.get("kind").filter(|v| !v.is_null())
        && k.as_str() != Some(kind)
    {
        return Err(vec![FieldError::not_supported(
            &format!("{at}.kind"),
            k.clone(),
            &[kind],
        )]
        .into());
    }
    decode(value, at).map_err(ArgsError::Decode)
}

fn fit_args(at: &str, value: Value) -> Result<NodeResourcesFitArgs, ArgsError> {
    let raw: RawFitArgs = decode_args(at, "NodeResourcesFitArgs", value)?;
    let _ = (raw.api_version, raw.kind);
    let mut errs = Vec::new();
    let path = format!("{at}.scoringStrategy");
    let Some(s) = raw.scoring_strategy else {
        return Ok(NodeResourcesFitArgs::default());
    };
    let supported = [
        "LeastAllocated",
        "MostAllocated",
        "RequestedToCapacityRatio",
    ];
    let type_ = s.type_.unwrap_or_default();
    if !supported.contains(&type_.as_str()) {
        errs.push(FieldError::not_supported(
            &format!("{path}.type"),
            type_.as_str(),
            &supported,
        ));
    }
    let resources = match s.resources.filter(|r| !r.is_empty()) {
        None => ResourceWeights::default(),
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                if r.weight <= 0 || r.weight > 100 {
                    errs.push(FieldError::invalid(
                        &format!("{path}.resources[{i}].weight"),
                        r.weight,
                        &format!("resource weight of {} not in valid range (0, 100]", r.name),
                    ));
                }
            }
            ResourceWeights(list.into_iter().map(|r| (r.name, r.weight)).collect())
        }
    };
    let ratio_path = format!("{path}.requestedToCapacityRatio");
    let strategy = match type_.as_str() {
        "MostAllocated" | "LeastAllocated" => {
            if s.requested_to_capacity_ratio.is_some() {
                errs.push(FieldError::forbidden(
                    &ratio_path,
                    "must be nil when type is not RequestedToCapacityRatio",
                ));
            }
            if type_ == "MostAllocated" {
                ScoringStrategy::MostAllocated
            } else {
                ScoringStrategy::LeastAllocated
            }
        }
        "RequestedToCapacityRatio" => match s.requested_to_capacity_ratio {
            None => {
                errs.push(FieldError::required(
                    &ratio_path,
                    "must be specified when type is RequestedToCapacityRatio",
                ));
                ScoringStrategy::LeastAllocated
            }
            Some(r) => {
                let shape = r.shape.unwrap_or_default();
                check_shape(&format!("{ratio_path}.shape"), &shape, &mut errs);
                ScoringStrategy::RequestedToCapacityRatio(
                    shape
                        .iter()
                        .map(|p| ShapePoint {
                            utilization: i64::from(p.utilization),
                            score: i64::from(p.score),
                        })
                        .collect(),
                )
            }
        },
        _ => ScoringStrategy::LeastAllocated,
    };
    if !errs.is_empty() {
        return Err(errs.into());
    }
    Ok(NodeResourcesFitArgs {
        strategy: Some(strategy),
        resources,
    })
}

fn check_shape(path: &str, shape: &[RawShapePoint], errs: &mut Vec<FieldError>) {
    if shape.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least one point must be specified",
        ));
        return;
    }
    if let Some(i) = (1..shape.len()).find(|&i| shape[i - 1].utilization >= shape[i].utilization) {
        errs.push(FieldError::invalid(
            &format!("{path}[{i}].utilization"),
            shape[i].utilization,
            "values must be sorted in increasing order",
        ));
    }
    for (i, p) in shape.iter().enumerate() {
        if !(0..=100).contains(&p.utilization) {
            errs.push(FieldError::invalid(
                &format!("{path}[{i}].utilization"),
                p.utilization,
                "not in valid range [0, 100]",
            ));
        }
        if !(0..=10).contains(&p.score) {
            errs.push(FieldError::invalid(
                &format!("{path}[{i}].score"),
                p.score,
                "not in valid range [0, 10]",
            ));
        }
    }
}

fn spread_args(at: &str, value: Value) -> Result<PodTopologySpreadArgs, ArgsError> {
    let raw: RawSpreadArgs = decode_args(at, "PodTopologySpreadArgs", value)?;
    let _ = (raw.api_version, raw.kind);
    let mut errs = Vec::new();
    let constraints = raw.default_constraints.unwrap_or_default();
    let defaulting_type = match raw.defaulting_type.as_deref().unwrap_or("System") {
        "System" => {
            if !constraints.is_empty() {
                errs.push(FieldError::invalid(
                    &format!("{at}.defaultingType"),
                    "System",
                    "when .defaultConstraints are not empty",
                ));
            }
            DefaultingType::System
        }
        "List" => DefaultingType::List,
        other => {
            errs.push(FieldError::not_supported(
                &format!("{at}.defaultingType"),
                other,
                &["List", "System"],
            ));
            DefaultingType::System
        }
    };
    let list = format!("{at}.defaultConstraints");
    for (i, c) in constraints.iter().enumerate() {
        let p = format!("{list}[{i}]");
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                &format!("{p}.maxSkew"),
                c.max_skew,
                "not in valid range (0, inf)",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                &format!("{p}.topologyKey"),
                "can not be empty",
            ));
        } else {
            for m in keelson_apimachinery::names::qualified_name(&c.topology_key) {
                errs.push(FieldError::invalid(
                    &format!("{p}.topologyKey"),
                    c.topology_key.as_str(),
                    &m,
                ));
            }
        }
        match c.when_unsatisfiable.as_str() {
            "" => errs.push(FieldError::required(
                &format!("{p}.whenUnsatisfiable"),
                "can not be empty",
            )),
            "DoNotSchedule" | "ScheduleAnyway" => {}
            other => errs.push(FieldError::not_supported(
                &format!("{p}.whenUnsatisfiable"),
                other,
                &["DoNotSchedule", "ScheduleAnyway"],
            )),
        }
        if c.label_selector.is_some() {
            errs.push(FieldError::forbidden(
                &format!("{p}.labelSelector"),
                "constraint must not define a selector, as they deduced for each pod",
            ));
        }
        if constraints[..i].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        }) {
            errs.push(FieldError::duplicate(
                &p,
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs.into());
    }
    Ok(PodTopologySpreadArgs {
        default_constraints: constraints
            .into_iter()
            .map(|c| TopologySpreadConstraint {
                max_skew: c.max_skew,
                topology_key: c.topology_key,
                when_unsatisfiable: c.when_unsatisfiable,
                label_selector: c.label_selector,
                min_domains: c.min_domains,
                node_affinity_policy: c.node_affinity_policy,
                node_taints_policy: c.node_taints_policy,
                match_label_keys: c.match_label_keys,
            })
            .collect(),
        defaulting_type,
    })
}

fn affinity_args(at: &str, value: Value) -> Result<InterPodAffinityArgs, ArgsError> {
    let raw: RawAffinityArgs = decode_args(at, "InterPodAffinityArgs", value)?;
    let _ = (raw.api_version, raw.kind);
    let w = raw.hard_pod_affinity_weight.unwrap_or(1);
    if !(0..=100).contains(&w) {
        return Err(vec![FieldError::invalid(
            &format!("{at}.hardPodAffinityWeight"),
            w,
            "not in valid range [0, 100]",
        )]
        .into());
    }
    Ok(InterPodAffinityArgs {
        hard_pod_affinity_weight: w,
    })
}

// ---------------------------------------------------------------------------------------------
// Frameworks

impl Profile {
    /// The share of nodes a cycle filters before scoring (0: upstream's adaptive share).
    pub fn percentage_of_nodes_to_score(&self) -> usize {
        self.percentage_of_nodes_to_score
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(0)
    }

    /// Whether DefaultPreemption runs after a pod fits nowhere.
    pub fn preemption(&self) -> bool {
        self.post_filter.iter().any(|p| p == "DefaultPreemption")
    }

    /// The profile's plugins as a framework, VolumeBinding reading `volumes`.
    pub fn framework(&self, volumes: volume_binding::VolumeListers) -> Framework {
        let mut fw = Framework {
            pre_filters: Vec::new(),
            filters: Vec::new(),
            scores: Vec::new(),
            cluster_filters: Vec::new(),
            cluster_scores: Vec::new(),
        };
        for name in &self.pre_filter {
            if name == "VolumeBinding" {
                fw.pre_filters
                    .push(Box::new(volume_binding::VolumeBinding(volumes.clone())));
            }
        }
        for name in &self.filter {
            match name.as_str() {
                "NodeUnschedulable" => fw
                    .filters
                    .push(Box::new(node_unschedulable::NodeUnschedulable)),
                "NodeName" => fw.filters.push(Box::new(node_name::NodeName)),
                "TaintToleration" => fw.filters.push(Box::new(taint_toleration::TaintToleration)),
                "NodeAffinity" => fw.filters.push(Box::new(node_affinity::NodeAffinity)),
                "NodePorts" => fw.filters.push(Box::new(node_ports::NodePorts)),
                "NodeResourcesFit" => fw
                    .filters
                    .push(Box::new(node_resources_fit::NodeResourcesFit)),
                "VolumeBinding" => fw
                    .filters
                    .push(Box::new(volume_binding::VolumeBinding(volumes.clone()))),
                "PodTopologySpread" => fw.cluster_filters.push(Box::new(self.spread())),
                "InterPodAffinity" => fw.cluster_filters.push(Box::new(self.affinity())),
                _ => {}
            }
        }
        for (name, weight) in &self.score {
            let w = *weight;
            match name.as_str() {
                "TaintToleration" => fw
                    .scores
                    .push((Box::new(taint_toleration::TaintToleration), w)),
                "NodeAffinity" => fw.scores.push((Box::new(node_affinity::NodeAffinity), w)),
                "NodeResourcesFit" => {
                    let args = &self.args.node_resources_fit;
                    let strategy = args.strategy();
                    if strategy == ScoringStrategy::LeastAllocated
                        && args.resources == ResourceWeights::default()
                    {
                        // The default, with its own fast scorer.
                        fw.scores
                            .push((Box::new(node_resources_fit::NodeResourcesFit), w));
                    } else {
                        let scorer =
                            NodeResourcesFitScore::with_weights(strategy, args.resources.clone());
                        fw.scores.push((Box::new(scorer), w));
                    }
                }
                "NodeResourcesBalancedAllocation" => fw.scores.push((
                    Box::new(balanced_allocation::NodeResourcesBalancedAllocation),
                    w,
                )),
                "PodTopologySpread" => fw.cluster_scores.push((Box::new(self.spread()), w)),
                "InterPodAffinity" => fw.cluster_scores.push((Box::new(self.affinity()), w)),
                _ => {}
            }
        }
        fw
    }

    /// PodTopologySpread with this profile's args.
    fn spread(&self) -> pod_topology_spread::PodTopologySpread {
        pod_topology_spread::PodTopologySpread::new(self.args.pod_topology_spread.clone())
    }

    /// InterPodAffinity with this profile's args.
    fn affinity(&self) -> inter_pod_affinity::InterPodAffinity {
        inter_pod_affinity::InterPodAffinity::new(
            self.args.inter_pod_affinity.hard_pod_affinity_weight,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Configuration {
        parse(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        match parse(text, "test.yaml") {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str =
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

    fn names(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_default_profile_is_upstreams_default_plugins() {
        let c = ok(HEAD);
        assert_eq!(c, Configuration::default());
        let p = &c.profiles[0];
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert_eq!(
            names(&p.filter),
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        let score: Vec<(&str, i64)> = p.score.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        assert_eq!(
            score,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1)
            ]
        );
        assert_eq!(
            names(&p.pre_filter),
            [
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        assert!(p.preemption());
        let fw = p.framework(Default::default());
        assert_eq!(fw.filters.len(), 7);
        assert_eq!(fw.scores.len(), 4);
        assert_eq!(fw.cluster_filters.len(), 2);
        assert_eq!(fw.cluster_scores.len(), 2);
        assert_eq!(fw.pre_filters.len(), 1);
    }

    #[test]
    fn two_profiles_with_scoring_strategies() {
        let c = ok(&format!(
            "{HEAD}profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packing
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
        - name: memory
          weight: 3
"
        ));
        assert_eq!(c.profiles.len(), 2);
        assert_eq!(
            c.profile("default-scheduler")
                .map(|p| p.args.node_resources_fit.strategy()),
            Some(ScoringStrategy::LeastAllocated)
        );
        let b = c.profile("bin-packing").expect("bin-packing");
        assert_eq!(
            b.args.node_resources_fit.strategy(),
            ScoringStrategy::MostAllocated
        );
        assert_eq!(
            b.args.node_resources_fit.resources,
            ResourceWeights(vec![("cpu".into(), 1), ("memory".into(), 3)])
        );
        assert!(c.profile("nobody").is_none());
    }

    #[test]
    fn yaml_documents_and_flow_mappings() {
        let c = ok(&format!("---\n{HEAD}profiles:\n- schedulerName: a\n"));
        assert_eq!(c.profiles[0].scheduler_name, "a");
        let c =
            ok("{apiVersion: kubescheduler.config.k8s.io/v1, kind: KubeSchedulerConfiguration}");
        assert_eq!(c, Configuration::default());
        assert!(err("apiVersion: [\n").contains("test.yaml: invalid YAML"));
    }

    #[test]
    fn each_profile_schedules_with_its_own_strategy() {
        use std::sync::Arc;

        use crate::cache::Cache;
        use crate::framework::PodInfo;
        use crate::schedule::{TieBreaker, schedule};

        let c = ok(&format!(
            "{HEAD}profiles:
- schedulerName: spread
- schedulerName: pack
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"
        ));
        let pod = |name: &str, node: Option<&str>| {
            let pod = serde_json::json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources":
                {"requests": {"cpu": "1", "memory": "1Gi"}}}]}});
            Arc::new(serde_json::from_value(pod).expect("pod"))
        };
        let mut cache = Cache::default();
        for name in ["a", "b"] {
            let node = serde_json::json!({"metadata": {"name": name}, "status":
                {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}});
            cache.add_or_update_node(Arc::new(serde_json::from_value(node).expect("node")));
        }
        cache.add_or_update_pod(pod("existing", Some("a")));
        let new = PodInfo::new(pod("new", None));
        let place = |profile: &str, cache: &mut Cache| {
            let fw = c
                .profile(profile)
                .expect("profile")
                .framework(Default::default());
            schedule(&fw, cache, &new, &mut TieBreaker::default()).expect("a node")
        };
        assert_eq!(place("spread", &mut cache), "b");
        assert_eq!(place("pack", &mut cache), "a");
    }

    #[test]
    fn json_and_ratio_shape() {
        let c = ok(r#"{"apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration", "parallelism": 4,
            "percentageOfNodesToScore": 50,
            "profiles": [{"schedulerName": "ratio", "pluginConfig": [{"name": "NodeResourcesFit",
              "args": {"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "NodeResourcesFitArgs",
                "scoringStrategy": {"type": "RequestedToCapacityRatio",
                "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0},
                {"utilization": 100, "score": 10}]}}}}]}]}"#);
        assert_eq!(c.parallelism, 4);
        assert_eq!(c.percentage_of_nodes_to_score, Some(50));
        assert_eq!(c.profiles[0].percentage_of_nodes_to_score(), 50);
        assert_eq!(
            c.profiles[0].args.node_resources_fit.strategy(),
            ScoringStrategy::RequestedToCapacityRatio(vec![
                ShapePoint {
                    utilization: 0,
                    score: 0
                },
                ShapePoint {
                    utilization: 100,
                    score: 10
                }
            ])
        );
    }

    #[test]
    fn enable_disable_weights_and_multi_point() {
        let c = ok(&format!(
            "{HEAD}profiles:
- schedulerName: custom
  plugins:
    score:
      disabled:
      - name: NodeResourcesBalancedAllocation
      enabled:
      - name: NodeResourcesFit
        weight: 5
    filter:
      disabled:
      - name: NodePorts
    postFilter:
      disabled:
      - name: '*'
- schedulerName: no-scoring
  plugins:
    preScore:
      disabled:
      - name: '*'
    score:
      disabled:
      - name: '*'
- schedulerName: minimal
  plugins:
    multiPoint:
      disabled:
      - name: '*'
      enabled:
      - name: NodeName
      - name: TaintToleration
        weight: 7
"
        ));
        let p = &c.profiles[0];
        assert!(!p.filter.contains(&"NodePorts".to_string()));
        assert!(!p.preemption());
        let score: Vec<(&str, i64)> = p.score.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        assert_eq!(
            score,
            [
                ("NodeResourcesFit", 5),
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2)
            ]
        );
        assert!(c.profiles[1].score.is_empty());
        assert_eq!(c.profiles[1].filter.len(), 9);
        let m = &c.profiles[2];
        assert_eq!(names(&m.filter), ["NodeName", "TaintToleration"]);
        assert_eq!(m.score, [("TaintToleration".to_string(), 7)]);
        assert!(!m.preemption());
    }

    #[test]
    fn spread_and_affinity_args() {
        let c = ok(&format!(
            "{HEAD}profiles:
- pluginConfig:
  - name: PodTopologySpread
    args:
      defaultingType: List
      defaultConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: ScheduleAnyway
  - name: InterPodAffinity
    args:
      hardPodAffinityWeight: 10
"
        ));
        let a = &c.profiles[0].args;
        assert_eq!(a.pod_topology_spread.defaulting_type, DefaultingType::List);
        assert_eq!(a.pod_topology_spread.default_constraints.len(), 1);
        assert_eq!(
            a.pod_topology_spread.default_constraints[0].topology_key,
            "topology.kubernetes.io/zone"
        );
        assert_eq!(a.inter_pod_affinity.hard_pod_affinity_weight, 10);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n".into(),
                r#"scheduler configuration test.yaml: apiVersion: Unsupported value: "kubescheduler.config.k8s.io/v1beta3": supported values: "kubescheduler.config.k8s.io/v1""#,
            ),
            (
                "kind: KubeSchedulerConfiguration\n".into(),
                "scheduler configuration test.yaml: apiVersion: Required value",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: Pod\n".into(),
                r#"kind: Unsupported value: "Pod""#,
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabled:\n      - name: Nope\n"),
                r#"scheduler configuration test.yaml: profiles[0].plugins.score.enabled[0].name: Unsupported value: "Nope": supported values: "PrioritySort""#,
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n  plugins:\n    filter:\n      disabled:\n      - name: Nope\n"),
                r#"profiles[0].plugins.filter.disabled[0].name: Unsupported value: "Nope""#,
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabled:\n      - name: NodeName\n"),
                r#"profiles[0].plugins.score.enabled[0].name: Invalid value: "NodeName": plugin does not extend the score extension point"#,
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabled:\n      - name: ImageLocality\n"),
                "plugin is not implemented by keelson",
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n  plugins:\n    scores: {{}}\n"),
                "scheduler configuration test.yaml: profiles[0].plugins.scores: unknown field `scores`",
            ),
            (
                format!("{HEAD}percentageOfNodes: 3\n"),
                "scheduler configuration test.yaml: percentageOfNodes: unknown field `percentageOfNodes`",
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: a\n- schedulerName: a\n"),
                r#"profiles[1].schedulerName: Duplicate value: "profiles[0].schedulerName""#,
            ),
            (
                format!("{HEAD}profiles:\n- schedulerName: ''\n"),
                "profiles[0].schedulerName: Required value",
            ),
            (
                format!("{HEAD}parallelism: 0\npercentageOfNodesToScore: 101\n"),
                "parallelism: Invalid value: 0: should be an integer value greater than zero; percentageOfNodesToScore: Invalid value: 101: not in valid range [0-100]",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: Fancy\n"),
                r#"profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: "Fancy": supported values: "LeastAllocated", "MostAllocated", "RequestedToCapacityRatio""#,
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n        resources:\n        - name: cpu\n          weight: 101\n"),
                "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight: Invalid value: 101: resource weight of cpu not in valid range (0, 100]",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: RequestedToCapacityRatio\n"),
                "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio: Required value: must be specified when type is RequestedToCapacityRatio",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: RequestedToCapacityRatio\n        requestedToCapacityRatio:\n          shape:\n          - utilization: 50\n            score: 11\n          - utilization: 10\n            score: 1\n"),
                "shape[1].utilization: Invalid value: 10: values must be sorted in increasing order",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        typo: MostAllocated\n"),
                "profiles[0].pluginConfig[0].args.scoringStrategy.typo: unknown field `typo`, expected one of `type`",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      kind: PodTopologySpreadArgs\n"),
                r#"profiles[0].pluginConfig[0].args.kind: Unsupported value: "PodTopologySpreadArgs": supported values: "NodeResourcesFitArgs""#,
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: Nope\n"),
                r#"profiles[0].pluginConfig[0].name: Unsupported value: "Nope""#,
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: NodeName\n    args: {{}}\n"),
                "profiles[0].pluginConfig[0].args: Forbidden: keelson takes no arguments for plugin NodeName",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: InterPodAffinity\n  - name: InterPodAffinity\n"),
                r#"profiles[0].pluginConfig[1]: Duplicate value: "InterPodAffinity""#,
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: InterPodAffinity\n    args:\n      hardPodAffinityWeight: 101\n"),
                "profiles[0].pluginConfig[0].args.hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]",
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: PodTopologySpread\n    args:\n      defaultConstraints:\n      - maxSkew: 1\n        topologyKey: zone\n        whenUnsatisfiable: ScheduleAnyway\n"),
                r#"profiles[0].pluginConfig[0].args.defaultingType: Invalid value: "System": when .defaultConstraints are not empty"#,
            ),
            (
                format!("{HEAD}profiles:\n- pluginConfig:\n  - name: PodTopologySpread\n    args:\n      defaultingType: List\n      defaultConstraints:\n      - maxSkew: 0\n        topologyKey: zone\n        whenUnsatisfiable: Maybe\n        labelSelector: {{}}\n"),
                r#"defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf); profiles[0].pluginConfig[0].args.defaultConstraints[0].whenUnsatisfiable: Unsupported value: "Maybe": supported values: "DoNotSchedule", "ScheduleAnyway"; profiles[0].pluginConfig[0].args.defaultConstraints[0].labelSelector: Forbidden"#,
            ),
            (
                format!("{HEAD}profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NodeAffinity\n        weight: -2\n      - name: NodeAffinity\n"),
                r#"profiles[0].plugins.score.enabled[0].weight: Invalid value: -2: must not be negative; profiles[0].plugins.score.enabled[1].name: Duplicate value: "NodeAffinity""#,
            ),
            ("[1, 2]".into(), "expected a KubeSchedulerConfiguration object"),
            ("{\"apiVersion\": ".into(), "scheduler configuration test.yaml: invalid JSON"),
            (format!("{HEAD}profiles: 3\n"), "profiles: invalid type: integer `3`, expected a sequence"),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = load(Path::new("/nonexistent/sched.yaml")).expect_err("missing file");
        assert!(
            e.to_string()
                .starts_with("reading scheduler configuration /nonexistent/sched.yaml: "),
            "{e}"
        );
    }
}
