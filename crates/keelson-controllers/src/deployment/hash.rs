//! The `pod-template-hash`: a 32-bit FNV-1a hash of the pod template (and the collision
//! count), written with the same safe alphabet upstream uses so names look alike.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (and selector key) that ties a ReplicaSet's pods to its template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The hash of `template` with `collision_count` folded in, as a short safe string.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut bytes = serde_json::to_vec(&t).unwrap_or_default();
    if let Some(n) = collision_count {
        bytes.extend_from_slice(&n.to_le_bytes());
    }
    // Each decimal digit maps into the alphabet, as upstream's SafeEncodeString does.
    fnv1a32(&bytes)
        .to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Whether two templates are the same once the hash label is ignored.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut()
            && let Some(l) = m.labels.as_mut()
        {
            l.remove(POD_TEMPLATE_HASH);
            if l.is_empty() {
                m.labels = None;
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str, labels: &[(&str, &str)]) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()},
            "spec": {"containers": [{"name": "nginx", "image": image}]},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn hashes_are_stable_safe_and_tell_templates_apart() {
        let a = template("nginx:1.10", &[("app", "web")]);
        let h = template_hash(&a, None);
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)), "{h}");
        // (template, collision count, same hash as `a`)
        let cases = [
            (template("nginx:1.10", &[("app", "web")]), None, true),
            (
                template(
                    "nginx:1.10",
                    &[("app", "web"), (POD_TEMPLATE_HASH, h.as_str())],
                ),
                None,
                true,
            ),
            (template("nginx:1.11", &[("app", "web")]), None, false),
            (template("nginx:1.10", &[("app", "db")]), None, false),
            (template("nginx:1.10", &[("app", "web")]), Some(1), false),
        ];
        for (t, cc, same) in cases {
            assert_eq!(template_hash(&t, cc) == h, same, "{t:?} {cc:?}");
            assert_eq!(equal_ignoring_hash(&t, &a), same || cc.is_some(), "{t:?}");
        }
    }
}
