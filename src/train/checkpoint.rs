//! Checkpoints: a model's tensors in safetensors format, written atomically.

use std::path::Path;

use std::io::Write;

use dfdx::nn::tensor_collection::{ScalarOptions, ViewTensorName, ViewTensorRef};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::prelude::*;

use super::spec::{Describe, ModelSpec};

use crate::error::{Error, Result};

/// Saves every tensor of `model` to `path` in safetensors format (keys are the field
/// paths, e.g. `guide.loc.weight`), atomically: the tensors go to a temporary file in
/// the same directory, which is flushed to disk and then renamed over `path`. A crash
/// or error mid-write leaves any previous checkpoint at `path` intact.
///
/// # Errors
/// [`Error::Checkpoint`] if the temporary file cannot be created, written, synced or
/// renamed.
pub fn save_checkpoint<E, D, M>(model: &M, path: impl AsRef<Path>) -> Result<()>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            err(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
    model
        .save_safetensors(tmp.path())
        .map_err(|e| err(format!("writing tensors failed: {e:?}")))?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| err(format!("syncing the temporary file failed: {e}")))?;
    super::run_dir::set_default_permissions(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| err(format!("renaming the temporary file failed: {}", e.error)))?;
    Ok(())
}

/// Loads the tensors of `model` from a checkpoint written by [`save_checkpoint`].
///
/// The file is checked against the model before anything is copied: every tensor the
/// model has must be present with the model's dtype and shape and only finite values,
/// and the file may hold no tensor the model lacks (other than an optimizer's state,
/// under [`OPTIMIZER_PREFIX`], which is skipped). A failed check leaves `model`
/// unchanged. The metadata is not read: [`load_model`] also checks that.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file and the first problem: missing file, not a
/// safetensors file, a missing or unknown tensor, another dtype (e.g. a checkpoint
/// converted to f16 or f64) or shape, a non-finite value.
pub fn load_checkpoint<E, D, M>(model: &mut M, path: impl AsRef<Path>) -> Result<()>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = ::safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err(format!("not a safetensors file: {e:?}")))?;
    let expected = Expected::of(&*model);
    let want = E::safe_dtype();
    for (name, shape) in &expected.tensors {
        let view = file
            .tensor(name)
            .map_err(|_| err(format!("missing tensor `{name}`")))?;
        if view.dtype() != want {
            return Err(err(format!(
                "tensor `{name}` is {:?}, the model needs {want:?}",
                view.dtype()
            )));
        }
        if view.shape() != shape.as_slice() {
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                view.shape()
            )));
        }
        if !finite(view.dtype(), view.data()) {
            return Err(err(format!("tensor `{name}` holds a non-finite value")));
        }
    }
    let known: std::collections::HashSet<&str> = expected
        .tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(expected.scalars.iter().map(String::as_str))
        .collect();
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| !known.contains(n.as_str()) && !n.starts_with(OPTIMIZER_PREFIX))
    {
        return Err(err(format!("unknown tensor `{extra}` (not in this model)")));
    }
    model
        .load_safetensors(path)
        .map_err(|e| err(format!("{e:?}")))
}

/// Whether every value of a little-endian float buffer is finite (other dtypes: yes).
fn finite(dtype: ::safetensors::Dtype, data: &[u8]) -> bool {
    match dtype {
        ::safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        ::safetensors::Dtype::F64 => data.chunks_exact(8).all(|b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).is_finite()
        }),
        _ => true,
    }
}

/// The names and shapes of a model's tensors, as its checkpoint holds them, in visiting
/// order, with which are trainable.
#[derive(Default)]
pub(crate) struct Expected {
    pub tensors: Vec<(String, Vec<usize>)>,
    pub trainable: Vec<bool>,
    pub scalars: Vec<String>,
}

