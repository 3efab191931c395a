//! Cluster DNS on real containers (SEED-SCENARIOS.md §D.7–D.8): the `kube-dns` Service and its
//! node EndpointSlice, pods' /etc/resolv.conf per dnsPolicy as the kubelet writes it, and
//! busybox `nslookup` inside a pod resolving Services of its own and another namespace,
//! `kubernetes.default`, an ExternalName (CNAME), a headless Service (pod IPs) and a pod A
//! record, through the cluster DNS IP; an unknown name fails.
//! These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use common::{Cluster, eventually, free_port, have_node};

const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: other
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: other
spec:
  selector:
    app: db
  ports:
  - port: 3306
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata:
  name: hl
spec:
  clusterIP: None
  selector:
    app: hl
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: hl-1
  labels:
    app: hl
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: hl-2
  labels:
    app: hl
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
";

/// Pods that print their /etc/resolv.conf, one per dnsPolicy.
const RESOLV_PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: conf-cluster-first
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [cat, /etc/resolv.conf]
---
apiVersion: v1
kind: Pod
metadata:
  name: conf-default
  namespace: other
spec:
  restartPolicy: Never
  dnsPolicy: Default
  containers:
  - name: c
    image: busybox
    command: [cat, /etc/resolv.conf]
---
apiVersion: v1
kind: Pod
metadata:
  name: conf-none
spec:
  restartPolicy: Never
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.1]
    searches: [ns1.svc.cluster-domain.example, my.dns.search.suffix]
    options:
    - name: ndots
      value: '2'
    - name: edns0
  containers:
  - name: c
    image: busybox
    command: [cat, /etc/resolv.conf]
---
apiVersion: v1
kind: Pod
metadata:
  name: conf-merged
  namespace: other
spec:
  restartPolicy: Never
  dnsConfig:
    searches: [extra.example]
    options:
    - name: ndots
      value: '1'
  containers:
  - name: c
    image: busybox
    command: [cat, /etc/resolv.conf]
";

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &p]);
    c.ok(&args)
}

/// Waits until the pod has finished (Succeeded or Failed) and returns its logs.
#[track_caller]
fn logs_when_done(c: &Cluster, ns: &str, pod: &str) -> String {
    let mut phase = String::new();
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(90, || {
            phase = jsonpath(c, &["pod", "-n", ns, pod], "{.status.phase}");
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(())
        })
    }));
    if done.is_err() {
        panic!(
            "pod {ns}/{pod} did not finish (phase {phase:?})\n{}\n{}",
            c.ok(&["describe", "pod", "-n", ns, pod]),
            c.log()
        );
    }
    c.ok(&["logs", "-n", ns, pod])
}

/// The host's resolv.conf as a pod with dnsPolicy Default sees it (what the kubelet passes).
fn host_resolv_conf() -> (Vec<String>, Vec<String>) {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let only_loopback = etc
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .all(|ns| ns.trim().starts_with("127."));
    let text = if only_loopback {
        std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or(etc)
    } else {
        etc
    };
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => servers.extend(f.next().map(str::to_string)),
            Some("search") => {
                searches = f
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect()
            }
            _ => {}
        }
    }
    (servers, searches)
}

/// The resolver lines of a resolv.conf (`search`, `nameserver`, `options`), in order.
fn resolver_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| {
            l.starts_with("search ") || l.starts_with("nameserver ") || l.starts_with("options ")
        })
        .collect()
}

/// The address busybox `ping` resolved its target to (`PING name (10.43.0.1): 56 data bytes`).
fn pinged(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("PING "))?;
    let (_, rest) = line.split_once(" (")?;
    Some(rest.split_once(')')?.0.to_string())
}

/// Splits the lookup pod's output into one section per name (`== NAME` headers).
fn sections(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            v.push((name.to_string(), String::new()));
        } else if let Some((_, body)) = v.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    v
}

/// The addresses busybox nslookup printed for the looked-up name (not the server's).
fn answers(section: &str) -> Vec<String> {
    let mut after_name = false;
    let mut v = Vec::new();
    for line in section.lines() {
        if line.starts_with("Name:") {
            after_name = true;
        } else if after_name && let Some(a) = line.strip_prefix("Address:") {
            v.push(a.trim().to_string());
        }
    }
    v
}

