//! Saving where training stands with each checkpoint, and continuing a run from it
//! exactly: weights, Adam's moments and step count, the task's state, the epoch and
//! step, and the metrics log up to that epoch. The random streams need no saving:
//! the trainer draws each epoch's from the run's seed and the epoch number
//! ([`epoch_seed`]).

use std::path::Path;

use dfdx::nn::tensor_collection::TensorCollection;
use dfdx::prelude::*;

use super::checkpoint::{
    load_checkpoint, read_checkpoint_meta, read_tensors, save_checkpoint_with, CheckpointMeta,
    TrainingState, OPTIMIZER_PREFIX,
};
use super::config::TrainConfig;
use super::metrics::EpochMetrics;
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, Real};
use crate::train::optim::Adam;

/// The checkpoint file of a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The run's description beside its checkpoint: the checkpoint's metadata as JSON.
pub const CONFIG_FILE: &str = "config.json";
/// The model of the best evaluated epoch ([`super::TrainConfig::keep_best`]).
pub const BEST_FILE: &str = "best.safetensors";
/// The per-epoch metrics log of a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The chart of the metrics log (feature `charts`): training loss, test −ELBO and KL
/// per epoch, redrawn after every epoch.
pub const CURVES_FILE: &str = "curves.png";

/// The seed of epoch `epoch`'s random streams (shuffling, dynamic binarization and each
/// replica's `ε`) in a run seeded with `seed`: SplitMix64 of the pair, so every epoch's
/// streams are fixed by the seed alone and a resumed run draws what the uninterrupted
/// one would have.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a resumed run starts.
pub(crate) struct Resumed {
    /// Epochs already completed.
    pub epoch: usize,
    /// Optimizer steps already taken.
    pub step: usize,
    /// The completed epochs' metrics, from the log.
    pub metrics: Vec<EpochMetrics>,
    /// The best evaluated epoch so far and its ELBO.
    pub best: Option<(usize, f64)>,
}

/// Writes the checkpoint of `dir` with the training state (weights, Adam's moments as
/// `optimizer.adam.{m,v}.<tensor>`, metadata) and `config.json` beside it, both
/// atomically.
pub(crate) fn save<E, D, M>(
    dir: &Path,
    model: &M,
    opt: &Adam<M, E, D>,
    meta: &CheckpointMeta,
) -> Result<()>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let mut extra = Vec::new();
    if let Some(moments) = opt.moments() {
        let names = trainable(model);
        for ((name, shape), (m, v)) in names.iter().zip(moments) {
            extra.push((
                format!("{OPTIMIZER_PREFIX}adam.m.{name}"),
                shape.clone(),
                m.clone(),
            ));
            extra.push((
                format!("{OPTIMIZER_PREFIX}adam.v.{name}"),
                shape.clone(),
                v.clone(),
            ));
        }
    }
    save_checkpoint_with(model, &extra, meta, dir.join(CHECKPOINT_FILE))?;
    let path = dir.join(CONFIG_FILE);
    super::run_dir::write_atomically(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, meta).map_err(|e| Error::io(&path, e.into()))?;
        std::io::Write::write_all(w, b"\n").map_err(|e| Error::io(&path, e))
    })
}

/// Restores the run in `dir` into `model`, `opt` and (through `restore_task`) the task,
/// after checking that `config` continues it: same batch size, learning rate, seed,
/// binarization, warm-up and replica count, more epochs than done, the same model
/// when both describe it. Rewrites the metrics log to the completed epochs.
pub(crate) fn load<E, D, M>(
    dir: &Path,
    config: &TrainConfig,
    replicas: usize,
    model: &mut M,
    opt: &mut Adam<M, E, D>,
    restore_task: impl FnOnce(&serde_json::Value) -> Result<()>,
) -> Result<Resumed>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = dir.join(CHECKPOINT_FILE);
    let cannot = |why: String| Error::invalid("resume", format!("{}: {why}", dir.display()));
    if !path.is_file() {
        return Err(cannot("no checkpoint to resume from".into()));
    }
    let meta = read_checkpoint_meta(&path)?
        .ok_or_else(|| cannot("the checkpoint does not say where training stood".into()))?;
    let state = meta
        .training
        .as_ref()
        .ok_or_else(|| cannot("the checkpoint does not say where training stood".into()))?;
    check_continues(state, config, replicas).map_err(cannot)?;
    if let (Some(here), Some(found)) = (&config.model, &meta.model) {
        let differences = here.differences(found);
        if !differences.is_empty() {
            return Err(Error::CheckpointMismatch { path, differences });
        }
    }
    load_checkpoint(model, &path)?;
    let saved = read_tensors(&path, &format!("{OPTIMIZER_PREFIX}adam."))?;
    let names = trainable(model);
    let mut moments = Vec::with_capacity(names.len());
    for (name, shape) in &names {
        let find = |which: &str| -> Result<Vec<E>> {
            let key = format!("{which}.{name}");
            let (_, s, v) = saved
                .iter()
                .find(|(n, _, _)| *n == key)
                .ok_or_else(|| cannot(format!("Adam's moment `{key}` is missing")))?;
            if s != shape {
                return Err(cannot(format!("Adam's moment `{key}` has shape {s:?}")));
            }
            Ok(v.iter().map(|&x| cst::<E>(x)).collect())
        };
        if state.step > 0 {
            moments.push((find("m")?, find("v")?));
        }
    }
    let step = i32::try_from(state.step).map_err(|_| cannot("too many steps".into()))?;
    opt.restore(step, moments)?;
    restore_task(&state.task)?;
    let metrics = rewrite_metrics(&dir.join(METRICS_FILE), state.epoch)?;
    Ok(Resumed {
        epoch: state.epoch,
        step: state.step,
        metrics,
        best: state.best,
    })
}

