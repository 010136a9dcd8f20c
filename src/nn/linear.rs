//! A fully connected layer, `y = x Wᵀ + b`.

use dfdx::prelude::*;
use rand_distr::Uniform;

use super::options::options;
use crate::kernels::linear;
use crate::kernels::ops::Real;

/// A fully connected layer from `I` to `O` features: `y = x Wᵀ + b` for `x` of shape
/// `(batch, I)`, giving `(batch, O)`.
///
/// `I` and `O` are dfdx [`Dim`]s: `Const<N>` for sizes fixed at compile time (then
/// `BuildModule::build(&dev)` makes the layer, as for dfdx's modules) or `usize` for
/// sizes chosen at run time (then [`Linear::new`] makes it; `BuildModule` cannot know
/// the sizes and would make an empty layer). Both save, load and train alike.
///
/// Same parameters, names (`weight` of shape `(O, I)`, `bias` of shape `(O,)`),
/// initialization (`U(−1/√I, 1/√I)` for both, as PyTorch's `nn.Linear` and dfdx's
/// `Linear`) and checkpoint layout as `dfdx::nn::modules::Linear`, so checkpoints of
/// either load into the other. The difference is the forward and backward pass: one
/// fused operation ([`crate::kernels::linear`]) that runs single-threaded at the
/// machine's SIMD level on the CPU, so the trainer's replicas can each use a core.
#[derive(Debug, Clone)]
pub struct Linear<I: Dim, O: Dim, E: Dtype, D: Storage<E>> {
    /// `W`, shape `(O, I)`.
    pub weight: Tensor<(O, I), E, D>,
    /// `b`, shape `(O,)`.
    pub bias: Tensor<(O,), E, D>,
}

impl<I: Dim, O: Dim, E: Real, D: Device<E>> Linear<I, O, E, D> {
    /// A layer from `inputs` to `outputs` features on `device`, initialized as
    /// PyTorch's `nn.Linear`: weight and bias `U(−1/√I, 1/√I)`.
    ///
    /// # Errors
    /// The device's allocation errors, as [`crate::Error::Device`].
    pub fn new(device: &D, inputs: I, outputs: O) -> crate::Result<Self> {
        let weight = device
            .try_sample_like(&(outputs, inputs), init_bound::<E>(inputs.size()))
            .map_err(crate::Error::device)?;
        let bias = device
            .try_sample_like(&(outputs,), init_bound::<E>(inputs.size()))
            .map_err(crate::Error::device)?;
        Ok(Self { weight, bias })
    }

    /// The input width `I`.
    pub fn inputs(&self) -> I {
        self.weight.shape().1
    }

    /// The output width `O`.
    pub fn outputs(&self) -> O {
        self.weight.shape().0
    }
}

impl<I: Dim, O: Dim, E: Dtype, D: Storage<E>> NonMutableModule for Linear<I, O, E, D> {}

impl<I: Dim + Default, O: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
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
                    options(Default::default(), |t: &mut Tensor<(O, I), E, D>| {
                        t.try_fill_with_distr(init_bound::<E>(t.shape().1.size()))
                    }),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    // The bias alone does not know a run-time `I`: a reset draws it from
                    // U(−1, 1) then; `Linear::new` and builds with `Const` sizes draw it
                    // from the same law as the weight.
                    options(Default::default(), |t| {
                        t.try_fill_with_distr(init_bound::<E>(I::default().size()))
                    }),
                ),
            ),
            |(weight, bias)| Linear { weight, bias },
        )
    }
}

/// `U(−1/√I, 1/√I)`, PyTorch's `nn.Linear` initialization (Kaiming-uniform with `a = √5`).
pub(super) fn init_bound<E: Real>(inputs: usize) -> Uniform<E> {
    let b: E = E::ONE / E::from_usize(inputs.max(1)).unwrap_or(E::ONE).sqrt();
    Uniform::new(-b, b)
}

impl<B: Dim, I: Dim, O: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, I), E, D, T>>
    for Linear<I, O, E, D>
{
    type Output = Tensor<(B, O), E, D, T>;
    type Error = D::Err;

    /// # Panics
    /// If `x`'s width is not `I` (possible only for run-time sizes), as dfdx's products.
    fn try_forward(&self, x: Tensor<(B, I), E, D, T>) -> Result<Self::Output, D::Err> {
        linear(x, &self.weight, &self.bias)
    }
}
