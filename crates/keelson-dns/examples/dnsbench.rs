//! Measures the DNS server on loopback: a cache of N Services (default 10,000), A queries for
//! random ones over UDP with hickory's client, C at a time; prints queries per second and the
//! latency percentiles, with the machine's core count.
//!
//! `cargo run --release -p keelson-dns --example dnsbench -- [SERVICES] [QUERIES] [CONCURRENCY]`

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::rr::{DNSClass, Name, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use keelson_dns::cache::Cache;
use keelson_dns::lookup::Zone;
use keelson_dns::server::{self, Handler};
use keelson_dns::upstream::Resolvers;

#[tokio::main]
async fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (services, queries, concurrency) = (arg(1, 10_000), arg(2, 20_000), arg(3, 8));
    let mut cache = Cache::default();
    for i in 0..services {
        let svc = serde_json::json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
            "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1)},
        });
        cache.put_service(serde_json::from_value(svc).expect("service"));
    }
    let handler = Handler {
        cache: Arc::new(std::sync::RwLock::new(cache)),
        zone: Zone::new("cluster.local").expect("zone"),
        upstream: Arc::new(Resolvers {
            servers: vec![],
            timeout: Duration::from_secs(1),
        }),
    };
    let running = server::serve("127.0.0.1:0".parse().expect("addr"), handler)
        .await
        .expect("serve");
    let addr = running.addr;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
            let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(bg);
            let mut lat = Vec::new();
            for q in (w..queries).step_by(concurrency) {
                let name = format!("svc-{}.default.svc.cluster.local.", (q * 7919) % services);
                let t = Instant::now();
                let r = client
                    .query(
                        Name::from_str(&name).expect("name"),
                        DNSClass::IN,
                        RecordType::A,
                    )
                    .await
                    .expect("answer");
                assert_eq!(r.answers.len(), 1, "{name}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("worker"));
    }
    let took = started.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "cores={} services={services} queries={} concurrency={concurrency} qps={:.0} p50={:?} p99={:?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        lat.len(),
        lat.len() as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
    running.shutdown().await;
}
