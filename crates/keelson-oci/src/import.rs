//! Importing image archives (docker save or OCI layout) into containerd's CRI namespace by
//! streaming them into `ctr images import`, with progress, and reading back the names.

use std::ffi::OsString;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is neither a docker-save nor an OCI image archive")]
    NotAnArchive { path: PathBuf },
    #[error("{path} is gzip-compressed: decompress it first (gunzip)")]
    Compressed { path: PathBuf },
    #[error("running {ctr}: {source}")]
    Spawn {
        ctr: PathBuf,
        source: std::io::Error,
    },
    #[error("importing {path}: ctr failed ({status}): {stderr}")]
    Ctr {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("importing {path}: ctr imported no image")]
    NoImages { path: PathBuf },
    #[error("listing images: ctr failed ({status}): {stderr}")]
    List { status: String, stderr: String },
    #[error(transparent)]
    Archive(#[from] crate::archive::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The two archive formats `ctr images import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `docker save`: manifest.json at the top.
    DockerSave,
    /// OCI image layout: oci-layout and index.json at the top.
    Oci,
}

/// Tells a docker-save archive from an OCI one by the names at the top of the tar.
pub fn archive_kind(file: &Path) -> Result<ArchiveKind> {
    let read_err = |source| Error::Read {
        path: file.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(file).map_err(read_err)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(read_err)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        return Err(Error::Compressed {
            path: file.to_path_buf(),
        });
    }
    let f = std::fs::File::open(file).map_err(read_err)?;
    let mut archive = tar::Archive::new(f);
    let mut names = Vec::new();
    let not_archive = || Error::NotAnArchive {
        path: file.to_path_buf(),
    };
    for entry in archive.entries_with_seek().map_err(|_| not_archive())? {
        let entry = entry.map_err(|_| not_archive())?;
        let path = entry.path().map_err(|_| not_archive())?;
        names.push(path.to_string_lossy().trim_start_matches("./").to_string());
    }
    kind_from_names(&names).ok_or_else(not_archive)
}

/// OCI when the top has `oci-layout` (newer `docker save` writes both), else docker-save
/// when it has `manifest.json`.
pub fn kind_from_names(names: &[String]) -> Option<ArchiveKind> {
    if names.iter().any(|n| n == "oci-layout") {
        Some(ArchiveKind::Oci)
    } else if names.iter().any(|n| n == "manifest.json") {
        Some(ArchiveKind::DockerSave)
    } else {
        None
    }
}

/// The arguments after `ctr`: import from stdin into the CRI namespace, every platform.
pub fn import_args(address: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--address".into(), address.into()];
    for a in [
        "--namespace",
        crate::CRI_NAMESPACE,
        "images",
        "import",
        "--all-platforms",
        "-",
    ] {
        args.push(a.into());
    }
    args
}

/// The image names in ctr's output: `unpacking NAME (sha256:...)...done`.
pub fn parse_imported_names(output: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = output;
    while let Some(i) = rest.find("unpacking ") {
        rest = &rest[i + "unpacking ".len()..];
        if let Some(end) = rest.find(" (sha256:") {
            let name = rest[..end].trim();
            if !name.is_empty()
                && !name.contains(char::is_whitespace)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Streams `file` into `ctr --address ADDRESS -n k8s.io images import --all-platforms -`,
/// calling `progress(bytes_read, total)` as it copies; returns the names ctr unpacked.
pub fn import_archive(
    ctr: &Path,
    address: &Path,
    file: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<String>> {
    archive_kind(file)?;
    let read_err = |source| Error::Read {
        path: file.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(file).map_err(read_err)?;
    let total = f.metadata().map_err(read_err)?.len();
    let mut child = Command::new(ctr)
        .args(import_args(address))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            ctr: ctr.to_path_buf(),
            source,
        })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    progress(0, total);
    let mut copy_result = Ok(());
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                copy_result = Err(read_err(e));
                break;
            }
        };
        // A write error means ctr stopped reading; its exit status and stderr say why.
        if stdin.write_all(&buf[..n]).is_err() {
            break;
        }
        done += n as u64;
        progress(done, total);
    }
    drop(stdin);
    let status = child.wait().map_err(|source| Error::Spawn {
        ctr: ctr.to_path_buf(),
        source,
    })?;
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    copy_result?;
    if !status.success() {
        return Err(Error::Ctr {
            path: file.to_path_buf(),
            status: status.to_string(),
            stderr: err.trim().to_string(),
        });
    }
    let names = parse_imported_names(&out);
    if names.is_empty() {
        return Err(Error::NoImages {
            path: file.to_path_buf(),
        });
    }
    Ok(names)
}

