//! [`BijectorFamily`] for this crate's bijectors: planar steps and IAF steps.

use dfdx::prelude::*;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::{block, require_finite, BijectorFamily, Dev, Theta};
use crate::error::{Error, Result};
use crate::flows::{IafStep, Made, Planar};

/// [`Planar`] with θ = `[u (N); w (N); b]`, `u, w ∈ [−2, 2]^N` with `‖w‖ ≥ 0.1`,
/// `b ∈ [−1, 1]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanarFamily;

impl<const N: usize> BijectorFamily<N> for PlanarFamily {
    type Bij<T: Tape<f64, Dev>> = Planar<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Planar<Const<{N}>>")
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (
            proptest::collection::vec(-2.0..2.0f64, N),
            proptest::collection::vec(-2.0..2.0f64, N),
            -1.0..1.0f64,
        )
            .prop_filter("‖w‖ ≥ 0.1", |(_, w, _)| {
                w.iter().map(|v| v * v).sum::<f64>() >= 0.01
            })
            .prop_map(|(u, w, b)| [u, w, vec![b]].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Bij<T>> {
        require_finite(&theta)?;
        let (rows, width) = *theta.shape();
        if width != 2 * N + 1 {
            return Err(Error::shape("Planar θ", &[2 * N + 1], &[width]));
        }
        let b = theta
            .with_empty_tape()
            .slice((.., 2 * N..2 * N + 1))
            .reshape_like(&(rows,));
        let w = block::<N, T>(theta.with_empty_tape(), 1)?;
        let u = block::<N, T>(theta, 0)?;
        Planar::new(u, w, b)
    }
    fn has_inverse(&self) -> bool {
        false
    }
}

/// [`IafStep`] whose θ is the context row (`C = 3` values in `[−2, 2]`), on a MADE with
/// 8 hidden units and weights drawn once from `seed`, in the given order.
#[derive(Debug, Clone)]
pub struct IafFamily<const N: usize> {
    made: Made<Const<N>, f64, Dev>,
    reversed: bool,
}

impl<const N: usize> IafFamily<N> {
    /// The context width.
    pub const CONTEXT: usize = 3;

    /// A family on a MADE drawn from `seed`, order `N..1` if `reversed`.
    ///
    /// # Errors
    /// Allocation errors.
    pub fn new(seed: u64, reversed: bool) -> Result<Self> {
        let dev = Dev::seed_from_u64(seed);
        Ok(Self {
            made: Made::new(&dev, Const, 8, Self::CONTEXT)?,
            reversed,
        })
    }
}

impl<const N: usize> BijectorFamily<N> for IafFamily<N> {
    type Bij<T: Tape<f64, Dev>> = IafStep<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("IafStep<Const<{N}>> (reversed: {})", self.reversed)
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        proptest::collection::vec(-2.0..2.0f64, Self::CONTEXT).boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Bij<T>> {
        require_finite(&theta)?;
        IafStep::new(self.made.clone(), theta, self.reversed)
    }
    fn has_inverse(&self) -> bool {
        true
    }
}
