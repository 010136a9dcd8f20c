//! Training: the loop, its settings, checkpoints and the metrics log.

pub mod checkpoint;
pub mod config;
pub mod enumerated;
pub mod metrics;
pub mod optim;
pub mod parallel;
mod report;
pub mod resume;
pub mod run_dir;
pub mod schedule;
pub mod spec;
mod stages;
pub mod task;
pub mod threads;
pub mod trainer;
pub(crate) mod workers;

pub use checkpoint::{
    load_checkpoint, load_model, load_model_as, read_checkpoint_meta, read_tensors,
    save_checkpoint, save_checkpoint_with, CheckpointMeta, NamedTensor, TrainingState,
};
pub use config::{TrainConfig, TrainPlan};
pub use enumerated::EnumeratedTask;
pub use metrics::{EpochMetrics, MetricsLog};
pub use parallel::{DataParallel, ThreadSafe};
pub use run_dir::RunDir;
pub use schedule::{EpochCallback, LrSchedule};
pub use spec::{Describe, ModelSpec, Named};
pub use task::{Batch, ConditionalTask, ObjectiveTask, Progress, Task};
pub use trainer::{fit, fit_task, prepare_test, TrainReport};
