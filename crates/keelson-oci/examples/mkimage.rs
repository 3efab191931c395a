//! Assembles the project's test images (stand-ins for the public images the seed scenarios
//! name) from the keelson-workload binary and busybox, as OCI archives; scripts/test-images
//! pushes them to the local registry.
//!
//! `cargo run -p keelson-oci --example mkimage -- --workload BIN --busybox BIN --out DIR`
//! prints one line per image: `REPO:TAG FILE DIGEST` (REPO as on docker.io, e.g. library/nginx).

use std::path::{Path, PathBuf};
use std::process::Command;

use keelson_oci::{Entry, ImageSpec, write_oci_archive};

const WORKLOAD: &str = "/bin/keelson-workload";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into an image besides its config.
#[derive(Clone, Copy, PartialEq)]
enum Base {
    /// busybox, its applets, the workload, `/bin/curl` → workload.
    Full,
    /// busybox and its applets only.
    Busybox,
    /// the workload binary alone.
    WorkloadOnly,
}

/// One test image: its docker.io repository and tag, and how it starts.
struct Image {
    repo: &'static str,
    tag: &'static str,
    base: Base,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    ports: Vec<String>,
    working_dir: &'static str,
    /// Extra symlinks to the workload (`/usr/bin/mysqladmin`).
    workload_links: &'static [&'static str],
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A full image started by `cmd`, exposing `ports`.
fn image(repo: &'static str, tag: &'static str, cmd: &[&str], ports: &[&str]) -> Image {
    Image {
        repo,
        tag,
        base: Base::Full,
        entrypoint: Vec::new(),
        cmd: strings(cmd),
        ports: strings(ports),
        working_dir: "/",
        workload_links: &[],
    }
}

/// A web server stand-in (nginx, httpd): port 80, a message naming it, 404 off the index.
fn web80(repo: &'static str, tag: &'static str, message: &str) -> Image {
    let cmd = [
        WORKLOAD,
        "serve",
        "--port",
        "80",
        "--strict-paths",
        "--message",
        message,
    ];
    image(repo, tag, &cmd, &["80/tcp"])
}

/// The workload serving on `port`, as the seed's kubetm/pNNNN images do.
fn serve_on(repo: &'static str, port: &str) -> Image {
    image(
        repo,
        "latest",
        &[WORKLOAD, "serve", "--port", port],
        &[&format!("{port}/tcp")],
    )
}

fn images() -> Vec<Image> {
    vec![
        web80("library/nginx", "latest", "nginx latest"),
        web80("library/nginx", "1.10", "nginx 1.10"),
        web80("library/nginx", "1.11", "nginx 1.11"),
        web80("library/nginx", "1.12", "nginx 1.12"),
        web80("library/httpd", "latest", "httpd"),
        serve_on("kubetm/p8000", "8000"),
        serve_on("kubetm/p8080", "8080"),
        // The seeds run kubetm/init as a long-lived app container (ReplicationControllers,
        // labelled pods): it says "init done", then keeps serving. As an init container,
        // give it a command (it has a shell): `sh -c "echo init done"`.
        image(
            "kubetm/init",
            "latest",
            &[
                "/bin/sh",
                "-c",
                "echo init done; exec /bin/keelson-workload serve --port 8080 --message init",
            ],
            &["8080/tcp"],
        ),
        myweb("union1991/myweb"),
        myweb("c1t1d0s7/myweb"),
        Image {
            base: Base::Busybox,
            ..image("library/busybox", "latest", &["sh"], &[])
        },
        Image {
            workload_links: &["/usr/bin/mysqladmin", "/usr/local/bin/mysqladmin"],
            ..image(
                "library/mysql",
                "latest",
                &[WORKLOAD, "serve", "--port", "3306", "--message", "mysql"],
                &["3306/tcp"],
            )
        },
        Image {
            base: Base::WorkloadOnly,
            entrypoint: strings(&[WORKLOAD]),
            ..image("keelson/workload", "latest", &["serve"], &[])
        },
    ]
}

/// Seed 001's Dockerfile: ENTRYPOINT runs the app, CMD is the message.
fn myweb(repo: &'static str) -> Image {
    Image {
        entrypoint: strings(&[WORKLOAD, "serve", "--port", "8080"]),
        working_dir: "/usr/src/app",
        ..image(repo, "latest", &["HELLO World!"], &["8080/tcp"])
    }
}

struct Inputs {
    workload: Vec<u8>,
    busybox: Vec<u8>,
    applets: Vec<String>,
}

fn base_files(base: Base, inputs: &Inputs) -> Vec<Entry> {
    let dir = |p: &str, mode| Entry::Dir {
        path: p.into(),
        mode,
    };
    let file = |p: &str, mode, c: &[u8]| Entry::File {
        path: p.into(),
        mode,
        contents: c.to_vec(),
    };
    let link = |p: &str, t: &str| Entry::Symlink {
        path: p.into(),
        target: t.into(),
    };
    let mut files = vec![dir("/bin", 0o755)];
    if base != Base::WorkloadOnly {
        files.push(file("/bin/busybox", 0o755, &inputs.busybox));
        for applet in &inputs.applets {
            if base == Base::Full && applet == "curl" {
                continue;
            }
            files.push(link(&format!("/bin/{applet}"), "busybox"));
        }
        files.push(link("/usr/bin/env", "/bin/busybox"));
    }
    if base != Base::Busybox {
        files.push(file(WORKLOAD, 0o755, &inputs.workload));
    }
    if base == Base::Full {
        files.push(link("/bin/curl", "keelson-workload"));
    }
    files.extend([
        dir("/etc", 0o755),
        file(
            "/etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        file("/etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n"),
        dir("/root", 0o700),
        dir("/tmp", 0o1777),
        dir("/var/tmp", 0o1777),
        dir("/proc", 0o555),
        dir("/sys", 0o555),
        dir("/dev", 0o755),
    ]);
    files
}

fn spec(img: &Image, inputs: &Inputs) -> ImageSpec {
    let mut files = base_files(img.base, inputs);
    for l in img.workload_links {
        files.push(Entry::Symlink {
            path: (*l).into(),
            target: WORKLOAD.into(),
        });
    }
    if img.working_dir != "/" {
        files.push(Entry::Dir {
            path: img.working_dir.into(),
            mode: 0o755,
        });
    }
    ImageSpec {
        name: format!("docker.io/{}:{}", img.repo, img.tag),
        files,
        entrypoint: img.entrypoint.clone(),
        cmd: img.cmd.clone(),
        env: vec![PATH_ENV.into()],
        working_dir: img.working_dir.into(),
        exposed_ports: img.ports.clone(),
    }
}

fn applets(busybox: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("running {} --list: {e}", busybox.display()))?;
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(String::from)
        .collect();
    list.sort();
    list.dedup();
    Ok(list)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mkimage: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut workload = None;
    let mut busybox = PathBuf::from("/bin/busybox");
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--workload" => workload = Some(PathBuf::from(value()?)),
            "--busybox" => busybox = PathBuf::from(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let workload = workload.ok_or("--workload BIN is required")?;
    let out = out.ok_or("--out DIR is required")?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let inputs = Inputs {
        workload: read(&workload)?,
        busybox: read(&busybox)?,
        applets: applets(&busybox)?,
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    for img in images() {
        let file = out.join(format!("{}_{}.tar", img.repo.replace('/', "_"), img.tag));
        let digest = write_oci_archive(&spec(&img, &inputs), &file).map_err(|e| e.to_string())?;
        println!("{}:{} {} {digest}", img.repo, img.tag, file.display());
    }
    Ok(())
}
