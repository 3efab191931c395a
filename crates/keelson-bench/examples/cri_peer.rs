//! Times the bench's pod through CRI alone against `ctr run -d`, interleaved, on a containerd
//! already running: `cri_peer SOCKET ROUNDS` (5 of each per round). For tuning containerd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keelson_bench::cripeer;
use keelson_bench::stats::Summary;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let socket = PathBuf::from(args.next().unwrap_or_default());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(4);
    let logs = std::env::temp_dir().join("cri-peer-example-logs");
    let (mut cri, mut sandbox, mut create, mut start, mut ctr) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let peer = cripeer::cri_peer(&socket, &logs, 5).await;
        if let Some(e) = peer.first_error {
            anyhow::bail!("{e}");
        }
        let ms = |s: Summary| Duration::from_secs_f64(s.p50_ms / 1000.0);
        cri.push(ms(peer.summary));
        sandbox.push(ms(peer.sandbox));
        create.push(ms(peer.create));
        start.push(ms(peer.start));
        for k in 0..5 {
            let id = format!("cri-peer-example-{round}-{k}");
            let base =
                ["--address", &socket.display().to_string(), "-n", "k8s.io"].map(String::from);
            let begin = Instant::now();
            let ok = std::process::Command::new("ctr")
                .args(&base)
                .args(["run", "-d", "--null-io", keelson_oci::PAUSE_IMAGE, &id])
                .status()?
                .success();
            if ok {
                ctr.push(begin.elapsed());
            }
            for rm in [vec!["task", "rm", "-f", &id], vec!["container", "rm", &id]] {
                let _ = std::process::Command::new("ctr")
                    .args(&base)
                    .args(rm)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
    let p50 = |v: &[Duration]| Summary::of(v).p50_ms;
    println!(
        "CRI p50 {:.1} ms (sandbox {:.1}, create {:.1}, start {:.1}); ctr run p50 {:.1} ms; ratio {:.2}",
        p50(&cri),
        p50(&sandbox),
        p50(&create),
        p50(&start),
        p50(&ctr),
        p50(&cri) / p50(&ctr)
    );
    Ok(())
}
