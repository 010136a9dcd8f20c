//! How a labelled image becomes an observation `x` and a condition `y` for a
//! conditional model `p(x | y)`: the class label as a one-hot vector, or the top rows
//! of the image (image completion).

use dfdx::prelude::*;

use super::dataset::Dataset;
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, Real};

/// Splits a batch of a [`Dataset`] into observations `x` of shape `(batch, X)` and
/// conditions `y` of shape `(batch, Y)`.
pub trait Conditioning<X: Dim, Y: Dim> {
    /// The sizes of `x` and `y` for images of `data`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `data`'s images do not split into `X` and `Y` values.
    fn dims(&self, data: &Dataset) -> Result<(X, Y)>;

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
    ) -> Result<(Events<X, E, D>, Events<Y, E, D>)> {
        let (xd, yd) = self.dims(data)?;
        let (x, y) = self.split::<E>(data, indices, dynamic)?;
        let n = indices.len();
        Ok((
            device.tensor_from_vec(x, (n, xd)),
            device.tensor_from_vec(y, (n, yd)),
        ))
    }
}

/// `x` = the whole image (`X = rows · cols`), `y` = the one-hot class label over
/// `Y` classes (class-conditioned generation, Sohn et al. 2015, §5).
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelCondition;

impl<X: Dim + Default, const Y: usize> Conditioning<X, Const<Y>> for LabelCondition {
    fn dims(&self, data: &Dataset) -> Result<(X, Const<Y>)> {
        let x = X::from_size(data.dim()).ok_or_else(|| {
            Error::shape(
                "LabelCondition (pixels per image)",
                &[X::default().size()],
                &[data.dim()],
            )
        })?;
        Ok((x, Const))
    }

    fn split<E: Real>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Vec<E>, Vec<E>)> {
        <Self as Conditioning<X, Const<Y>>>::dims(self, data)?;
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

impl<X: Dim + Default, Y: Dim + Default> Conditioning<X, Y> for TopRowsCondition {
    fn dims(&self, data: &Dataset) -> Result<(X, Y)> {
        let top = self.rows * data.cols;
        // Expected: the model's observed (bottom) and condition (top) pixels; found:
        // this split of the data's images.
        let mismatch = || {
            Error::shape(
                "TopRowsCondition (bottom, top pixels)",
                &[X::default().size(), Y::default().size()],
                &[data.dim().saturating_sub(top), top],
            )
        };
        if self.rows > data.rows {
            return Err(mismatch());
        }
        let x = X::from_size(data.dim() - top).ok_or_else(mismatch)?;
        let y = Y::from_size(top).ok_or_else(mismatch)?;
        Ok((x, y))
    }

    fn split<E: Real>(
        &self,
        data: &Dataset,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Vec<E>, Vec<E>)> {
        let (xd, yd) = <Self as Conditioning<X, Y>>::dims(self, data)?;
        let top = yd.size();
        let pixels = data.pixels::<E>(indices, dynamic)?;
        let (mut x, mut y) = (
            Vec::with_capacity(indices.len() * xd.size()),
            Vec::with_capacity(indices.len() * top),
        );
        for image in pixels.chunks(data.dim()) {
            y.extend_from_slice(&image[..top]);
            x.extend_from_slice(&image[top..]);
        }
        Ok((x, y))
    }
}
