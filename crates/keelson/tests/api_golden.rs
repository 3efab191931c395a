//! Golden tests: the real kubectl's full stdout of `kubectl get` (default and `-o wide`) for
//! every kind issue 3 lists and of `kubectl describe` for the main kinds, against `keelson
//! server` with a simulated node, compared with golden files under `tests/golden/`.
//!
//! The goldens are written from upstream's behaviour (kubectl's printers in kubernetes'
//! `pkg/printers/internalversion/printers.go` and kubectl's `pkg/describe/describe.go`, fed the
//! objects and events upstream's controllers write), not accepted blindly from keelson's
//! output. `KEELSON_UPDATE_GOLDEN=1` rewrites them from the current output: review every
//! changed line against upstream before keeping it.
//!
//! Only volatile parts are masked (ages and durations, timestamps, UIDs, IPs, generated name
//! suffixes and template hashes, the host name in the scheduler's event source); tables are
//! re-aligned after masking and describe output has its padding collapsed, so a wrong or
//! missing column, a missing describe line or a different ordering still fails.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, eventually, have_kubectl, path_str};
use serde_json::Value;

const OBJECTS: &str = include_str!("golden/objects.yaml");

/// `kubectl get` resources: each is compared as `get-<name>.txt` and `get-<name>-wide.txt`.
const GETS: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "replicasets",
    "replicationcontrollers",
    "daemonsets",
    "statefulsets",
    "jobs",
    "cronjobs",
    "nodes",
    "namespaces",
    "endpoints",
    "endpointslices",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "persistentvolumes",
    "persistentvolumeclaims",
    "storageclasses",
    "resourcequotas",
    "limitranges",
    "events",
    "leases",
    "horizontalpodautoscalers",
];

/// `kubectl get` with other output flags: (golden file suffix, arguments).
const GET_FLAGS: &[(&str, &[&str])] = &[
    ("all", &["all"]),
    ("pods-show-labels", &["pods", "--show-labels"]),
    (
        "deployments-label-columns",
        &["deployments", "-L", "app,missing"],
    ),
    (
        "pods-sort-by",
        &["pods", "--sort-by=.metadata.name", "-o", "wide"],
    ),
    (
        "services-custom-columns",
        &[
            "services",
            "-o",
            "custom-columns=NAME:.metadata.name,TYPE:.spec.type,PORTS:.spec.ports[*].port",
        ],
    ),
];

/// `kubectl describe <kind> <name>`, compared as `describe-<kind>.txt`. Not the
/// HorizontalPodAutoscaler: upstream's HPA controller writes its conditions and
/// `FailedGetResourceMetric` events, and keelson runs no HPA controller yet.
const DESCRIBES: &[(&str, &str)] = &[
    ("pod", "web"),
    ("deployment", "deploy"),
    ("replicaset", "-l=app=deploy"),
    ("service", "np"),
    ("node", "sim-0"),
    ("namespace", "golden"),
    ("configmap", "cm"),
    ("secret", "secret"),
    ("job", "job"),
    ("cronjob", "cron"),
    ("persistentvolumeclaim", "claim"),
    ("persistentvolume", "pv-golden"),
    ("resourcequota", "quota"),
    ("limitrange", "limits"),
    ("serviceaccount", "robot"),
];

/// Columns whose cells are ages or durations.
const TIME_COLUMNS: &[&str] = &[
    "AGE",
    "LAST SEEN",
    "FIRST SEEN",
    "DURATION",
    "LAST SCHEDULE",
];

/// A `keelson sim` child process, killed when dropped.
struct Sim(Child);

