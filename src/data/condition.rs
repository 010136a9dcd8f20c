//! How a labelled image becomes an observation `x` and a condition `y` for a
//! conditional model `p(x | y)`: the class label as a one-hot vector, or the top rows
//! of the image (image completion).

use dfdx::prelude::*;

use super::dataset::Dataset;
use crate::error::{Error, Result};
use crate::ops::{Events, Real};

/// Splits a batch of a [`Dataset`] into observations `x` of shape `(batch, X)` and
/// conditions `y` of shape `(batch, Y)`.
pub trait Conditioning<const X: usize, const Y: usize> {
    /// `(x, y)` for images `indices` of `data`, row-major host vectors of
    /// `indices.len() · X` and `indices.len() · Y` values. With `dynamic` set, pixels are
    /// fresh Bernoulli draws (see [`Dataset::pixels`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the images do not split into `X` and `Y` values;
    /// [`Error::InvalidSetting`] for an index out of range or a label out of range.
    fn split<E: Real>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Vec<E>, Vec<E>)>;

    /// [`Conditioning::split`] as tensors on `device`.
    ///
    /// # Errors
    /// As [`Conditioning::split`].
    #[allow(clippy::type_complexity)]
    fn tensors<E: Real, D: Device<E>>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
        device: &D,
    ) -> Result<(Events<Const<X>, E, D>, Events<Const<Y>, E, D>)> {
        let (x, y) = self.split::<E>(data, indices, dynamic)?;
        let n = indices.len();
        Ok((
            device.tensor_from_vec(x, (n, Const::<X>)),
            device.tensor_from_vec(y, (n, Const::<Y>)),
        ))
    }
}

/// `x` = the whole image (`X = rows · cols`), `y` = the one-hot class label over
/// `Y` classes (class-conditioned generation, Sohn et al. 2015, §5).
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelCondition;

impl<const X: usize, const Y: usize> Conditioning<X, Y> for LabelCondition {
    fn split<E: Real>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Vec<E>, Vec<E>)> {
        if X != data.dim() {
            return Err(Error::ShapeMismatch {
                context: "LabelCondition".into(),
                expected: format!("{X} pixels per image (the model's x)"),
                found: format!("{} ({}×{})", data.dim(), data.rows, data.cols),
            });
        }
        let x = data.pixels::<E>(indices, dynamic)?;
        let mut y = vec![E::zero(); indices.len() * Y];
        for (row, &i) in indices.iter().enumerate() {
            let label = data.labels[i] as usize;
            if label >= Y {
                return Err(Error::invalid(
                    "label",
                    format!("image {i} has label {label}, outside 0..{Y}"),
                ));
            }
            y[row * Y + label] = E::one();
        }
        Ok((x, y))
    }
}

/// Image completion (Sohn et al. 2015, §5.2): `y` = the top `rows` rows of the image
/// (`Y = rows · cols`), `x` = the rows below (`X = (height − rows) · cols`). For 28×28
/// images and `rows = 14`, `X = Y = 392`.
#[derive(Debug, Clone, Copy)]
pub struct TopRowsCondition {
    /// How many rows from the top form the condition.
    pub rows: usize,
}

impl<const X: usize, const Y: usize> Conditioning<X, Y> for TopRowsCondition {
    fn split<E: Real>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Vec<E>, Vec<E>)> {
        let top = self.rows * data.cols;
        if self.rows > data.rows || top != Y || data.dim() - top != X {
            return Err(Error::ShapeMismatch {
                context: "TopRowsCondition".into(),
                expected: format!("{Y} condition pixels (top) and {X} observed pixels (bottom)"),
                found: format!(
                    "{}×{} images split after row {}",
                    data.rows, data.cols, self.rows
                ),
            });
        }
        let pixels = data.pixels::<E>(indices, dynamic)?;
        let (mut x, mut y) = (
            Vec::with_capacity(indices.len() * X),
            Vec::with_capacity(indices.len() * Y),
        );
        for image in pixels.chunks(data.dim()) {
            y.extend_from_slice(&image[..top]);
            x.extend_from_slice(&image[top..]);
        }
        Ok((x, y))
    }
}