impl Expected {
    /// What `model` holds.
    pub(crate) fn of<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(model: &M) -> Self {
        let mut expected = Expected::default();
        let walked = M::iter_tensors(&mut RecursiveWalker {
            m: (model, String::new()),
            f: &mut expected,
        });
        match walked {
            Ok(_) => expected,
            Err(e) => match e {},
        }
    }
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Expected {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Self::Err> {
        self.trainable.push(opts.do_gradient_update);
        self.tensors
            .push((name, t.shape().concrete().into_iter().collect()));
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (_, name): (&N, String),
    ) -> std::result::Result<Option<N>, Self::Err> {
        self.scalars.push(name);
        Ok(None)
    }
}

/// A tensor outside the model, stored in a checkpoint: name, shape, row-major values.
pub type NamedTensor<E> = (String, Vec<usize>, Vec<E>);

/// The version of the checkpoint metadata written by this crate.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// The safetensors metadata key under which a checkpoint describes itself (a JSON
/// [`CheckpointMeta`]).
pub const META_KEY: &str = "latent";

/// Prefix of the optimizer's tensors in a checkpoint written during training:
/// `optimizer.adam.m.<tensor>` and `optimizer.adam.v.<tensor>`, Adam's first and
/// second moments of each trainable tensor. [`load_checkpoint`] skips them.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// What a checkpoint says about itself: which crate version wrote it, the model it
/// holds (when the writer described it, [`ModelSpec`]) and, for a checkpoint written by
/// the trainer, where training stood. Stored as JSON in the safetensors metadata under
/// [`META_KEY`], and as `config.json` beside the trainer's checkpoints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    /// [`CHECKPOINT_FORMAT`] of the writer.
    pub format: u32,
    /// The `latent` version that wrote it (`CARGO_PKG_VERSION`).
    pub crate_version: String,
    /// The model, when described.
    pub model: Option<ModelSpec>,
    /// Where training stood, for a checkpoint written by the trainer.
    pub training: Option<TrainingState>,
}

impl CheckpointMeta {
    /// Metadata of this crate's version for `model` (no training state).
    pub fn new(model: Option<ModelSpec>) -> Self {
        Self {
            format: CHECKPOINT_FORMAT,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            model,
            training: None,
        }
    }
}

/// Where a training run stood when its checkpoint was written: everything
/// [`super::fit_task`] needs, with the tensors of the checkpoint, to continue it exactly
/// ([`super::TrainConfig::resume`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingState {
    /// The whole training configuration of the run.
    pub config: super::TrainConfig,
    /// The objective or task, as [`super::Task::describe`] names it.
    pub objective: String,
    /// Epochs completed (1-based: the checkpoint follows epoch `epoch`).
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// The number of data-parallel replicas the run used (its random streams depend on
    /// it).
    pub replicas: usize,
    /// The task's own state ([`super::Task::state`]), e.g. a VQ-VAE's EMA statistics.
    pub task: serde_json::Value,
    /// The epoch with the highest evaluated ELBO so far and that ELBO (for
    /// [`super::TrainConfig::keep_best`] and [`super::TrainConfig::patience`]).
    #[serde(default)]
    pub best: Option<(usize, f64)>,
}

/// Saves `model`'s tensors and `extra` named tensors (e.g. an optimizer's moments,
/// under [`OPTIMIZER_PREFIX`]) to `path` in safetensors format with `meta` as JSON
/// under [`META_KEY`] in the file's metadata, atomically (as [`save_checkpoint`]).
/// Tensor names are the model's field paths, as [`save_checkpoint`] writes them.
///
/// # Errors
/// [`Error::Checkpoint`] if the file cannot be written (as [`save_checkpoint`]) or an
/// extra tensor's values do not fill its shape.
pub fn save_checkpoint_with<E, D, M>(
    model: &M,
    extra: &[NamedTensor<E>],
    meta: &CheckpointMeta,
    path: impl AsRef<Path>,
) -> Result<()>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut w = Writer::default();
    M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut w,
    })
    .map_err(|e: std::convert::Infallible| match e {})?;
    for (name, shape, values) in extra {
        if shape.iter().product::<usize>() != values.len() {
            return Err(err(format!(
                "tensor `{name}`: {} values for shape {shape:?}",
                values.len()
            )));
        }
        w.tensors.push((
            name.clone(),
            E::safe_dtype(),
            shape.clone(),
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let json = serde_json::to_string(meta).map_err(|e| err(format!("metadata: {e}")))?;
    let views = w
        .tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            ::safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| err(format!("tensor `{name}`: {e:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        META_KEY.to_string(),
        json,
    )]));
    let bytes = ::safetensors::tensor::serialize(views, &metadata)
        .map_err(|e| err(format!("serializing failed: {e:?}")))?;
    super::run_dir::write_atomically(path, |w| {
        w.write_all(&bytes).map_err(|e| Error::io(path, e))
    })
    .map_err(|e| err(e.to_string()))
}

