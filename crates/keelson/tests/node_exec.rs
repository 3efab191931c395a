//! `kubectl exec`, `kubectl attach` and `kubectl cp` on real containers: kubectl's WebSocket
//! (`v5.channel.k8s.io`) goes through the API server's `pods/X/exec|attach` relay to the node
//! agent, which streams to containerd over SPDY (SEED-SCENARIOS.md §B.1 `curl localhost:8080`
//! from the other container, §B.4). Every check runs with kubectl 1.32 ($KUBECTL) and 1.33.
//! These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, eventually, have_node, kubectl_bin};

/// Seed 000's two-container pod, unmodified.
const SEED_POD_1: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: pod-1
spec:
  containers:
  - name: container1
    image: kubetm/p8000
    ports:
    - containerPort: 8000
  - name: container2
    image: kubetm/p8080
    ports:
    - containerPort: 8080
";

/// A pod whose second container has exited (and is not restarted) while the first runs.
const HALF_DONE: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: half-done
spec:
  restartPolicy: Never
  containers:
  - name: runs
    image: busybox
    command: [sleep, '3600']
  - name: done
    image: busybox
    command: ['true']
";

/// A pod printing a numbered line every 200 ms.
const TICKER: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  containers:
  - name: ticker
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done']
";

/// A kubectl to check with: its binary, and whether it is told to use SPDY for exec and
/// attach (its fallback when the WebSocket upgrade fails) rather than WebSocket.
struct Kubectl {
    bin: String,
    spdy: bool,
}

/// Shown as a shell command prefix, so it also runs under `script -c`.
impl std::fmt::Display for Kubectl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.spdy {
            write!(f, "{SPDY_ENV}=false ")?;
        }
        write!(f, "timeout --foreground {KUBECTL_TIMEOUT} {}", self.bin)
    }
}

/// kubectl's switch between WebSocket (default) and SPDY for exec, attach and cp.
const SPDY_ENV: &str = "KUBECTL_REMOTE_COMMAND_WEBSOCKETS";

/// The kubectls to check: $KUBECTL (1.32 here) and 1.33 beside it, when present, over
/// WebSocket; and 1.33 over SPDY.
fn kubectls() -> Vec<Kubectl> {
    let mut bins = vec![kubectl_bin()];
    let resolved = Command::new("sh")
        .args(["-c", "dirname \"$(readlink -f \"$(command -v kubectl)\")\""])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let v133 = format!("{resolved}/kubectl.1.33");
    if !resolved.is_empty() && std::path::Path::new(&v133).exists() {
        bins.push(v133);
    } else {
        eprintln!("note: kubectl.1.33 not found beside kubectl; checking {bins:?} only");
    }
    let mut all: Vec<Kubectl> = bins
        .iter()
        .map(|b| Kubectl {
            bin: b.clone(),
            spdy: false,
        })
        .collect();
    all.push(Kubectl {
        bin: bins.last().cloned().unwrap_or_default(),
        spdy: true,
    });
    all
}

/// How long one kubectl may run: a stream that never ends fails the test rather than hangs it.
const KUBECTL_TIMEOUT: &str = "120";

/// `timeout 120 bin --kubeconfig ... args` (`timeout` hands SIGTERM on to kubectl).
fn kubectl_with(c: &Cluster, k: &Kubectl, args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args([KUBECTL_TIMEOUT, &k.bin]);
    if k.spdy {
        cmd.env(SPDY_ENV, "false");
    } else {
        cmd.env_remove(SPDY_ENV);
    }
    cmd.arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--cache-dir")
        .arg(c.dir.path().join("kcache"))
        .args(args);
    cmd
}

fn run(c: &Cluster, k: &Kubectl, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = kubectl_with(c, k, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.unwrap_or_default().to_vec();
    // Written while the output is read, so neither pipe fills up and stalls the other.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("kubectl output");
    let _ = writer.join();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn wait_running(c: &Cluster, pod: &str, ready: &str) {
    let mut last = String::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(60, || {
            last = c.ok(&["get", "pod", pod, "--no-headers"]);
            let cols: Vec<&str> = last.split_whitespace().collect();
            (cols.get(1) == Some(&ready)).then_some(())
        })
    }));
    if ok.is_err() {
        panic!(
            "pod {pod} never got READY {ready}; last: {last}\n{}",
            c.ok(&["describe", "pod", pod])
        );
    }
}

