//! `keelson image import FILE...`: loads docker-save and OCI image archives into the node's
//! containerd (the one `keelson up` owns), with a progress bar.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Import docker-save or OCI image archives into the node's containerd.
    Import {
        /// Archives to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The keelson data dir whose containerd to use.
        #[arg(long, default_value_os_t = crate::server::default_data_dir())]
        data_dir: PathBuf,
        /// The containerd socket (default: the one under the data dir).
        #[arg(long)]
        containerd_socket: Option<PathBuf>,
    },
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    let ImageCommand::Import {
        files,
        data_dir,
        containerd_socket,
    } = cmd;
    let socket =
        containerd_socket.unwrap_or_else(|| data_dir.join("containerd").join("containerd.sock"));
    anyhow::ensure!(
        socket.exists(),
        "no containerd socket at {}: is `keelson up` running with --data-dir {}?",
        socket.display(),
        data_dir.display()
    );
    let ctr = keelson_cri::containerd::find_binary("ctr")
        .context("ctr (from the containerd package) is not installed")?;
    for file in files {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("importing {}", file.display()));
        let names = keelson_oci::import_archive(&ctr, &socket, &file, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })?;
        bar.finish_and_clear();
        for name in names {
            println!("imported {name}");
        }
    }
    Ok(())
}
