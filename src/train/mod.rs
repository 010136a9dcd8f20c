//! Training: the loop, its settings, checkpoints and the metrics log.

pub mod checkpoint;
pub mod metrics;
pub mod trainer;

pub use checkpoint::{load_checkpoint, save_checkpoint};
pub use metrics::{EpochMetrics, MetricsLog};
pub use trainer::{evaluate, fit, prepare_test, EvalReport, TrainConfig, TrainReport};