#[test]
fn exec_runs_commands_in_the_pods_containers() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", SEED_POD_1);
    c.apply_stdin("apply", HALF_DONE);
    wait_running(&c, "pod-1", "2/2");
    eventually(60, || {
        let s = c.ok(&[
            "get",
            "pod",
            "half-done",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"done\")].state.terminated.reason}",
        ]);
        (s == "Completed").then_some(())
    });
    for k in kubectls() {
        let ok = |args: &[&str], stdin: Option<&[u8]>| {
            let out = run(&c, &k, args, stdin);
            assert!(
                out.status.success(),
                "{k} {args:?} failed: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            text(&out.stdout)
        };
        // The container's hostname is the pod's name; -c picks the container.
        assert_eq!(
            ok(
                &["exec", "pod-1", "-c", "container1", "--", "hostname"],
                None
            ),
            "pod-1\n"
        );
        // Without -c: the first container, which kubectl says.
        let out = run(&c, &k, &["exec", "pod-1", "--", "env"], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("HOSTNAME=pod-1"),
            "{}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr)
                .contains("Defaulted container \"container1\" out of: container1, container2"),
            "{}",
            text(&out.stderr)
        );
        // §B.1: the containers share the pod's network namespace.
        let body = ok(
            &[
                "exec",
                "pod-1",
                "-c",
                "container1",
                "--",
                "curl",
                "-s",
                "localhost:8080",
            ],
            None,
        );
        assert!(body.contains("Hostname: pod-1"), "{body}");
        let body = ok(
            &[
                "exec",
                "pod-1",
                "-c",
                "container2",
                "--",
                "curl",
                "-s",
                "localhost:8000",
            ],
            None,
        );
        assert!(body.contains("Hostname: pod-1"), "{body}");
        // stdout and stderr stay apart; the exit code comes back.
        let out = run(
            &c,
            &k,
            &[
                "exec",
                "pod-1",
                "-c",
                "container2",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(3), "{k}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n");
        assert_eq!(
            text(&out.stderr),
            "err\ncommand terminated with exit code 3\n"
        );
        // Piped stdin reaches the command and its end ends the command.
        assert_eq!(
            ok(
                &["exec", "-i", "pod-1", "-c", "container1", "--", "cat"],
                Some(b"hi\nthere\n")
            ),
            "hi\nthere\n"
        );
        assert_eq!(
            ok(
                &["exec", "-i", "pod-1", "-c", "container1", "--", "wc", "-c"],
                Some(&[7u8; 100_000])
            )
            .trim(),
            "100000"
        );
        // Input and output flowing at once, each larger than the buffers between them.
        let big: Vec<u8> = (0..2_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let out = run(
            &c,
            &k,
            &["exec", "-i", "pod-1", "-c", "container1", "--", "cat"],
            Some(&big),
        );
        assert!(out.status.success(), "{k}: {}", text(&out.stderr));
        assert!(
            out.stdout == big,
            "{k}: cat gave back {} bytes",
            out.stdout.len()
        );
        // Errors, as upstream words them.
        let out = run(&c, &k, &["exec", "pod-1", "-c", "nope", "--", "ls"], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("container nope is not valid for pod pod-1"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&c, &k, &["exec", "pod-1", "-c", "container1"], None);
        assert!(
            text(&out.stderr).contains("you must specify at least one command for the container"),
            "{}",
            text(&out.stderr)
        );
        let out = run(
            &c,
            &k,
            &["exec", "half-done", "-c", "done", "--", "ls"],
            None,
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr)
                .contains("unable to upgrade connection: container not found (\"done\")"),
            "{}",
            text(&out.stderr)
        );
        let out = run(
            &c,
            &k,
            &["exec", "half-done", "-c", "runs", "--", "/no/such/binary"],
            None,
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("no such file or directory"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&c, &k, &["exec", "no-such-pod", "--", "ls"], None);
        assert!(
            text(&out.stderr).contains("pods \"no-such-pod\" not found"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn exec_with_a_terminal() {
    if !have_node() {
        return;
    }
    let have_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        eprintln!("SKIP: `script` (util-linux) drives the terminal of this test and is missing");
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", SEED_POD_1);
    wait_running(&c, "pod-1", "2/2");
    for k in kubectls() {
        // `script` gives kubectl a pseudo-terminal of 33 rows and 101 columns; the command
        // sees a terminal of its own, the size kubectl sends, and its exit code comes back.
        let inner = format!(
            "stty rows 33 cols 101; {k} --kubeconfig {} exec -it pod-1 -c container1 -- sh -c 'sleep 1; tty; stty size; exit 5'",
            c.kubeconfig.display()
        );
        let out = Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("run script");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("/dev/pts/"), "{k}: {stdout:?}");
        assert!(stdout.contains("33 101"), "{k}: {stdout:?}");
        assert_eq!(out.status.code(), Some(5), "{k}: {stdout:?}");

        // §B.4: an interactive shell, typed into.
        let inner = format!(
            "{k} --kubeconfig {} exec -it pod-1 -c container2 -- sh",
            c.kubeconfig.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run script");
        let mut typing = child.stdin.take().expect("stdin");
        for line in ["echo typed-$((6*7))", "exit 6"] {
            std::thread::sleep(Duration::from_millis(1500));
            typing
                .write_all(format!("{line}\r").as_bytes())
                .expect("type");
        }
        // Give the shell time to exit by itself (an early end of input would end it too,
        // with status 0).
        std::thread::sleep(Duration::from_millis(1500));
        drop(typing);
        let out = child.wait_with_output().expect("script output");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("typed-42"), "{k}: {stdout:?}");
        assert_eq!(out.status.code(), Some(6), "{k}: {stdout:?}");
    }
}

#[test]
fn cp_and_attach() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", TICKER);
    c.apply_stdin("apply", HALF_DONE);
    wait_running(&c, "ticker", "1/1");
    wait_running(&c, "half-done", "1/2");
    let dir = tempfile::tempdir().expect("temp dir");
    // A file with every byte value, larger than one stream frame.
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("data.bin");
    std::fs::write(&src, &content).expect("write file");
    for (n, k) in kubectls().into_iter().enumerate() {
        let remote = format!("half-done:/tmp/data-{n}.bin");
        let back = dir.path().join(format!("back-{n}.bin"));
        for args in [
            vec!["cp", "-c", "runs", src.to_str().unwrap(), remote.as_str()],
            vec!["cp", "-c", "runs", remote.as_str(), back.to_str().unwrap()],
        ] {
            let out = run(&c, &k, &args, None);
            assert!(out.status.success(), "{k} {args:?}: {}", text(&out.stderr));
        }
        let out = run(
            &c,
            &k,
            &[
                "exec",
                "half-done",
                "-c",
                "runs",
                "--",
                "wc",
                "-c",
                &format!("/tmp/data-{n}.bin"),
            ],
            None,
        );
        assert!(
            text(&out.stdout).starts_with("300000 "),
            "{}",
            text(&out.stdout)
        );
        assert!(
            std::fs::read(&back).expect("copied back") == content,
            "{k}: the file came back changed"
        );

        // attach: the container's output as it prints it, until kubectl is stopped.
        let mut child = kubectl_with(&c, &k, &["attach", "ticker"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl attach");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut numbers = Vec::new();
        while numbers.len() < 3 && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line
                        .strip_prefix("tick ")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        numbers.push(n);
                    }
                }
                _ => break,
            }
        }
        // SIGTERM, which `timeout` hands on to kubectl.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        assert_eq!(numbers.len(), 3, "{k}: attach printed {numbers:?}");
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{k}: lines arrive in order as printed: {numbers:?}"
        );
    }
}
