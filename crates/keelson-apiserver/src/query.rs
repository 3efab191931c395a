//! The query parameters of resource requests.

use keelson_apimachinery::ApiError;

/// Parsed query parameters (unknown ones are ignored, as upstream does).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub send_initial_events: Option<bool>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub include_object: Option<String>,
    pub force: bool,
}

fn boolean(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T")
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query::default();
        for (k, v) in crate::request::query_pairs(raw) {
            match k.as_str() {
                "labelSelector" => q.label_selector = Some(v).filter(|s| !s.is_empty()),
                "fieldSelector" => q.field_selector = Some(v).filter(|s| !s.is_empty()),
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit: {v:?}")))?;
                    q.limit = (n > 0).then_some(n as usize);
                }
                "continue" => q.continue_token = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => q.resource_version = Some(v).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => {
                    q.resource_version_match = Some(v).filter(|s| !s.is_empty())
                }
                "watch" => q.watch = boolean(&v),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = boolean(&v),
                "timeoutSeconds" => q.timeout_seconds = v.parse().ok(),
                "sendInitialEvents" => q.send_initial_events = Some(boolean(&v)),
                "dryRun" => {
                    if v != "All" && !v.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {v}: supported values: \"All\""
                        )));
                    }
                    q.dry_run = v == "All";
                }
                "fieldManager" => q.field_manager = Some(v),
                "fieldValidation" => {
                    if !matches!(v.as_str(), "" | "Ignore" | "Warn" | "Strict") {
                        return Err(ApiError::bad_request(format!(
                            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {v:?}"
                        )));
                    }
                    q.field_validation = Some(v).filter(|s| !s.is_empty());
                }
                "gracePeriodSeconds" => q.grace_period_seconds = v.parse().ok(),
                "propagationPolicy" => q.propagation_policy = Some(v),
                "orphanDependents" => q.orphan_dependents = Some(boolean(&v)),
                "includeObject" => q.include_object = Some(v),
                "force" => q.force = boolean(&v),
                _ => {}
            }
        }
        if let Some(m) = &q.resource_version_match {
            if !matches!(m.as_str(), "Exact" | "NotOlderThan") {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
            if q.resource_version.is_none() && !q.watch {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided"
                        .to_string(),
                ));
            }
        }
        Ok(q)
    }

    /// The explicit resource version as a revision, if one was given (`0` means "any").
    pub fn revision(&self) -> Result<Option<i64>, ApiError> {
        match &self.resource_version {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}"))),
        }
    }
}
