//! Hands a rendered ruleset to nftables: the [`Applier`] trait, the real one piping to
//! `nft -f -` (one transaction per call), and a fake that records what it was given.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Errors applying a ruleset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("nft refused the ruleset: {stderr}")]
    Refused { stderr: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Applies `nft -f` text atomically.
pub trait Applier: Send + Sync {
    fn apply(&self, text: &str) -> Result<()>;
}

/// The real applier: `nft -f -` with the text on stdin.
pub struct Nft {
    pub program: String,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: "nft".into(),
        }
    }
}

impl Applier for Nft {
    fn apply(&self, text: &str) -> Result<()> {
        let spawn = |source| Error::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            return Err(Error::Refused {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// A fake applier: keeps every text it was given.
#[derive(Default)]
pub struct Recorder {
    pub applied: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn texts(&self) -> Vec<String> {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Applier for Recorder {
    fn apply(&self, text: &str) -> Result<()> {
        if let Ok(mut a) = self.applied.lock() {
            a.push(text.to_string());
        }
        Ok(())
    }
}
