//! What training returns.

use super::metrics::EpochMetrics;

/// What [`fit`](super::fit) returns: the per-epoch metrics and the overall throughput.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// One entry per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Images per second over all training steps (evaluation excluded).
    pub train_images_per_s: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// The epoch with the highest evaluated ELBO, and that ELBO.
    #[serde(default)]
    pub best: Option<(usize, f64)>,
    /// Whether [`TrainConfig::patience`](super::TrainConfig::patience) or [`TrainConfig::time_limit`](super::TrainConfig::time_limit) ended training
    /// before `epochs`.
    #[serde(default)]
    pub stopped_early: bool,
    /// [`crate::distributed::parameter_checksum`] of the trained model: the same on every
    /// rank of a run across processes (the trainer checks it after each epoch there;
    /// in one process it is taken once, after training).
    #[serde(default)]
    pub parameter_checksum: u64,
}
