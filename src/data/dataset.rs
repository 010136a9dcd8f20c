//! In-memory image data sets, binarization and seeded minibatches.

use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;

use super::idx::IdxArray;
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, Events, Real};
use crate::kernels::xoshiro_lanes::Xoshiro128x8;

/// How grey-level pixels in `[0, 1]` are turned into the observations the model sees.
///
/// Likelihood numbers are only comparable between runs with the same binarization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binarization {
    /// Keep intensities in `[0, 1]` (value / 255).
    #[default]
    None,
    /// One Bernoulli draw per pixel with `p = value / 255`, made once with a fixed seed
    /// and kept for the whole run (Larochelle & Murray 2011 style).
    Static,
    /// A fresh Bernoulli draw per pixel every time a batch is formed (Burda et al. 2015,
    /// "dynamically binarized MNIST"). The test set is binarized once, with a fixed seed.
    Dynamic,
}

impl std::str::FromStr for Binarization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            other => Err(Error::invalid(
                "binarize",
                format!("`{other}` is not one of none, static, dynamic"),
            )),
        }
    }
}

impl std::fmt::Display for Binarization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Static => "static",
            Self::Dynamic => "dynamic",
        })
    }
}

/// Labelled images held in memory as bytes: image `i` is
/// `images[i·dim .. (i+1)·dim]`, row-major, `dim = rows · cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// All pixels, `len() · dim()` bytes, 0 = black (background), 255 = white.
    pub images: Vec<u8>,
    /// One class label per image.
    pub labels: Vec<u8>,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// For a real-valued data set (rows of measurements, spectra, embeddings: see
    /// [`Dataset::from_rows`] and [`super::table`]): the values in `f64`, `len() · dim()` of
    /// them, row-major, used as they are (no scaling, no binarization); `images` is
    /// then empty, and `rows = 1`, `cols` the width. `None` for images.
    pub values: Option<Vec<f64>>,
}

impl Dataset {
    /// A data set from an IDX image array `(n, rows, cols)` and a label array `(n,)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the images are not 3-dimensional, the labels not
    /// 1-dimensional, or their counts differ.
    pub fn from_idx(images: IdxArray, labels: IdxArray) -> Result<Self> {
        if images.dims.len() != 3 {
            return Err(Error::shape(
                "image file (number of dimensions: n, rows, cols)",
                &[3],
                &[images.dims.len()],
            ));
        }
        if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
            return Err(Error::ShapeMismatch {
                context: "label file (one label per image)".into(),
                expected: vec![images.dims[0]],
                found: labels.dims.clone(),
            });
        }
        Ok(Self {
            images: images.data,
            labels: labels.data,
            rows: images.dims[1],
            cols: images.dims[2],
            values: None,
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image, `rows · cols`.
    pub fn dim(&self) -> usize {
        self.rows * self.cols
    }

    /// The bytes of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`, or for a real-valued data set (which has no bytes).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.dim()..(i + 1) * self.dim()]
    }

    /// The first `n` images (all if `n >= len()`).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.len());
        Self {
            images: self.images[..n.min(self.images.len() / self.dim().max(1)) * self.dim()]
                .to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
            values: self.values.as_ref().map(|v| v[..n * self.dim()].to_vec()),
        }
    }

    /// The first `n` images and the rest (`n` clamped to `len()`): e.g. 50,000 images
    /// for training and the last 10,000 for validation, as Tomczak & Welling 2018 split
    /// the 60,000 training images of (Fashion-)MNIST.
    pub fn split_at(&self, n: usize) -> (Self, Self) {
        let n = n.min(self.len());
        let d = self.dim();
        let rest = Self {
            images: if self.values.is_some() {
                Vec::new()
            } else {
                self.images[n * d..].to_vec()
            },
            labels: self.labels[n..].to_vec(),
            rows: self.rows,
            cols: self.cols,
            values: self.values.as_ref().map(|v| v[n * d..].to_vec()),
        };
        (self.take(n), rest)
    }

    /// A copy with every pixel replaced by one Bernoulli draw with `p = value / 255`
    /// (stored as 0 or 255). A real-valued data set is returned unchanged (the trainer
    /// refuses to binarize one).
    pub fn binarized(&self, rng: &mut impl Rng) -> Self {
        if self.values.is_some() {
            return self.clone();
        }
        let images = self
            .images
            .iter()
            .map(|&v| {
                if rng.gen::<f64>() * 255.0 < v as f64 {
                    255
                } else {
                    0
                }
            })
            .collect();
        Self {
            images,
            ..self.clone()
        }
    }

