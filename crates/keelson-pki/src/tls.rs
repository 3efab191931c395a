//! The cluster CA and the certificates it signs (API server, admin, agents), plus the rustls
//! server/client configs and the client identities read from verified certificates.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm, SigningKey,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use yasna::models::{GeneralizedTime, ObjectIdentifier, UTCTime};
use yasna::{DERWriter, Tag};

use crate::{Identity, fsutil};

/// Common name of the self-signed cluster CA.
pub const CA_COMMON_NAME: &str = "keelson-ca";
/// Common name of the API server's serving certificate.
pub const SERVER_COMMON_NAME: &str = "kube-apiserver";
/// User name (CN) of the admin client certificate.
pub const ADMIN_USER: &str = "admin";
/// Group (O) of the admin client certificate.
pub const ADMIN_GROUP: &str = "system:masters";
/// User name (CN) of the client certificate the API server presents to node agents.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Names every server certificate carries, whatever the caller asks for.
pub const DEFAULT_SERVER_SANS: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];
/// How long the cluster CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long server and client certificates are valid.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// `load_or_create` re-issues a server or admin certificate that expires within this many days.
pub const RENEW_WITHIN_DAYS: i64 = 30;

/// File names under the PKI directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const ADMIN_CERT_FILE: &str = "admin.crt";
pub const ADMIN_KEY_FILE: &str = "admin.key";

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
/// Certificates start an hour in the past so a peer with a slightly slow clock accepts them.
const BACKDATE: Duration = Duration::hours(1);

const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// Signature algorithm identifiers for the CA key types this module can sign client
/// certificates with (ECDSA identifiers carry no parameters).
const SIGNATURE_OIDS: [(&SignatureAlgorithm, &[u64]); 3] = [
    (&rcgen::PKCS_ECDSA_P256_SHA256, &[1, 2, 840, 10045, 4, 3, 2]),
    (&rcgen::PKCS_ECDSA_P384_SHA384, &[1, 2, 840, 10045, 4, 3, 3]),
    (&rcgen::PKCS_ED25519, &[1, 3, 101, 112]),
];

/// Errors of the certificate and TLS functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{present} exists but {missing} does not; refusing to replace the cluster CA")]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error("invalid certificate {what}: {reason}")]
    InvalidCert { what: String, reason: String },
    #[error("invalid private key {what}: {reason}")]
    InvalidKey { what: String, reason: String },
    #[error("invalid subject alternative name {name:?}: {reason}")]
    InvalidSan { name: String, reason: String },
    #[error("invalid user name {user:?}: must not be empty")]
    InvalidUser { user: String },
    #[error("cannot generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("cannot sign client certificates with a CA key of algorithm {algorithm}")]
    UnsupportedCaKey { algorithm: String },
    #[error("cannot build client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot build tls config: {0}")]
    Tls(#[from] rustls::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cluster's CA and the certificates `load_or_create` keeps beside it, all PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl fmt::Debug for Pki {
    /// Shows the certificates but never the private keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("ca_key_pem", &"[elided]")
            .field("server_cert_pem", &self.server_cert_pem)
            .field("server_key_pem", &"[elided]")
            .field("admin_cert_pem", &self.admin_cert_pem)
            .field("admin_key_pem", &"[elided]")
            .finish()
    }
}

