//! The Lease kind (coordination.k8s.io/v1): the `kubectl get leases` table.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, col, name_cell, s, str_at};

pub static STRATEGY: Typed<Lease> = Typed::new("Lease", "v1")
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row);

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
    ),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        s(str_at(obj, &["spec", "holderIdentity"]).unwrap_or("")),
        age_cell(obj, now),
    ]
}