    /// The images `indices` as a `(indices.len(), X)` tensor of intensities in `[0, 1]`;
    /// with `dynamic` set, each pixel of grey level `v` is instead a fresh
    /// `Bernoulli(v / 255)` draw (see [`Dataset::pixels`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `X` is a `Const` other than `dim()` (a run-time `usize`
    /// takes `dim()`); [`Error::InvalidSetting`] if an index is out of range.
    pub fn batch<X: Dim + Default, E: Real, D: Device<E>>(
        &self,
        device: &D,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<Events<X, E, D>> {
        let Some(x) = X::from_size(self.dim()) else {
            return Err(Error::shape(
                "Dataset::batch (pixels per image: the model's input, the data's)",
                &[X::default().size()],
                &[self.dim()],
            ));
        };
        let out = self.pixels::<E>(indices, dynamic)?;
        Ok(device.tensor_from_vec(out, (indices.len(), x)))
    }
}

impl Dataset {
    /// The pixels of images `indices`, image after image (`indices.len() · dim()` values),
    /// as intensities in `[0, 1]`; with `dynamic` set, each pixel of grey level `v` is
    /// instead a fresh `Bernoulli(v / 255)` draw (1 or 0): one 32-bit uniform draw per
    /// pixel from eight xoshiro128++ streams seeded by one `u64` of `dynamic`, so the
    /// same state of `dynamic` gives the same pixels.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if an index is out of range.
    pub fn pixels<E: Real>(
        &self,
        indices: &[usize],
        dynamic: Option<&mut dyn rand::RngCore>,
    ) -> Result<Vec<E>> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(
                "index",
                format!("image {i} of a data set of {}", self.len()),
            ));
        }
        if let Some(values) = &self.values {
            if dynamic.is_some() {
                return Err(Error::invalid(
                    "binarization",
                    "real-valued data cannot be binarized",
                ));
            }
            let dim = self.dim();
            let mut out = Vec::with_capacity(indices.len() * dim);
            for &i in indices {
                out.extend(values[i * dim..(i + 1) * dim].iter().map(|&v| cst::<E>(v)));
            }
            return Ok(out);
        }
        let scale = 1.0 / 255.0;
        let mut out = Vec::with_capacity(indices.len() * self.dim());
        match dynamic {
            None => {
                for &i in indices {
                    out.extend(self.image(i).iter().map(|&v| cst::<E>(v as f64 * scale)));
                }
            }
            Some(rng) => {
                // Eight xoshiro128++ streams in SIMD lanes, seeded from `rng`, and one
                // 32-bit draw `r` per pixel: the pixel fires when `r < ⌈v·2³²/255⌉`,
                // with probability v/255 up to 2⁻³² ([`fires`]): 20 µs per 64 images
                // on a Zen 2, where the scalar Xoshiro256++ draws and comparisons this
                // replaced took 167 µs (4.5% of a reference-VAE step), and drawing an
                // f64 from the ChaCha generator per pixel, before that, 10%.
                let mut lanes = Xoshiro128x8::from_rng(rng);
                let mut draws = vec![0u32; self.dim()];
                for &i in indices {
                    let image = self.image(i);
                    lanes.fill(&mut draws);
                    crate::kernels::simd::vectorized(
                        #[inline(always)]
                        || {
                            // The constants as values here: captured by reference
                            // they made a per-pixel select of addresses.
                            let (one, zero) = (E::one(), E::zero());
                            out.extend(image.iter().zip(&draws).map(|(&v, &r)| {
                                if fires(r, v) {
                                    one
                                } else {
                                    zero
                                }
                            }));
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

/// Whether a pixel of grey level `v` fires for the uniform 32-bit draw `r`:
/// `r < ⌈v·2³²/255⌉`, so with probability `⌈v·2³²/255⌉ / 2³² = v/255 + δ`,
/// `0 ≤ δ < 2⁻³²` (exactly 0 and 1 for `v = 0` and `255`). As `2³² = 255 · 16843009 + 1`,
/// `⌈v·2³²/255⌉ = v · 16843009 + 1` for `1 ≤ v ≤ 254` and `2³²` for 255, so the test
/// is `v ≠ 0 ∧ r ≤ v · 16843009`, in 32-bit lanes (tested against the 64-bit form).
#[inline(always)]
fn fires(r: u32, v: u8) -> bool {
    (v != 0) & (r <= (v as u32) * 16_843_009)
}

/// The example indices `0..n` shuffled by `rng` and cut into batches of `batch_size`
/// (the last one may be smaller), as PyTorch's `DataLoader(shuffle=True)` does.
///
/// # Errors
/// [`Error::InvalidSetting`] if `batch_size == 0`.
pub fn shuffled_batches(
    n: usize,
    batch_size: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(Error::invalid("batch_size", "must be at least 1"));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    Ok(idx.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::fires;

    /// The 32-bit test equals `255 · r < v · 2³²` (that is, `r < v·2³²/255`, exact in
    /// 64 bits) for every grey level at every draw around its threshold.
    #[test]
    fn fires_is_the_64_bit_threshold() {
        for v in 0..=255u8 {
            let t = ((v as u64) << 32).div_ceil(255);
            for r in [
                0,
                1,
                t.saturating_sub(2),
                t.saturating_sub(1),
                t,
                t + 1,
                u32::MAX as u64,
            ] {
                let Ok(r) = u32::try_from(r) else { continue };
                assert_eq!(
                    fires(r, v),
                    255 * (r as u64) < (v as u64) << 32,
                    "v = {v}, r = {r}"
                );
            }
        }
    }
}