/// The metadata of the checkpoint at `path` ([`CheckpointMeta`]); `None` for a
/// safetensors file without it (written by [`save_checkpoint`], an earlier version,
/// or another program).
///
/// # Errors
/// [`Error::Checkpoint`] for a missing or unreadable file, one that is not safetensors,
/// or metadata that is not a valid [`CheckpointMeta`].
pub fn read_checkpoint_meta(path: impl AsRef<Path>) -> Result<Option<CheckpointMeta>> {
    let path = path.as_ref();
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_file(path)?;
    let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(format!("not a safetensors file: {e:?}")))?;
    match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        None => Ok(None),
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| err(format!("invalid `{META_KEY}` metadata: {e}"))),
    }
}

/// [`load_checkpoint`] for a model that describes itself: the checkpoint's metadata
/// must describe the same model ([`ModelSpec`]: kind, sizes, parts) before any tensor
/// is checked or copied. Returns the metadata.
///
/// # Errors
/// [`Error::CheckpointMismatch`] listing every difference between the model and the
/// checkpoint's description, or when the checkpoint describes no model;
/// [`load_checkpoint`]'s errors.
pub fn load_model<E, D, M>(model: &mut M, path: impl AsRef<Path>) -> Result<CheckpointMeta>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D> + Describe,
{
    let here = model.spec();
    load_model_as(model, &here, path)
}

/// [`load_model`] for a model described as `here` rather than by its own
/// [`Describe`] (e.g. with parts an application adds, as the long-run example's guide
/// name): the checkpoint's description must equal `here`.
///
/// # Errors
/// As [`load_model`].
pub fn load_model_as<E, D, M>(
    model: &mut M,
    here: &ModelSpec,
    path: impl AsRef<Path>,
) -> Result<CheckpointMeta>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let meta = read_checkpoint_meta(path)?;
    let differences = match meta.as_ref().and_then(|m| m.model.as_ref()) {
        Some(found) => here.differences(found),
        None => vec!["the checkpoint does not describe its model".to_string()],
    };
    if !differences.is_empty() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            differences,
        });
    }
    load_checkpoint(model, path)?;
    meta.ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: "metadata vanished".into(),
    })
}

/// The named tensors of a checkpoint whose names start with `prefix` (the prefix
/// removed), as `f64` values with their shapes, in file order.
///
/// # Errors
/// [`Error::Checkpoint`] for an unreadable file or a tensor that is not `f32`/`f64`.
pub fn read_tensors(path: impl AsRef<Path>, prefix: &str) -> Result<Vec<NamedTensor<f64>>> {
    let path = path.as_ref();
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_file(path)?;
    let file = ::safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err(format!("not a safetensors file: {e:?}")))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let values: Vec<f64> = match view.dtype() {
            ::safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect(),
            ::safetensors::Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            other => return Err(err(format!("tensor `{name}` is {other:?}"))),
        };
        out.push((rest.to_string(), view.shape().to_vec(), values));
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Collects a model's tensors (and scalars, as dfdx writes them: `f64` of shape `[]`)
/// as safetensors data.
#[derive(Default)]
struct Writer {
    tensors: Vec<(String, ::safetensors::Dtype, Vec<usize>, Vec<u8>)>,
}

impl<E: Dtype + dfdx::tensor::safetensors::SafeDtype, D: Device<E>> TensorVisitor<E, D> for Writer {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Self::Err> {
        let data = crate::kernels::ops::host_values(t)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.tensors.push((
            name,
            E::safe_dtype(),
            t.shape().concrete().into_iter().collect(),
            data,
        ));
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (n, name): (&N, String),
    ) -> std::result::Result<Option<N>, Self::Err> {
        let v = n.to_f64().unwrap_or(f64::NAN);
        self.tensors.push((
            name,
            ::safetensors::Dtype::F64,
            Vec::new(),
            v.to_le_bytes().to_vec(),
        ));
        Ok(None)
    }
}
