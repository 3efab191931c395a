//! Tests of the cluster PKI: certificates on disk, what they name, and real TLS handshakes
//! between `client_config` and `server_config` over an in-memory duplex stream.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use keelson_pki::Identity;
use keelson_pki::tls::{self, Pki};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn admin() -> Identity {
    Identity {
        user: "admin".to_owned(),
        groups: strings(&["system:masters"]),
    }
}

fn fresh_pki(sans: &[&str]) -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = tls::load_or_create(&dir.path().join("pki"), &strings(sans)).expect("create pki");
    (dir, pki)
}

/// What the server saw after a handshake.
#[derive(Debug)]
struct Seen {
    identity: Option<Identity>,
    alpn: Option<Vec<u8>>,
    message: Vec<u8>,
}

/// Runs a handshake of `client` against `server` for `server_name`, sends "ping" and returns
/// what the server saw, or the server-side error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<Seen, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let serve = async move {
        let mut stream = tokio_rustls::TlsAcceptor::from(server)
            .accept(server_io)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let (_, conn) = stream.get_ref();
        let identity = tls::peer_identity(conn);
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let mut message = vec![0u8; 4];
        stream
            .read_exact(&mut message)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        Ok::<_, String>(Seen {
            identity,
            alpn,
            message,
        })
    };
    let connect = async move {
        let connector = tokio_rustls::TlsConnector::from(client);
        match connector.connect(name, client_io).await {
            Ok(mut stream) => {
                // A rejected client certificate surfaces on the server; ignore write errors.
                let _ = stream.write_all(b"ping").await;
                let _ = stream.flush().await;
                Some(stream)
            }
            Err(_) => None,
        }
    };
    let (seen, _client) = tokio::join!(serve, connect);
    seen
}

fn with_alpn(config: Arc<rustls::ClientConfig>, protocols: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = (*config).clone();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[test]
fn server_certificate_carries_requested_and_default_sans() {
    let requested = ["10.96.0.1", "node-1.example.com", "::1", "keelson.local"];
    let (_dir, pki) = fresh_pki(&requested);
    let sans = tls::certificate_sans(&pki.server_cert_pem).expect("sans");
    for want in requested.iter().chain(tls::DEFAULT_SERVER_SANS.iter()) {
        assert!(
            sans.iter().any(|s| s == want),
            "{want} missing from {sans:?}"
        );
    }
}

#[test]
fn invalid_san_is_rejected_with_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = tls::load_or_create(dir.path(), &strings(&["bad name!"])).expect_err("bad san");
    assert!(err.to_string().contains("bad name!"), "{err}");
}

#[tokio::test]
async fn admin_client_is_identified_by_server() {
    let (_dir, pki) = fresh_pki(&[]);
    let server = tls::server_config(&pki).expect("server config");
    let client = tls::client_config(&pki.ca_cert_pem, &pki.admin_cert_pem, &pki.admin_key_pem)
        .expect("client config");
    let seen = handshake(server, with_alpn(client, &[b"h2"]), "localhost")
        .await
        .expect("handshake");
    assert_eq!(seen.identity, Some(admin()));
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen.message, b"ping");
}

