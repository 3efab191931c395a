//! The DNS server running on loopback, asked with hickory's client over UDP and TCP: cluster
//! names answered from the cache, other names forwarded to an upstream server (a second
//! instance answering another domain), ExternalName targets followed, SERVFAIL when no
//! upstream answers.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::rr::{DNSClass, Name, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::{DnsError, NetError};
use keelson_dns::cache::{Cache, Shared};
use keelson_dns::lookup::Zone;
use keelson_dns::server::{self, Handler, Running};
use keelson_dns::upstream::Resolvers;

fn cache() -> Shared {
    let mut c = Cache::default();
    let services = [
        serde_json::json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}}),
        serde_json::json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "web.default.svc.example.test"}}),
    ];
    for s in services {
        c.put_service(serde_json::from_value(s).unwrap());
    }
    Arc::new(std::sync::RwLock::new(c))
}

async fn start(domain: &str, upstream: Vec<SocketAddr>) -> Running {
    let handler = Handler {
        cache: cache(),
        zone: Zone::new(domain).unwrap(),
        upstream: Arc::new(Resolvers {
            servers: upstream,
            timeout: Duration::from_millis(500),
        }),
    };
    server::serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap()
}

/// Asks `addr` and renders the answer as `CODE rdata, rdata`.
async fn ask(addr: SocketAddr, tcp: bool, name: &str, qtype: RecordType) -> String {
    let provider = TokioRuntimeProvider::default();
    let mut client = if tcp {
        let (stream, sender) = TcpClientStream::new(addr, None, None, provider);
        let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await.unwrap(), sender);
        tokio::spawn(bg);
        client
    } else {
        let stream = UdpClientStream::builder(addr, provider).build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        client
    };
    let name = Name::from_str(name).unwrap();
    match client.query(name, DNSClass::IN, qtype).await {
        Ok(r) => {
            let data: Vec<String> = r.answers.iter().map(|a| a.data.to_string()).collect();
            let aa = if r.metadata.authoritative { " aa" } else { "" };
            let soa = r
                .authorities
                .iter()
                .any(|a| a.record_type() == RecordType::SOA);
            let soa = if soa { " soa" } else { "" };
            format!("{}{aa} {}{soa}", r.metadata.response_code, data.join(", "))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(n))) => {
            format!("{} soa={}", n.response_code, n.soa.is_some())
        }
        Err(e) => format!("ERR {e}"),
    }
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let upstream = start("example.test", vec![]).await;
    let dns = start("cluster.local", vec![upstream.addr]).await;
    let a = RecordType::A;
    for tcp in [false, true] {
        let cases: &[(&str, RecordType, &str)] = &[
            (
                "web.default.svc.cluster.local.",
                a,
                "No Error aa 10.43.0.20",
            ),
            (
                "nope.default.svc.cluster.local.",
                a,
                "Non-Existent Domain aa  soa",
            ),
            (
                "web.default.svc.cluster.local.",
                RecordType::AAAA,
                "No Error aa  soa",
            ),
            (
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV,
                "No Error aa 0 100 80 web.default.svc.cluster.local.",
            ),
            // Forwarded: the upstream instance answers its own domain.
            ("web.default.svc.example.test.", a, "No Error aa 10.43.0.20"),
            (
                "nope.default.svc.example.test.",
                a,
                "Non-Existent Domain aa  soa",
            ),
            // ExternalName: the CNAME, and its target resolved upstream.
            (
                "ext.default.svc.cluster.local.",
                a,
                "No Error aa web.default.svc.example.test., 10.43.0.20",
            ),
        ];
        for (name, qtype, want) in cases {
            let got = ask(dns.addr, tcp, name, *qtype).await;
            assert_eq!(&got, want, "{name} {qtype} tcp={tcp}");
        }
    }
    upstream.shutdown().await;
    dns.shutdown().await;
}

#[tokio::test]
async fn servfail_without_upstream() {
    // A bound socket that never answers stands for a dead upstream.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = start("cluster.local", vec![silent.local_addr().unwrap()]).await;
    let got = ask(dns.addr, false, "example.com.", RecordType::A).await;
    assert!(got.contains("Server Failure"), "{got}");
    // The cluster domain still answers.
    let got = ask(
        dns.addr,
        false,
        "web.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(got, "No Error aa 10.43.0.20");
    dns.shutdown().await;
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let dns = start("cluster.local", vec![]).await;
    let handler = Handler {
        cache: cache(),
        zone: Zone::new("cluster.local").unwrap(),
        upstream: Arc::new(Resolvers {
            servers: vec![],
            timeout: Duration::from_millis(50),
        }),
    };
    let err = server::serve(dns.addr, handler).await.err().unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("listening for DNS on UDP {}", dns.addr)),
        "{err}"
    );
}
