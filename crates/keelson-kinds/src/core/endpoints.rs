//! The Endpoints kind (v1): defaults and the `kubectl get endpoints` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Endpoints;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, col, int_at, name_cell, s, str_at};

pub static STRATEGY: Typed<Endpoints> = Typed::new("Endpoints", "v1")
    .defaults(defaults)
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row);

fn defaults(ep: &mut Endpoints) {
    for port in ep
        .subsets
        .iter_mut()
        .flatten()
        .flat_map(|s| s.ports.iter_mut().flatten())
    {
        set_str(&mut port.protocol, "TCP");
    }
}

static COLUMNS: &[Column] = &[NAME, col("Endpoints", "Endpoints of the service"), AGE];

/// `ip:port`, with brackets around IPv6 addresses as net.JoinHostPort.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// upstream's formatEndpoints: at most three, then ` + N more...`; `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            list.extend(
                addresses
                    .iter()
                    .take(MAX.saturating_sub(list.len()))
                    .map(|a| str_at(a, &["ip"]).unwrap_or("").to_string()),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let p = int_at(port, &["port"]).unwrap_or(0);
            list.extend(
                addresses
                    .iter()
                    .take(MAX.saturating_sub(list.len()))
                    .map(|a| host_port(str_at(a, &["ip"]).unwrap_or(""), p)),
            );
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), s(format_endpoints(obj)), age_cell(obj, now)]
}
