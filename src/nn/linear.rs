//! A fully connected layer, `y = x Wᵀ + b`.

use dfdx::prelude::*;
use rand_distr::Uniform;

use crate::kernels::linear;
use crate::ops::Real;

/// A fully connected layer from `I` to `O` features: `y = x Wᵀ + b` for `x` of shape
/// `(batch, I)`, giving `(batch, O)`.
///
/// Same parameters, names (`weight` of shape `(O, I)`, `bias` of shape `(O,)`),
/// initialization (`U(−1/√I, 1/√I)` for both, as PyTorch's `nn.Linear` and dfdx's
/// `Linear`) and checkpoint layout as `dfdx::nn::modules::Linear`, so checkpoints of
/// either load into the other. The difference is the forward and backward pass: one
/// fused operation ([`crate::kernels::linear`]) that runs single-threaded at the
/// machine's SIMD level on the CPU, so the trainer's replicas can each use a core.
#[derive(Debug, Clone)]
pub struct Linear<const I: usize, const O: usize, E: Dtype, D: Storage<E>> {
    /// `W`, shape `(O, I)`.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    /// `b`, shape `(O,)`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for Linear<I, O, E, D>
{
}

impl<const I: usize, const O: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for Linear<I, O, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Linear<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(init_bound::<I, E>())),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(init_bound::<I, E>())),
                ),
            ),
            |(weight, bias)| Linear { weight, bias },
        )
    }
}

/// `U(−1/√I, 1/√I)`, PyTorch's `nn.Linear` initialization (Kaiming-uniform with `a = √5`).
fn init_bound<const I: usize, E: Real>() -> Uniform<E> {
    let b: E = E::ONE / E::from_usize(I.max(1)).unwrap_or(E::ONE).sqrt();
    Uniform::new(-b, b)
}

impl<B: Dim, const I: usize, const O: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<I>), E, D, T>> for Linear<I, O, E, D>
{
    type Output = Tensor<(B, Const<O>), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        linear(x, &self.weight, &self.bias)
    }
}
