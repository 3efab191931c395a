//! Measures one full sync at scale: `cargo run --release -p keelson-proxy --example sync_scale
//! -- [SERVICES] [ENDPOINTS_PER_SERVICE]` builds that many ClusterIP Services, times computing
//! and rendering the ruleset, then (as root, with nft) applying it to a scratch table that is
//! deleted afterwards.

use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_proxy::nft::{Applier, Nft};
use keelson_proxy::{Config, Syncer, compute, ruleset};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let services: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let name = format!("svc-{i}");
        let cip = format!("10.43.{}.{}", i / 250, i % 250 + 1);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cip, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .expect("service");
        svcs.push(svc);
        let eps: Vec<_> = (0..per)
            .map(|j| {
                let n = i * per + j;
                json!({"addresses": [format!("10.{}.{}.{}", 44 + n / 65536, (n / 256) % 256, n % 256)],
                       "conditions": {"ready": true}, "nodeName": "node-a"})
            })
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-x"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps
        }))
        .expect("slice");
        slices.push(slice);
    }
    let mut cfg = Config::new("node-a", Some("10.42.0.0/24"));
    cfg.table = format!("keelson-scale-{}", std::process::id());
    let started = Instant::now();
    let rs = compute(&cfg, &svcs, &slices, &[]);
    let text = rs.render();
    let render_s = started.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{services} services x {per} endpoints: compute+render {render_s:.3}s, {} KiB of nft text, {cores} cores",
        text.len() / 1024
    );
    let started = Instant::now();
    match Nft::default().apply(&text) {
        Ok(()) => {
            let apply_s = started.elapsed().as_secs_f64();
            println!("nft -f (one transaction): {apply_s:.3}s");
            // One endpoint changes: compute, diff and apply only the difference.
            let mut syncer = Syncer::new(std::sync::Arc::new(Nft::default()));
            let _ = syncer.sync(&rs);
            let started = Instant::now();
            let again = Nft::default().apply(&text);
            println!(
                "re-apply (delete + recreate): {:.3}s {again:?}",
                started.elapsed().as_secs_f64()
            );
            for k in 0..5u32 {
                let i = (k * 7919) % services;
                if let Some(ep) = slices[i as usize].endpoints.first_mut() {
                    ep.addresses = vec![format!("10.99.{}.{}", k / 250, k % 250 + 1)];
                }
                let started = Instant::now();
                let next = compute(&cfg, &svcs, &slices, &[]);
                let computed = started.elapsed().as_secs_f64();
                let d0 = Instant::now();
                let text = keelson_proxy::diff::diff(&rs, &next).map(|d| d.render());
                let diff_s = d0.elapsed().as_secs_f64();
                println!(
                    "  diff+render alone {diff_s:.3}s, {} bytes",
                    text.map_or(0, |t| t.len())
                );
                let applied = syncer.sync(&next);
                println!(
                    "one endpoint changed: compute {computed:.3}s, compute+diff+apply {:.3}s {applied:?}",
                    started.elapsed().as_secs_f64()
                );
            }
            let _ = Nft::default().apply(&ruleset::cleanup_text(&cfg.table));
        }
        Err(e) => println!("not applied: {e}"),
    }
}