/// Loads the PKI kept under `dir`, creating whatever is missing.
///
/// The CA is created only when neither `ca.crt` nor `ca.key` exists (a `ca.crt` without its key
/// is an error rather than a silent replacement). The server certificate is re-issued when it is
/// missing, unreadable, not signed by the CA, not matching its key, expiring within
/// [`RENEW_WITHIN_DAYS`], or lacking one of `server_sans` or [`DEFAULT_SERVER_SANS`]; the admin
/// certificate likewise when it no longer names `admin`/`system:masters`.
pub fn load_or_create(dir: &Path, server_sans: &[String]) -> Result<Pki> {
    fsutil::create_private_dir(dir).map_err(|source| Error::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let sans = server_san_list(server_sans)?;
    let (ca, ca_is_new) = load_or_create_ca(dir)?;
    let (server_cert_pem, server_key_pem) = ensure_leaf(
        &ca,
        LeafFiles::new(dir, SERVER_CERT_FILE, SERVER_KEY_FILE),
        !ca_is_new,
        |cert| sans.iter().all(|san| cert_sans(cert).contains(san)),
        || issue_server(&ca, SERVER_COMMON_NAME, &sans),
    )?;
    let admin = Identity {
        user: ADMIN_USER.to_owned(),
        groups: vec![ADMIN_GROUP.to_owned()],
    };
    let (admin_cert_pem, admin_key_pem) = ensure_leaf(
        &ca,
        LeafFiles::new(dir, ADMIN_CERT_FILE, ADMIN_KEY_FILE),
        !ca_is_new,
        |cert| identity_of(cert).as_ref() == Some(&admin) && has_client_auth(cert),
        || issue_client(&ca, &admin.user, &admin.groups),
    )?;
    Ok(Pki {
        ca_cert_pem: ca.cert_pem,
        ca_key_pem: ca.key_pem,
        server_cert_pem,
        server_key_pem,
        admin_cert_pem,
        admin_key_pem,
    })
}

/// Issues a client certificate (client-auth EKU) for `user` (CN) in `groups` (one O each),
/// signed by the given CA. Returns (certificate PEM, private key PEM).
pub fn issue_client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    user: &str,
    groups: &[String],
) -> Result<(String, String)> {
    let ca = Ca::from_pem(ca_cert_pem, ca_key_pem, "CA certificate", "CA key")?;
    issue_client(&ca, user, groups)
}

/// Issues a serving certificate (server-auth EKU) for `common_name` with the subject
/// alternative names `sans` (DNS names or IP addresses), signed by the given CA: a node agent's
/// certificate. Returns (certificate PEM, private key PEM).
pub fn issue_serving_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    sans: &[String],
) -> Result<(String, String)> {
    let ca = Ca::from_pem(ca_cert_pem, ca_key_pem, "CA certificate", "CA key")?;
    let mut list: Vec<San> = Vec::new();
    for name in sans {
        let san = San::parse(name)?;
        if !list.contains(&san) {
            list.push(san);
        }
    }
    issue_server(&ca, common_name, &list)
}