/// `(name, manifest digest)` of every image in containerd's CRI namespace.
pub fn list_images(ctr: &Path, address: &Path) -> Result<Vec<(String, String)>> {
    let out = Command::new(ctr)
        .arg("--address")
        .arg(address)
        .args(["--namespace", crate::CRI_NAMESPACE, "images", "ls"])
        .output()
        .map_err(|source| Error::Spawn {
            ctr: ctr.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::List {
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(parse_image_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Reads `ctr images ls` output: a header line, then `REF TYPE DIGEST SIZE ...` rows.
pub fn parse_image_list(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 3 && cols[2].starts_with("sha256:"))
                .then(|| (cols[0].to_string(), cols[2].to_string()))
        })
        .collect()
}

/// Makes sure containerd has this build's pause image: imports it (writing the archive in
/// `work_dir`) unless an image of that name and digest is there. Returns whether it imported.
pub fn ensure_pause_image(ctr: &Path, address: &Path, work_dir: &Path) -> Result<bool> {
    let want = crate::archive::layout(&crate::pause::pause_image_spec())?.manifest_digest;
    let present = list_images(ctr, address)?;
    if present
        .iter()
        .any(|(name, digest)| name == crate::PAUSE_IMAGE && *digest == want)
    {
        return Ok(false);
    }
    let file = work_dir.join("keelson-pause.tar");
    crate::pause::write_pause_archive(&file)?;
    let result = import_archive(ctr, address, &file, &mut |_, _| {});
    let _ = std::fs::remove_file(&file);
    result.map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_output() {
        let check = |out: &str, want: &[&str]| assert_eq!(parse_imported_names(out), want, "{out}");
        check(
            "unpacking docker.io/library/nginx:latest (sha256:0123abcd)...done\n",
            &["docker.io/library/nginx:latest"],
        );
        check(
            "unpacking localhost/keelson/pause:1 (sha256:aa)...done\nunpacking docker.io/x/y:2 (sha256:bb)...done\n",
            &["localhost/keelson/pause:1", "docker.io/x/y:2"],
        );
        check("", &[]);
        check("ctr: something else\n", &[]);
    }

    #[test]
    fn parses_image_lists() {
        let out = "REF                       TYPE                                       DIGEST        SIZE      PLATFORMS   LABELS \n\
localhost/keelson/pause:1 application/vnd.oci.image.manifest.v1+json sha256:746b 538.0 KiB linux/amd64 -\n\
docker.io/library/nginx:latest application/vnd.oci.image.manifest.v1+json sha256:fb36 1.2 MiB linux/amd64 -\n";
        assert_eq!(
            parse_image_list(out),
            [
                (
                    "localhost/keelson/pause:1".to_string(),
                    "sha256:746b".to_string()
                ),
                (
                    "docker.io/library/nginx:latest".to_string(),
                    "sha256:fb36".to_string()
                ),
            ]
        );
        assert!(parse_image_list("REF TYPE DIGEST SIZE PLATFORMS LABELS\n").is_empty());
    }

    #[test]
    fn tells_archive_kinds_apart() {
        let check = |names: &[&str], want: Option<ArchiveKind>| {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            assert_eq!(kind_from_names(&names), want, "{names:?}");
        };
        check(
            &["oci-layout", "index.json", "blobs/"],
            Some(ArchiveKind::Oci),
        );
        check(
            &["abc/layer.tar", "manifest.json", "repositories"],
            Some(ArchiveKind::DockerSave),
        );
        check(
            &["oci-layout", "manifest.json", "index.json"],
            Some(ArchiveKind::Oci),
        );
        check(&["etc/passwd"], None);
    }

    #[test]
    fn builds_the_ctr_command_line() {
        let args: Vec<String> = import_args(Path::new("/run/k/containerd.sock"))
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(
            args,
            [
                "--address",
                "/run/k/containerd.sock",
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--all-platforms",
                "-"
            ]
        );
    }

    #[test]
    fn refuses_files_that_are_not_image_archives() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "hello, this is not a tar file at all").unwrap();
        let err = archive_kind(&plain).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is neither a docker-save nor an OCI image archive",
                plain.display()
            )
        );
        let gz = dir.path().join("x.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(
            archive_kind(&gz)
                .unwrap_err()
                .to_string()
                .contains("gzip-compressed")
        );
        let missing = dir.path().join("missing.tar");
        assert!(
            archive_kind(&missing)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("reading {}", missing.display()))
        );
    }
}
