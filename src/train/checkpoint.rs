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
/// # Errors
/// [`Error::Checkpoint`] if the file is missing, corrupt, lacks a tensor of `model`, or
/// holds one of another shape or dtype.
pub fn load_checkpoint<E, D, M>(model: &mut M, path: impl AsRef<Path>) -> Result<()>
where
    E: Dtype + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    model.load_safetensors(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{e:?}"),
    })
}
