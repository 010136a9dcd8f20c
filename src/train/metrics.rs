//! Metrics written as JSON lines, one object per epoch.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What one training epoch measured. ELBO figures are nats per image (means over the
/// split); the ELBO is the bound itself, so negative.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss (−objective) over the epoch's steps, nats per image.
    pub train_loss: f64,
    /// Test ELBO, nats per image.
    pub test_elbo: f64,
    /// Test `E_q[log p(x|z)]`, nats per image.
    pub test_reconstruction: f64,
    /// Test `KL(q(z|x) ‖ p(z))`, nats per image.
    pub test_kl: f64,
    /// Training throughput of this epoch, images per second (evaluation excluded).
    pub train_images_per_s: f64,
    /// Wall-clock seconds of this epoch's training steps.
    pub train_seconds: f64,
}

/// Appends one JSON object per line to a file (`metrics.jsonl`), flushing each line so
/// that a crash loses at most the line being written.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Creates (truncates) the log at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Opens the log at `path` to append to it (created if absent), for a resumed run.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened.
    pub fn append_to(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// The epochs of the log at `path`, in order.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::InvalidSetting`] naming the
    /// line for a line that is not an [`EpochMetrics`].
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<EpochMetrics>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::invalid(
                        "metrics log",
                        format!("{} line {}: {e}", path.display(), i + 1),
                    )
                })
            })
            .collect()
    }

    /// Appends `record` as one line of JSON.
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails.
    pub fn append<R: serde::Serialize>(&mut self, record: &R) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