/// The rustls server config of the API server: its certificate, ALPN `h2` and `http/1.1`, and
/// client certificates verified against the cluster CA. Clients without a certificate are let
/// through (the HTTP layer answers them 401, except on open endpoints); a client certificate
/// the CA did not sign fails the handshake.
pub fn server_config(pki: &Pki) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(root_store(&pki.ca_cert_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = parse_certs(&pki.server_cert_pem, "server certificate")?;
    let key = parse_key(&pki.server_key_pem, "server key")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client config that trusts the cluster CA and presents the given client
/// certificate. No ALPN protocols are set; clone the config and set them if needed.
pub fn client_config(
    ca_cert_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<ClientConfig>> {
    let chain = parse_certs(client_cert_pem, "client certificate")?;
    let key = parse_key(client_key_pem, "client key")?;
    let config = client_builder(ca_cert_pem)?.with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A rustls client config that trusts the cluster CA and presents no certificate (an
/// anonymous caller, e.g. a health probe).
pub fn anonymous_client_config(ca_cert_pem: &str) -> Result<Arc<ClientConfig>> {
    Ok(Arc::new(client_builder(ca_cert_pem)?.with_no_client_auth()))
}

/// A rustls client config that does not verify the server's certificate (signatures are
/// still checked): what upstream uses for HTTPS probes and the apiserver's proxy to pods,
/// whose certificates no CA of the cluster signs. No ALPN protocols are set.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate, checking only that the handshake is signed by it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The user (subject CN) and groups (subject O values) a client certificate names, or `None`
/// when it does not parse or has no common name. Call it only on a certificate the TLS layer
/// verified.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    identity_of(&cert)
}

/// The identity of the peer of a finished server-side handshake, if it sent a certificate.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Identity> {
    let leaf = conn.peer_certificates()?.first()?;
    identity_from_cert(leaf.as_ref())
}

/// The subject alternative names of the first certificate in `cert_pem`: DNS names as written,
/// IP addresses in their canonical text form.
pub fn certificate_sans(cert_pem: &str) -> Result<Vec<String>> {
    let der = first_cert(cert_pem, "certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| Error::InvalidCert {
        what: "certificate".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(cert_sans(&cert).iter().map(San::to_string).collect())
}

/// One subject alternative name, compared case-insensitively for DNS names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    fn parse(name: &str) -> Result<San> {
        let name = name.trim();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'));
        if !valid {
            return Err(Error::InvalidSan {
                name: name.to_owned(),
                reason: "not an IP address or DNS name".to_owned(),
            });
        }
        Ok(San::Dns(name.to_ascii_lowercase()))
    }

    fn to_rcgen(&self) -> Result<SanType> {
        match self {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(name) => {
                name.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| Error::InvalidSan {
                        name: name.clone(),
                        reason: e.to_string(),
                    })
            }
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The defaults followed by the requested names, without duplicates.
fn server_san_list(requested: &[String]) -> Result<Vec<San>> {
    let mut sans: Vec<San> = Vec::new();
    let all = DEFAULT_SERVER_SANS
        .iter()
        .copied()
        .chain(requested.iter().map(String::as_str));
    for name in all {
        let san = San::parse(name)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn cert_sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(San::Ip),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn identity_of(cert: &X509Certificate<'_>) -> Option<Identity> {
    // Like Go's pkix.Name, the last CN wins.
    let user = cert.subject().iter_common_name().last()?.as_str().ok()?;
    if user.is_empty() {
        return None;
    }
    let groups = cert
        .subject()
        .iter_organization()
        .filter_map(|attr| attr.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some(Identity {
        user: user.to_owned(),
        groups,
    })
}

fn has_client_auth(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

/// The loaded or generated cluster CA.
struct Ca {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl Ca {
    fn generate() -> Result<Ca> {
        let key = generate_key("CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(|source| generate_error("CA certificate", source))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    fn from_pem(cert_pem: &str, key_pem: &str, cert_what: &str, key_what: &str) -> Result<Ca> {
        let cert_der = first_cert(cert_pem, cert_what)?;
        let invalid = |reason: String| Error::InvalidCert {
            what: cert_what.to_owned(),
            reason,
        };
        let (_, cert) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| invalid(e.to_string()))?;
        if !cert.is_ca() {
            return Err(invalid("not a CA certificate".to_owned()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::InvalidKey {
            what: key_what.to_owned(),
            reason: e.to_string(),
        })?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(invalid(format!("does not match {key_what}")));
        }
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der,
            key,
        })
    }

    fn parsed(&self) -> Result<X509Certificate<'_>> {
        x509_parser::parse_x509_certificate(&self.cert_der)
            .map(|(_, cert)| cert)
            .map_err(|e| Error::InvalidCert {
                what: "CA certificate".to_owned(),
                reason: e.to_string(),
            })
    }
}

/// Loads the CA from `dir`, or creates it there. The flag says whether it was created.
fn load_or_create_ca(dir: &Path) -> Result<(Ca, bool)> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert), Some(key)) => {
            let ca = Ca::from_pem(
                &cert,
                &key,
                &cert_path.display().to_string(),
                &key_path.display().to_string(),
            )?;
            Ok((ca, false))
        }
        (Some(_), None) => Err(Error::IncompleteCa {
            present: cert_path,
            missing: key_path,
        }),
        // A key without its certificate was never handed to anyone: start over.
        (None, _) => {
            let ca = Ca::generate()?;
            write_file(&key_path, &ca.key_pem, KEY_MODE)?;
            write_file(&cert_path, &ca.cert_pem, CERT_MODE)?;
            Ok((ca, true))
        }
    }
}

/// Where one leaf certificate and its key live.
struct LeafFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl LeafFiles {
    fn new(dir: &Path, cert: &str, key: &str) -> LeafFiles {
        LeafFiles {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// Returns the stored certificate and key when `reuse` allows and they are still good,
/// else issues, stores and returns new ones.
fn ensure_leaf(
    ca: &Ca,
    files: LeafFiles,
    reuse: bool,
    wanted: impl Fn(&X509Certificate<'_>) -> bool,
    issue: impl FnOnce() -> Result<(String, String)>,
) -> Result<(String, String)> {
    if reuse
        && let (Some(cert), Some(key)) = (read_optional(&files.cert)?, read_optional(&files.key)?)
        && leaf_is_good(ca, &cert, &key, &wanted)?
    {
        return Ok((cert, key));
    }
    let (cert, key) = issue()?;
    write_file(&files.key, &key, KEY_MODE)?;
    write_file(&files.cert, &cert, CERT_MODE)?;
    Ok((cert, key))
}

/// Whether a stored leaf certificate is signed by `ca`, matches its key, is not about to
/// expire and satisfies `wanted`. Unparseable files are simply not good.
fn leaf_is_good(
    ca: &Ca,
    cert_pem: &str,
    key_pem: &str,
    wanted: impl Fn(&X509Certificate<'_>) -> bool,
) -> Result<bool> {
    let Ok(der) = first_cert(cert_pem, "leaf certificate") else {
        return Ok(false);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Ok(false);
    };
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return Ok(false);
    };
    let ca_cert = ca.parsed()?;
    let renew_at = OffsetDateTime::now_utc() + Duration::days(RENEW_WITHIN_DAYS);
    Ok(
        cert.public_key().raw == key.subject_public_key_info().as_slice()
            && cert.verify_signature(Some(ca_cert.public_key())).is_ok()
            && cert.validity().not_after.timestamp() > renew_at.unix_timestamp()
            && wanted(&cert),
    )
}

fn issue_server(ca: &Ca, cn: &str, sans: &[San]) -> Result<(String, String)> {
    let key = generate_key("server key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity(LEAF_VALIDITY_DAYS);
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key)
        .map_err(|source| generate_error("server certificate", source))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| generate_error("server certificate", source))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a client certificate. rcgen's subject names hold one value per attribute type, and
/// Kubernetes reads one group per O attribute, so the certificate is encoded here.
fn issue_client(ca: &Ca, user: &str, groups: &[String]) -> Result<(String, String)> {
    if user.is_empty() {
        return Err(Error::InvalidUser {
            user: user.to_owned(),
        });
    }
    let algorithm = ca.key.algorithm();
    let signature_oid = SIGNATURE_OIDS
        .iter()
        .find(|(alg, _)| *alg == algorithm)
        .map(|(_, oid)| ObjectIdentifier::from_slice(oid))
        .ok_or_else(|| Error::UnsupportedCaKey {
            algorithm: format!("{algorithm:?}"),
        })?;
    let ca_cert = ca.parsed()?;
    let ca_key_id = subject_key_id(&ca_cert);
    let key = generate_key("client key")?;
    let spki = key.subject_public_key_info();
    let (not_before, not_after) = validity(LEAF_VALIDITY_DAYS);
    let serial = random_serial()?;

    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            w.next().write_bigint_bytes(&serial, true);
            w.next()
                .write_sequence(|w| w.next().write_oid(&signature_oid));
            w.next().write_der(ca_cert.subject().as_raw());
            w.next().write_sequence(|w| {
                write_time(w.next(), not_before);
                write_time(w.next(), not_after);
            });
            w.next().write_sequence(|w| {
                for group in groups {
                    write_rdn(w.next(), OID_ORGANIZATION, group);
                }
                write_rdn(w.next(), OID_COMMON_NAME, user);
            });
            w.next().write_der(&spki);
            w.next().write_tagged(Tag::context(3), |w| {
                w.write_sequence(|w| {
                    write_client_extensions(w, &spki, ca_key_id.as_deref());
                })
            });
        })
    });
    let signature = ca
        .key
        .sign(&tbs)
        .map_err(|source| generate_error("client certificate", source))?;
    let cert = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next()
                .write_sequence(|w| w.next().write_oid(&signature_oid));
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    });
    Ok((pem_encode("CERTIFICATE", &cert), key.serialize_pem()))
}

fn write_client_extensions(w: &mut yasna::DERWriterSeq<'_>, spki: &[u8], ca_key_id: Option<&[u8]>) {
    let key_usage = yasna::construct_der(|w| w.write_bitvec_bytes(&[0x80], 1));
    let ext_key_usage = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(OID_CLIENT_AUTH))
        })
    });
    let basic_constraints = yasna::construct_der(|w| w.write_sequence(|_| {}));
    let own_key_id = yasna::construct_der(|w| w.write_bytes(&key_id(spki)));
    write_extension(w.next(), OID_KEY_USAGE, true, &key_usage);
    write_extension(w.next(), OID_EXT_KEY_USAGE, false, &ext_key_usage);
    write_extension(w.next(), OID_BASIC_CONSTRAINTS, true, &basic_constraints);
    write_extension(w.next(), OID_SUBJECT_KEY_ID, false, &own_key_id);
    if let Some(id) = ca_key_id {
        let authority_key_id = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(id))
            })
        });
        write_extension(w.next(), OID_AUTHORITY_KEY_ID, false, &authority_key_id);
    }
}

