//! A fully connected layer without bias, `y = x Wᵀ`.

use dfdx::prelude::*;

use super::linear::init_bound;
use super::options::options;
use crate::kernels::ops::Real;

/// A fully connected layer from `I` to `O` features without bias: `y = x Wᵀ` for `x`
/// of shape `(batch, I)`, giving `(batch, O)`.
///
/// Same parameter (`weight`, shape `(O, I)`), initialization (`U(−1/√I, 1/√I)`) and
/// checkpoint layout as `dfdx::nn::modules::UnbiasedLinear`. `I` and `O` are dfdx
/// [`Dim`]s, as for [`super::Linear`]: `Const` sizes build with `BuildModule`, `usize`
/// sizes with [`UnbiasedLinear::new`]. The product is dfdx's.
#[derive(Debug, Clone)]
pub struct UnbiasedLinear<I: Dim, O: Dim, E: Dtype, D: Storage<E>> {
    /// `W`, shape `(O, I)`.
    pub weight: Tensor<(O, I), E, D>,
}

impl<I: Dim, O: Dim, E: Real, D: Device<E>> UnbiasedLinear<I, O, E, D> {
    /// A layer from `inputs` to `outputs` features on `device`, weight `U(−1/√I, 1/√I)`.
    ///
    /// # Errors
    /// The device's allocation errors, as [`crate::Error::Device`].
    pub fn new(device: &D, inputs: I, outputs: O) -> crate::Result<Self> {
        let weight = device
            .try_sample_like(&(outputs, inputs), init_bound::<E>(inputs.size()))
            .map_err(crate::Error::device)?;
        Ok(Self { weight })
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

impl<I: Dim + Default, O: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for UnbiasedLinear<I, O, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = UnbiasedLinear<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "weight",
                |s| &s.weight,
                |s| &mut s.weight,
                options(Default::default(), |t: &mut Tensor<(O, I), E, D>| {
                    t.try_fill_with_distr(init_bound::<E>(t.shape().1.size()))
                }),
            ),
            |weight| UnbiasedLinear { weight },
        )
    }
}

impl<B: Dim, I: Dim, O: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, I), E, D, T>>
    for UnbiasedLinear<I, O, E, D>
{
    type Output = Tensor<(B, O), E, D, T>;
    type Error = D::Err;

    /// # Panics
    /// If `x`'s width is not `I` (possible only for run-time sizes), as dfdx's products.
    fn try_forward(&self, x: Tensor<(B, I), E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_matmul(self.weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)
    }
}