impl Sim {
    fn start(c: &Cluster) -> Sim {
        let log = std::fs::File::create(c.dir.path().join("sim.log")).expect("sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args([
                "sim",
                "--kubeconfig",
                path_str(&c.kubeconfig),
                "--nodes",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson sim");
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Generated names and hashes of the objects in the namespace, each with its mask:
/// `deploy-6b9bd8b9f-25wj5` → `deploy-<hash>-<suffix>`, `np-x7k2p` → `np-<suffix>`.
fn generated_names(c: &Cluster) -> Vec<(String, String)> {
    let out = c.ok(&[
        "get",
        "pods,replicasets,endpointslices",
        "-n",
        "golden",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("list JSON");
    let mut names = Vec::new();
    let mut hashes = Vec::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let meta = &item["metadata"];
        if let Some(h) = meta["labels"]["pod-template-hash"].as_str() {
            hashes.push((h.to_string(), "<hash>".to_string()));
        }
        if let (Some(name), Some(prefix)) = (meta["name"].as_str(), meta["generateName"].as_str())
            && let Some(suffix) = name.strip_prefix(prefix)
            && !suffix.is_empty()
        {
            names.push((name.to_string(), format!("{prefix}<suffix>")));
        }
    }
    // The scheduler's events name the host it runs on, as upstream's recorder does.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        names.push((
            format!("default-scheduler-{}", host.trim()),
            "default-scheduler-<hostname>".to_string(),
        ));
    }
    // Longest first, so a pod's name is masked before its ReplicaSet's hash inside it.
    names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    names.extend(hashes);
    names
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_hexdigit)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` at the start of `b`.
fn uid_at(b: &[u8]) -> bool {
    b.len() >= 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && is_hex(&b[0..8])
        && is_hex(&b[9..13])
        && is_hex(&b[14..18])
        && is_hex(&b[19..23])
        && is_hex(&b[24..36])
}

/// The length of an IPv4 address at the start of `b` (four dotted numbers), if any.
fn ip_at(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    for part in 0..4 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 3 {
            i += 1;
        }
        if i == start {
            return None;
        }
        if part < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    (!b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'.')).then_some(i)
}

/// An RFC 3339 time (`2026-12-02T20:47:30Z`) at the start of `b`.
fn rfc3339_at(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 {
        return None;
    }
    let ok = shape.iter().zip(b).all(|(s, c)| match s {
        b'd' => c.is_ascii_digit(),
        other => other == c,
    });
    if !ok {
        return None;
    }
    let mut i = shape.len();
    if b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    (b.get(i) == Some(&b'Z')).then_some(i + 1)
}

/// A time as describe prints it (`Wed, 02 Dec 2026 20:47:30 +0000`) at the start of `b`.
fn rfc1123_at(b: &[u8]) -> Option<usize> {
    let shape = b"Aaa, dd Aaa dddd dd:dd:dd +dddd";
    (b.len() >= shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            b'A' => c.is_ascii_uppercase(),
            b'a' => c.is_ascii_lowercase(),
            other => other == c,
        }))
    .then_some(shape.len())
}

/// Masks UIDs, IPs, timestamps and the generated parts of names and event names in a line.
fn mask(line: &str, names: &[(String, String)]) -> String {
    let mut s = line.to_string();
    for (name, masked) in names {
        s = s.replace(name.as_str(), masked);
    }
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'.';
        if boundary && uid_at(&b[i..]) {
            out.push_str("<uid>");
            i += 36;
        } else if let Some(n) = boundary.then(|| rfc3339_at(&b[i..])).flatten() {
            out.push_str("<time>");
            i += n;
        } else if let Some(n) = boundary.then(|| rfc1123_at(&b[i..])).flatten() {
            out.push_str("<time>");
            i += n;
        } else if let Some(n) = boundary.then(|| ip_at(&b[i..])).flatten() {
            out.push_str("<ip>");
            i += n;
        } else if b[i] == b'.'
            && i > 0
            && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'>')
            && b.len() >= i + 17
            && is_hex(&b[i + 1..i + 17])
            && !b.get(i + 17).is_some_and(u8::is_ascii_alphanumeric)
        {
            // An event's name: `<object>.<16 hex digits of its time>`.
            out.push_str(".<id>");
            i += 17;
        } else {
            let ch = s[i..].chars().next().expect("char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// An age or duration as kubectl prints one (`6s`, `2m55s`, `3h`, `5d`, `<invalid>`).
fn is_age(cell: &str) -> bool {
    let mut digits = false;
    let mut units = 0;
    for c in cell.chars() {
        if c.is_ascii_digit() {
            digits = true;
        } else if "smhdy".contains(c) && digits {
            digits = false;
            units += 1;
        } else {
            return false;
        }
    }
    !digits && units > 0
}

/// Masks a table of `kubectl get`: cells are cut at the header's column starts, time columns
/// become `<age>`, and the table is re-aligned as kubectl aligns it (3 spaces between columns).
fn normalise_table(out: &str, names: &[(String, String)]) -> String {
    let mut lines = out.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let hb = header.as_bytes();
    let starts: Vec<usize> = (0..hb.len())
        .filter(|&i| hb[i] != b' ' && (i == 0 || i >= 2 && hb[i - 1] == b' ' && hb[i - 2] == b' '))
        .collect();
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(j, &s)| {
                let end = starts.get(j + 1).copied().unwrap_or(line.len());
                line.get(s.min(line.len())..end.min(line.len()))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let head = cut(header);
    let mut rows = vec![head.clone()];
    for line in lines {
        let cells = cut(line)
            .into_iter()
            .zip(&head)
            .map(|(cell, col)| {
                if TIME_COLUMNS.contains(&col.as_str()) && (is_age(&cell) || cell == "<invalid>") {
                    "<age>".to_string()
                } else {
                    mask(&cell, names)
                }
            })
            .collect();
        rows.push(cells);
    }
    let mut widths = vec![0; head.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (j, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if j + 1 < row.len() {
                let pad = widths[j] - cell.chars().count() + 3;
                line.push_str(&" ".repeat(pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Masks describe output: volatile values, the Age of events and of a node's pods, and the
/// padding kubectl's tab writer adds (runs of spaces after the indentation become two).
fn normalise_describe(out: &str, names: &[(String, String)]) -> String {
    let mut text = String::new();
    let mut section = "";
    for line in out.lines() {
        if !line.starts_with(' ') {
            section = line.split(':').next().unwrap_or("");
        }
        let indent = line.len() - line.trim_start().len();
        let fields: Vec<&str> = line
            .trim_start()
            .split("  ")
            .filter(|f| !f.is_empty())
            .collect();
        let mut fields: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
        let is_event = section == "Events"
            && fields.len() >= 4
            && (fields[0] == "Normal" || fields[0] == "Warning");
        if is_event {
            fields[2] = "<age>".into();
        } else if section == "Non-terminated Pods"
            && fields.len() >= 7
            && fields.last().is_some_and(|f| is_age(f))
        {
            *fields.last_mut().expect("non-empty") = "<age>".into();
        } else if fields.first().is_some_and(|f| f == "Duration:") && fields.len() == 2 {
            fields[1] = "<age>".into();
        }
        let joined = fields
            .iter()
            .map(|f| mask(f, names))
            .collect::<Vec<_>>()
            .join("  ");
        text.push_str(&" ".repeat(indent));
        text.push_str(&joined);
        text.push('\n');
    }
    text
}

/// Waits for the objects to settle as upstream's controllers leave them.
fn wait_settled(c: &Cluster) {
    let field = |args: &[&str]| c.ok(args);
    eventually(60, || {
        (field(&[
            "get",
            "deploy",
            "deploy",
            "-n",
            "golden",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ]) == "2")
            .then_some(())
    });
    eventually(60, || {
        (field(&[
            "get",
            "job",
            "job",
            "-n",
            "golden",
            "-o",
            "jsonpath={.status.succeeded}",
        ]) == "1")
            .then_some(())
    });
    eventually(60, || {
        (field(&[
            "get",
            "resourcequota",
            "quota",
            "-n",
            "golden",
            "-o",
            "jsonpath={.status.used.pods}/{.status.used.requests\\.cpu}",
        ]) == "3/300m")
            .then_some(())
    });
    eventually(60, || {
        (field(&[
            "get",
            "pvc",
            "claim",
            "-n",
            "golden",
            "-o",
            "jsonpath={.status.phase}",
        ]) == "Bound")
            .then_some(())
    });
}

/// Runs every command; returns (golden file name, normalised stdout).
fn outputs(c: &Cluster) -> Vec<(String, String)> {
    let names = generated_names(c);
    let mut out = Vec::new();
    for res in GETS {
        let plain = c.ok(&["get", res, "-n", "golden"]);
        out.push((format!("get-{res}.txt"), normalise_table(&plain, &names)));
        let wide = c.ok(&["get", res, "-n", "golden", "-o", "wide"]);
        out.push((
            format!("get-{res}-wide.txt"),
            normalise_table(&wide, &names),
        ));
    }
    for (file, args) in GET_FLAGS {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend(["-n", "golden"]);
        let text = c.ok(&full);
        // `get all` prints a table per kind, separated by blank lines.
        let tables: Vec<String> = text
            .split("\n\n")
            .filter(|t| !t.trim().is_empty())
            .map(|t| normalise_table(t, &names))
            .collect();
        out.push((format!("get-{file}.txt"), tables.join("\n")));
    }
    for (kind, name) in DESCRIBES {
        let text = c.ok(&["describe", kind, name, "-n", "golden"]);
        out.push((
            format!("describe-{kind}.txt"),
            normalise_describe(&text, &names),
        ));
    }
    out
}

/// The files whose output differs from the golden, with both texts.
fn differences(got: &[(String, String)]) -> BTreeMap<String, (String, String)> {
    let mut diff = BTreeMap::new();
    for (file, text) in got {
        let want = std::fs::read_to_string(golden_dir().join(file)).unwrap_or_default();
        if want != *text {
            diff.insert(file.clone(), (want, text.clone()));
        }
    }
    diff
}

#[test]
fn get_and_describe_print_what_upstream_prints() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let _sim = Sim::start(&c);
    eventually(30, || {
        c.ok(&["get", "nodes", "--no-headers"])
            .contains(" Ready ")
            .then_some(())
    });
    c.ok(&["create", "namespace", "golden"]);
    c.apply_stdin("apply", OBJECTS);
    wait_settled(&c);

    if std::env::var_os("KEELSON_UPDATE_GOLDEN").is_some() {
        // Let late events land, then write. Review every change against upstream.
        std::thread::sleep(Duration::from_secs(3));
        for (file, text) in outputs(&c) {
            std::fs::write(golden_dir().join(&file), text).expect("write golden");
        }
        return;
    }

    // Controllers settle a little after the conditions above; compare until they match.
    let deadline = Instant::now() + Duration::from_secs(20);
    let diff = loop {
        let diff = differences(&outputs(&c));
        if diff.is_empty() || Instant::now() > deadline {
            break diff;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let report: Vec<String> = diff
        .iter()
        .map(|(file, (want, got))| {
            format!("--- tests/golden/{file} (want)\n{want}+++ kubectl printed\n{got}")
        })
        .collect();
    assert!(
        report.is_empty(),
        "{} outputs differ from their goldens:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn server_side_apply_keys_ports_by_number_and_protocol() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let deploy = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dns\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: dns}}\n  template:\n    metadata:\n      labels: {{app: dns}}\n    spec:\n      containers:\n      - name: dns\n        image: {image}\n        ports:\n        - {{containerPort: 53, name: dns-tcp}}\n        - {{containerPort: 53, protocol: UDP, name: dns}}\n"
        )
    };
    let ports = || {
        c.ok(&[
            "get",
            "deploy",
            "dns",
            "-o",
            "jsonpath={range .spec.template.spec.containers[0].ports[*]}{.containerPort}/{.protocol}/{.name} {end}",
        ])
    };
    let out = c.with_stdin(&["apply", "--server-side", "-f", "-"], &deploy("dns:1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ports(), "53/TCP/dns-tcp 53/UDP/dns ");
    // Applying again (a new image) keeps both ports as they were.
    let out = c.with_stdin(&["apply", "--server-side", "-f", "-"], &deploy("dns:2"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ports(), "53/TCP/dns-tcp 53/UDP/dns ");
    let fields = c.ok(&[
        "get",
        "deploy",
        "dns",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[?(@.manager==\"kubectl\")].fieldsV1}",
    ]);
    for key in [
        r#"k:{\"containerPort\":53,\"protocol\":\"TCP\"}"#,
        r#"k:{\"containerPort\":53,\"protocol\":\"UDP\"}"#,
    ] {
        assert!(fields.contains(key), "{key} missing from {fields}");
    }
    // Dropping the UDP port from the applied file removes only that port.
    let tcp_only = deploy("dns:2").replace(
        "        - {containerPort: 53, protocol: UDP, name: dns}\n",
        "",
    );
    let out = c.with_stdin(&["apply", "--server-side", "-f", "-"], &tcp_only);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ports(), "53/TCP/dns-tcp ");
}
