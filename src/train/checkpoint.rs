//! Checkpoints: a model's tensors in safetensors format, written atomically.

use std::path::Path;

use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::prelude::*;

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
/// and the file may hold no tensor the model lacks. A failed check leaves `model`
/// unchanged.
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
    let mut expected = Expected::default();
    M::iter_tensors(&mut RecursiveWalker {
        m: (&*model, String::new()),
        f: &mut expected,
    })
    .map_err(|e: std::convert::Infallible| match e {})?;
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
        .find(|n| !known.contains(n.as_str()))
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

/// The names and shapes of a model's tensors, as its checkpoint holds them.
#[derive(Default)]
struct Expected {
    tensors: Vec<(String, Vec<usize>)>,
    scalars: Vec<String>,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Expected {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Self::Err> {
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
