//! The cluster CA, the certificates it signs, rustls configs and kubeconfig files.

mod fsutil;
pub mod kubeconfig;
pub mod tls;

/// Who a verified client certificate says the caller is (CN = user, O = groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}
