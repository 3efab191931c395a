//! The sandbox (pause) image keelson builds itself: the static pause program from
//! `pause/pause.rs`, compiled by build.rs, as `/pause` in a one-layer image.

use std::path::Path;

use crate::archive::{self, Entry, ImageSpec};

/// The name the agent gives containerd as the sandbox image.
pub const PAUSE_IMAGE: &str = "localhost/keelson/pause:1";

/// The static pause binary for the target this crate was built for.
pub const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The pause image: `/pause` as entrypoint, run as root from `/`.
pub fn pause_image_spec() -> ImageSpec {
    ImageSpec {
        name: PAUSE_IMAGE.to_string(),
        files: vec![Entry::File {
            path: "/pause".into(),
            mode: 0o755,
            contents: PAUSE_BINARY.to_vec(),
        }],
        entrypoint: vec!["/pause".into()],
        cmd: Vec::new(),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        working_dir: "/".into(),
        exposed_ports: Vec::new(),
    }
}

/// Writes the pause image as an OCI archive; returns its manifest digest.
pub fn write_pause_archive(out: &Path) -> archive::Result<String> {
    archive::write_oci_archive(&pause_image_spec(), out)
}