fn write_extension(w: DERWriter<'_>, oid: &[u64], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    });
}

fn write_rdn(w: DERWriter<'_>, oid: &[u64], value: &str) {
    w.write_set(|w| {
        w.next().write_sequence(|w| {
            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
            w.next().write_utf8_string(value);
        })
    });
}

/// RFC 5280: UTCTime through 2049, GeneralizedTime from 2050, whole seconds.
fn write_time(w: DERWriter<'_>, at: OffsetDateTime) {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    match UTCTime::from_datetime_opt(at) {
        Some(utc) => w.write_utctime(&utc),
        None => w.write_generalized_time(&GeneralizedTime::from_datetime(at)),
    }
}

/// The key identifier of a public key: SHA-256 of the SubjectPublicKeyInfo, cut to 20 bytes.
fn key_id(spki: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    digest.as_ref()[..20].to_vec()
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// A random positive serial number of at most 16 bytes.
fn random_serial() -> Result<[u8; 16]> {
    use ring::rand::SecureRandom as _;
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| generate_error("client certificate", rcgen::Error::RingUnspecified))?;
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(serial)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - BACKDATE, now + Duration::days(days))
}

fn generate_key(what: &str) -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| generate_error(what, source))
}

fn generate_error(what: &str, source: rcgen::Error) -> Error {
    Error::Generate {
        what: what.to_owned(),
        source,
    }
}

fn root_store(ca_cert_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_cert_pem, "CA certificate")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn client_builder(
    ca_cert_pem: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_cert_pem)?))
}

/// Every certificate in a PEM bundle; at least one is required.
fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidCert {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidCert {
            what: what.to_owned(),
            reason: "no CERTIFICATE block in PEM".to_owned(),
        });
    }
    Ok(certs)
}

fn first_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>> {
    let mut certs = parse_certs(pem, what)?;
    Ok(certs.swap_remove(0))
}

fn parse_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>> {
    let invalid = |reason: String| Error::InvalidKey {
        what: what.to_owned(),
        reason,
    };
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid("no PRIVATE KEY block in PEM".to_owned()))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    fsutil::write_atomic(path, contents.as_bytes(), mode).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}