/// Why `config` does not continue the run `state` describes, if it does not.
fn check_continues(
    state: &TrainingState,
    config: &TrainConfig,
    replicas: usize,
) -> std::result::Result<(), String> {
    let was = &state.config;
    let mut differ = Vec::new();
    if was.batch_size != config.batch_size {
        differ.push(format!(
            "batch size {} → {}",
            was.batch_size, config.batch_size
        ));
    }
    if was.lr != config.lr {
        differ.push(format!("learning rate {} → {}", was.lr, config.lr));
    }
    if was.seed != config.seed {
        differ.push(format!("seed {} → {}", was.seed, config.seed));
    }
    if was.binarization != config.binarization {
        differ.push(format!(
            "binarization {:?} → {:?}",
            was.binarization, config.binarization
        ));
    }
    if was.kl_warmup_steps != config.kl_warmup_steps {
        differ.push(format!(
            "KL warm-up {} → {} steps",
            was.kl_warmup_steps, config.kl_warmup_steps
        ));
    }
    if was.lr_schedule != config.lr_schedule || was.warmup_steps != config.warmup_steps {
        differ.push(format!(
            "learning-rate schedule {:?} with {} warm-up steps → {:?} with {}",
            was.lr_schedule, was.warmup_steps, config.lr_schedule, config.warmup_steps
        ));
    }
    if was.grad_clip != config.grad_clip || was.weight_decay != config.weight_decay {
        differ.push(format!(
            "clipping {:?} and weight decay {:?} → {:?} and {:?}",
            was.grad_clip, was.weight_decay, config.grad_clip, config.weight_decay
        ));
    }
    if state.replicas != replicas {
        differ.push(format!("threads {} → {replicas}", state.replicas));
    }
    if !differ.is_empty() {
        return Err(format!(
            "the run was trained with other settings ({}); resume with the same ones",
            differ.join(", ")
        ));
    }
    if state.epoch >= config.epochs {
        return Err(format!(
            "the run has completed {} epochs already; ask for more (--epochs)",
            state.epoch
        ));
    }
    Ok(())
}

/// Keeps the lines of epochs `1..=epoch` of the metrics log (a run killed after
/// logging an epoch but before its checkpoint logged one more), rewritten atomically;
/// returns them.
fn rewrite_metrics(path: &Path, epoch: usize) -> Result<Vec<EpochMetrics>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kept: Vec<(EpochMetrics, &str)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<EpochMetrics>(l).ok().map(|m| (m, l)))
        .filter(|(m, _)| m.epoch <= epoch)
        .collect();
    super::run_dir::write_atomically(path, |w| {
        for (_, line) in &kept {
            writeln_to(w, line, path)?;
        }
        Ok(())
    })?;
    Ok(kept.into_iter().map(|(m, _)| m).collect())
}

fn writeln_to(w: &mut impl std::io::Write, line: &str, path: &Path) -> Result<()> {
    writeln!(w, "{line}").map_err(|e| Error::io(path, e))
}

/// Names and shapes of `model`'s trainable tensors, in visiting order (the order of
/// [`Adam::moments`]).
fn trainable<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &M,
) -> Vec<(String, Vec<usize>)> {
    let expected = super::checkpoint::Expected::of(model);
    expected
        .tensors
        .into_iter()
        .zip(expected.trainable)
        .filter_map(|(t, train)| train.then_some(t))
        .collect()
}