#[tokio::test]
async fn server_offers_http1_alpn_too() {
    let (_dir, pki) = fresh_pki(&[]);
    let server = tls::server_config(&pki).expect("server config");
    let client = tls::anonymous_client_config(&pki.ca_cert_pem).expect("client config");
    let seen = handshake(server, with_alpn(client, &[b"http/1.1"]), "127.0.0.1")
        .await
        .expect("handshake");
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_without_certificate_connects_without_identity() {
    let (_dir, pki) = fresh_pki(&[]);
    let server = tls::server_config(&pki).expect("server config");
    let client = tls::anonymous_client_config(&pki.ca_cert_pem).expect("client config");
    let seen = handshake(server, client, "kubernetes.default.svc")
        .await
        .expect("handshake");
    assert_eq!(seen.identity, None);
    assert_eq!(seen.message, b"ping");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_rejected() {
    let (_dir, pki) = fresh_pki(&[]);
    let (_other_dir, other) = fresh_pki(&[]);
    let server = tls::server_config(&pki).expect("server config");
    let client = tls::client_config(
        &pki.ca_cert_pem,
        &other.admin_cert_pem,
        &other.admin_key_pem,
    )
    .expect("client config");
    let result = handshake(server, client, "localhost").await;
    let err = result.expect_err("foreign client cert accepted");
    assert!(err.contains("server: invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn client_does_not_trust_a_server_from_another_ca() {
    let (_dir, pki) = fresh_pki(&[]);
    let (_other_dir, other) = fresh_pki(&[]);
    let server = tls::server_config(&other).expect("server config");
    let client = tls::anonymous_client_config(&pki.ca_cert_pem).expect("client config");
    let result = handshake(server, client, "localhost").await;
    let err = result.expect_err("untrusted server accepted");
    // Both CAs are called keelson-ca, so the client finds a bad signature and says so.
    assert!(
        err.contains("server: received fatal alert"),
        "the client did not refuse the server: {err}"
    );
}

#[tokio::test]
async fn issued_client_certs_carry_user_and_every_group() {
    let (_dir, pki) = fresh_pki(&[]);
    let server = tls::server_config(&pki).expect("server config");
    let cases: [(&str, &[&str]); 4] = [
        ("system:node:worker-1", &["system:nodes"]),
        ("alice", &[]),
        ("bob", &["dev", "ops", "system:authenticated-ish", "grüppe"]),
        ("system:serviceaccount:ns:sa", &["a", "b"]),
    ];
    for (user, groups) in cases {
        let (cert, key) =
            tls::issue_client_cert(&pki.ca_cert_pem, &pki.ca_key_pem, user, &strings(groups))
                .expect("issue");
        let want = Identity {
            user: user.to_owned(),
            groups: strings(groups),
        };
        let der = rustls_pemfile::certs(&mut cert.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        assert_eq!(tls::identity_from_cert(&der), Some(want.clone()), "{user}");
        let client = tls::client_config(&pki.ca_cert_pem, &cert, &key).expect("client config");
        let seen = handshake(server.clone(), client, "localhost")
            .await
            .expect("handshake");
        assert_eq!(seen.identity, Some(want), "{user}");
    }
}

#[test]
fn client_cert_needs_a_user() {
    let (_dir, pki) = fresh_pki(&[]);
    let err =
        tls::issue_client_cert(&pki.ca_cert_pem, &pki.ca_key_pem, "", &[]).expect_err("empty user");
    assert!(err.to_string().contains("user name"), "{err}");
}

#[test]
fn identity_from_garbage_is_none() {
    for der in [
        &b""[..],
        b"not a certificate",
        &[0x30, 0x03, 0x02, 0x01, 0x01],
    ] {
        assert_eq!(tls::identity_from_cert(der), None);
    }
}

#[test]
fn server_certificate_names_the_api_server() {
    // The server certificate names the API server, not a user in a group.
    let (_dir, pki) = fresh_pki(&[]);
    let der = rustls_pemfile::certs(&mut pki.server_cert_pem.as_bytes())
        .next()
        .expect("one cert")
        .expect("pem");
    let identity = tls::identity_from_cert(&der).expect("identity");
    assert_eq!(identity.user, tls::SERVER_COMMON_NAME);
    assert!(identity.groups.is_empty());
}

#[test]
fn load_or_create_twice_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sans = strings(&["10.0.0.7"]);
    let first = tls::load_or_create(dir.path(), &sans).expect("first");
    let second = tls::load_or_create(dir.path(), &sans).expect("second");
    assert_eq!(first, second);
}

#[tokio::test]
async fn new_san_reissues_server_cert_but_keeps_the_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = tls::load_or_create(dir.path(), &strings(&["10.0.0.7"])).expect("first");
    let second = tls::load_or_create(dir.path(), &strings(&["10.0.0.7", "api.example.org"]))
        .expect("second");
    assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
    assert_eq!(first.ca_key_pem, second.ca_key_pem);
    assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
    assert_ne!(first.server_cert_pem, second.server_cert_pem);
    let sans = tls::certificate_sans(&second.server_cert_pem).expect("sans");
    assert!(sans.contains(&"api.example.org".to_owned()), "{sans:?}");
    assert!(sans.contains(&"10.0.0.7".to_owned()), "{sans:?}");
    // The re-issued certificate was signed by the CA loaded from disk: a client trusting the
    // original CA accepts it under the new name.
    let server = tls::server_config(&second).expect("server config");
    let client = tls::client_config(
        &first.ca_cert_pem,
        &first.admin_cert_pem,
        &first.admin_key_pem,
    )
    .expect("client config");
    let seen = handshake(server, client, "api.example.org")
        .await
        .expect("handshake");
    assert_eq!(seen.identity, Some(admin()));
}

#[test]
fn damaged_leaf_files_are_reissued() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = tls::load_or_create(dir.path(), &[]).expect("first");
    let other = tempfile::tempdir().expect("temp dir");
    let foreign = tls::load_or_create(other.path(), &[]).expect("foreign");
    let cases: [(&str, &str, String); 3] = [
        ("server.crt", "garbage", "server.crt".to_owned()),
        ("admin.key", "", "admin.crt".to_owned()),
        ("admin.crt", &foreign.admin_cert_pem, "admin.crt".to_owned()),
    ];
    for (file, contents, changed) in cases {
        std::fs::write(dir.path().join(file), contents).expect("damage");
        let again = tls::load_or_create(dir.path(), &[]).expect("reload");
        assert_eq!(again.ca_cert_pem, first.ca_cert_pem, "{file}");
        let on_disk = std::fs::read_to_string(dir.path().join(&changed)).expect("read");
        let (now, before) = match changed.as_str() {
            "server.crt" => (&again.server_cert_pem, &first.server_cert_pem),
            _ => (&again.admin_cert_pem, &first.admin_cert_pem),
        };
        assert_ne!(now, before, "{file} not re-issued");
        assert_eq!(&on_disk, now, "{file} not stored");
        tls::client_config(
            &again.ca_cert_pem,
            &again.admin_cert_pem,
            &again.admin_key_pem,
        )
        .expect("usable admin pair");
    }
}

#[test]
fn ca_certificate_without_its_key_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    tls::load_or_create(dir.path(), &[]).expect("create");
    std::fs::remove_file(dir.path().join("ca.key")).expect("remove key");
    let err = tls::load_or_create(dir.path(), &[]).expect_err("missing key");
    assert!(err.to_string().contains("ca.key"), "{err}");
}

#[test]
fn files_have_expected_modes() {
    let (dir, _pki) = fresh_pki(&[]);
    let pki_dir = dir.path().join("pki");
    let check = |file: &str, mode: u32| {
        let meta = std::fs::metadata(pki_dir.join(file)).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    };
    for key in ["ca.key", "server.key", "admin.key"] {
        check(key, 0o600);
    }
    for cert in ["ca.crt", "server.crt", "admin.crt"] {
        check(cert, 0o644);
    }
    let dir_mode = std::fs::metadata(Path::new(&pki_dir))
        .expect("dir")
        .permissions();
    assert_eq!(dir_mode.mode() & 0o777, 0o700);
}

#[test]
fn files_on_disk_are_what_was_returned() {
    let (dir, pki) = fresh_pki(&[]);
    let read = |file: &str| std::fs::read_to_string(dir.path().join("pki").join(file)).expect(file);
    let cases = [
        ("ca.crt", &pki.ca_cert_pem),
        ("ca.key", &pki.ca_key_pem),
        ("server.crt", &pki.server_cert_pem),
        ("server.key", &pki.server_key_pem),
        ("admin.crt", &pki.admin_cert_pem),
        ("admin.key", &pki.admin_key_pem),
    ];
    for (file, want) in cases {
        assert_eq!(&read(file), want, "{file}");
    }
}

#[test]
fn openssl_verifies_the_chain_and_purposes() {
    let (dir, pki) = fresh_pki(&[]);
    let (bob_cert, _) = tls::issue_client_cert(
        &pki.ca_cert_pem,
        &pki.ca_key_pem,
        "bob",
        &strings(&["g1", "g2"]),
    )
    .expect("issue");
    let bob = dir.path().join("bob.crt");
    std::fs::write(&bob, bob_cert).expect("write bob");
    let pki_dir = dir.path().join("pki");
    let cases = [
        ("sslclient", pki_dir.join("admin.crt")),
        ("sslclient", bob),
        ("sslserver", pki_dir.join("server.crt")),
    ];
    for (purpose, cert) in cases {
        let output = match std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(pki_dir.join("ca.crt"))
            .args(["-purpose", purpose])
            .arg(&cert)
            .output()
        {
            Ok(output) => output,
            Err(e) => {
                println!("skipping openssl check: openssl not runnable ({e})");
                return;
            }
        };
        assert!(
            output.status.success(),
            "{} as {purpose}: {}{}",
            cert.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