#[test]
fn cluster_dns_resolves_inside_pods() {
    if !have_node() {
        return;
    }
    let port = free_port().to_string();
    let c = Cluster::up(&["--dns-port", &port]);
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let node_ip = jsonpath(
        &c,
        &["node", &node],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );

    // The kube-dns Service, as upstream's, and this node's EndpointSlice for it.
    let svc = eventually(20, || {
        let out = c.kubectl(&[
            "get",
            "svc",
            "-n",
            "kube-system",
            "kube-dns",
            "--no-headers",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let cols: Vec<&str> = svc.split_whitespace().collect();
    assert_eq!(
        cols[..5],
        [
            "kube-dns",
            "ClusterIP",
            "10.43.0.10",
            "<none>",
            "53/UDP,53/TCP"
        ],
        "{svc}"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["svc", "-n", "kube-system", "kube-dns"],
            "{.metadata.labels.k8s-app} {.spec.internalTrafficPolicy} {.spec.ports[0].targetPort}"
        ),
        format!("kube-dns Local {port}")
    );
    let slice = format!("kube-dns-{node}");
    let ep = eventually(20, || {
        let out = c.kubectl(&[
            "get",
            "endpointslice",
            "-n",
            "kube-system",
            &slice,
            "-o",
            "jsonpath={.endpoints[0].addresses[0]} {.endpoints[0].nodeName} {.endpoints[0].conditions.ready} {.ports[0].port} {.metadata.labels.kubernetes\\.io/service-name}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(ep, format!("{node_ip} {node} true {port} kube-dns"));

    c.apply_stdin("apply", OBJECTS);
    c.apply_stdin("apply", RESOLV_PODS);

    // /etc/resolv.conf per dnsPolicy, as the kubelet writes it.
    let (host_ns, host_search) = host_resolv_conf();
    let join = |l: &[String]| l.join(" ");
    let mut want_cluster = vec![format!(
        "search default.svc.cluster.local svc.cluster.local cluster.local{}",
        host_search
            .iter()
            .map(|s| format!(" {s}"))
            .collect::<String>()
    )];
    want_cluster.push("nameserver 10.43.0.10".into());
    want_cluster.push("options ndots:5".into());
    assert_eq!(
        resolver_lines(&logs_when_done(&c, "default", "conf-cluster-first")),
        want_cluster
    );
    let mut want_default = Vec::new();
    if !host_search.is_empty() {
        want_default.push(format!("search {}", join(&host_search)));
    }
    want_default.extend(host_ns.iter().map(|n| format!("nameserver {n}")));
    let got_default = resolver_lines(&logs_when_done(&c, "other", "conf-default"));
    assert_eq!(
        got_default
            .iter()
            .filter(|l| !l.starts_with("options "))
            .cloned()
            .collect::<Vec<_>>(),
        want_default
    );
    assert_eq!(
        resolver_lines(&logs_when_done(&c, "default", "conf-none")),
        [
            "search ns1.svc.cluster-domain.example my.dns.search.suffix",
            "nameserver 192.0.2.1",
            "options ndots:2 edns0",
        ]
    );
    assert_eq!(
        resolver_lines(&logs_when_done(&c, "other", "conf-merged")),
        [
            format!(
                "search other.svc.cluster.local svc.cluster.local cluster.local{} extra.example",
                host_search
                    .iter()
                    .map(|s| format!(" {s}"))
                    .collect::<String>()
            ),
            "nameserver 10.43.0.10".into(),
            "options ndots:1".into(),
        ]
    );

    // Lookups from inside a pod, once the headless Service's pods are ready.
    let web_ip = jsonpath(&c, &["svc", "web"], "{.spec.clusterIP}");
    let db_ip = jsonpath(&c, &["svc", "-n", "other", "db"], "{.spec.clusterIP}");
    let mut hl_ips: Vec<String> = eventually(90, || {
        let ips = jsonpath(
            &c,
            &["pods", "-l", "app=hl"],
            "{range .items[?(@.status.podIP)]}{.status.podIP} {end}",
        );
        let ips: Vec<String> = ips.split_whitespace().map(str::to_string).collect();
        let ready = c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=hl", "-o",
            "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}"]);
        (ips.len() == 2 && ready.split_whitespace().count() == 2).then_some(ips)
    });
    hl_ips.sort();
    let pod_name = format!("{}.default.pod.cluster.local", hl_ips[0].replace('.', "-"));
    // Straight to this node's DNS server (FQDNs: busybox applies no search list to a server
    // named on its command line), then through the cluster DNS IP from resolv.conf (short
    // names through the search list), once that answers.
    let direct = [
        "web.default.svc.cluster.local",
        "db.other.svc.cluster.local",
        "kubernetes.default.svc.cluster.local",
        "ext.default.svc.cluster.local",
        "hl.default.svc.cluster.local",
        &pod_name,
        "db.default.svc.cluster.local",
        "nope.default.svc.cluster.local",
    ];
    let short = [
        "web",
        "web.default",
        "db.other",
        "kubernetes.default",
        "ext",
        "hl",
        "db",
        "nope",
    ];
    let server = format!("{node_ip}:{port}");
    let script = direct
        .iter()
        .map(|n| format!("echo '== direct {n}'; nslookup -type=a {n} {server} 2>&1;"))
        .collect::<String>();
    // Bounded in time even when 10.43.0.10 does not answer: the lookups run side by side.
    let mut proxied = String::from(
        "end=$(($(date +%s)+20)); until nslookup -type=a web >/dev/null 2>&1 || [ $(date +%s) -ge $end ]; do sleep 1; done;",
    );
    for n in short {
        proxied += &format!(
            "nslookup -type=a {n} >/tmp/{n}.out 2>&1 & ping -c1 -W1 {n} >/tmp/{n}.ping 2>&1 & "
        );
    }
    proxied += "wait;";
    for n in short {
        proxied +=
            &format!("echo '== {n}'; cat /tmp/{n}.out; echo '== ping {n}'; cat /tmp/{n}.ping;");
    }
    let pod = |name: &str, script: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, \"{script}\"]
"
        )
    };
    c.apply_stdin("apply", &pod("lookup", &script));
    // A new Service makes this cluster's proxy apply its rules now (on a host shared with
    // other test clusters, the last one to apply owns 10.43.0.10).
    c.ok(&["create", "service", "clusterip", "resync", "--tcp=1:1"]);
    c.apply_stdin("apply", &pod("lookup-proxied", &proxied));
    let out = logs_when_done(&c, "default", "lookup");
    let out = out + &logs_when_done(&c, "default", "lookup-proxied");
    let got = sections(&out);
    let find = |n: &str| {
        got.iter()
            .find(|(name, _)| name == n)
            .map(|(_, body)| body.clone())
            .unwrap_or_else(|| panic!("no output for {n}:\n{out}"))
    };
    let kubernetes = jsonpath(&c, &["svc", "kubernetes"], "{.spec.clusterIP}");
    let resolves: &[(&str, Vec<String>)] = &[
        ("web.default.svc.cluster.local", vec![web_ip.clone()]),
        ("db.other.svc.cluster.local", vec![db_ip.clone()]),
        (
            "kubernetes.default.svc.cluster.local",
            vec![kubernetes.clone()],
        ),
        ("ext.default.svc.cluster.local", vec![web_ip.clone()]),
        ("hl.default.svc.cluster.local", hl_ips.clone()),
        (&pod_name, vec![hl_ips[0].clone()]),
    ];
    let fails = [
        "db.default.svc.cluster.local",
        "nope.default.svc.cluster.local",
    ];
    let check = |prefix: &str, name: &str, want: &[String]| -> Result<(), String> {
        let body = find(&format!("{prefix}{name}"));
        let mut ips = answers(&body);
        ips.sort();
        if ips != want {
            return Err(format!(
                "nslookup {name}: want {want:?}, got {ips:?}:\n{body}"
            ));
        }
        if name.starts_with("ext.")
            && !body.contains("canonical name = web.default.svc.cluster.local")
        {
            return Err(format!(
                "nslookup {name}: the ExternalName is a CNAME:\n{body}"
            ));
        }
        if want.is_empty() && !body.contains("NXDOMAIN") {
            return Err(format!("nslookup {name}: NXDOMAIN expected:\n{body}"));
        }
        Ok(())
    };
    for (name, want) in resolves {
        check("direct ", name, want).unwrap_or_else(|e| panic!("{e}"));
    }
    for name in fails {
        check("direct ", name, &[]).unwrap_or_else(|e| panic!("{e}"));
    }

    // Through 10.43.0.10 (the service proxy sends it to this node's server), short names
    // through the search list: as applications resolve them (libc, ndots:5: busybox `ping`
    // prints the address it resolved), and busybox `nslookup` for dotless names (it applies
    // the search list only to those).
    let through_proxy: Vec<(&str, Option<&[String]>)> = vec![
        ("web", Some(std::slice::from_ref(&web_ip))),
        ("web.default", Some(std::slice::from_ref(&web_ip))),
        ("db.other", Some(std::slice::from_ref(&db_ip))),
        (
            "kubernetes.default",
            Some(std::slice::from_ref(&kubernetes)),
        ),
        ("ext", Some(std::slice::from_ref(&web_ip))),
        ("hl", Some(&hl_ips[..])),
        ("db", None),
        ("nope", None),
    ];
    let mut errors: Vec<String> = Vec::new();
    for (name, want) in &through_proxy {
        let body = find(&format!("ping {name}"));
        let ip = pinged(&body);
        let ok = match (want, &ip) {
            (Some(w), Some(ip)) => w.contains(ip),
            (None, None) => body.contains("bad address"),
            _ => false,
        };
        if !ok {
            errors.push(format!(
                "ping {name}: want one of {want:?}, got {ip:?}:\n{body}"
            ));
        }
    }
    for (name, want) in [
        ("web", std::slice::from_ref(&web_ip)),
        ("ext", std::slice::from_ref(&web_ip)),
        ("hl", &hl_ips[..]),
        ("nope", &[][..]),
    ] {
        errors.extend(check("", name, want).err());
    }
    if !errors.is_empty() {
        // Clusters started side by side on one host share its nftables table: when another
        // one's rules are in force, 10.43.0.10 reaches that cluster's DNS, not ours.
        let rules = std::process::Command::new("nft")
            .args(["list", "table", "ip", "keelson"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if rules.contains(&format!("{node_ip}/{port}")) {
            panic!("{}", errors.join("\n"));
        }
        eprintln!(
            "SKIP (lookups through 10.43.0.10): another cluster on this host owns the service proxy's rules:\n{}",
            errors.join("\n")
        );
    }
}
