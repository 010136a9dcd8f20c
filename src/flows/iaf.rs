//! The inverse autoregressive flow (IAF) on a MADE network.

use dfdx::prelude::*;

use super::Bijector;
use crate::error::{Error, Result};
use crate::kernels::ops::{check_width, cst, Events, PerExample, Real, Scored};
use crate::nn::Linear;

/// The constant added to the gate's pre-activation `s`, so that `σ(s) ≈ 0.88` at
/// initialization and each step starts close to the identity (Kingma et al. 2016,
/// Appendix A: "initialize … such that σ_t is sufficiently positive, close to +1 or +2").
pub const IAF_GATE_BIAS: f64 = 2.0;

/// A MADE network (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution
/// Estimation", §4) with one masked hidden layer and a context input, producing the
/// shift `m` and gate pre-activation `s` of an [`IafStep`]:
///
/// `h = relu((W₁ ⊙ M₁) z + b₁ + V c + b_c)`, `m = (W_m ⊙ M₂) h + b_m`,
/// `s = (W_s ⊙ M₂) h + b_s`,
///
/// for `z` of shape `(batch, N)` and a context `c` of shape `(batch, C)` (Kingma et al.
/// 2016, §4: the encoder's `h` enters every step). With input degrees `1..N` in the
/// step's order and hidden degrees `d_k = (k mod (N−1)) + 1`, `M₁[k, i] = [d_k ≥ d_i]`
/// and `M₂[i, k] = [d_i > d_k]`, so `m_i` and `s_i` depend on `z_j` only for the `j`
/// before `i` in the order.
///
/// Weights are initialized as PyTorch's `nn.Linear` ([`Linear::new`]).
#[derive(Debug, Clone)]
pub struct Made<N: Dim, E: Dtype, D: Storage<E>> {
    /// `W₁, b₁`: `N → hidden` (masked by `M₁`).
    pub input: Linear<N, usize, E, D>,
    /// `V, b_c`: `C → hidden`, the context (not masked).
    pub context: Linear<usize, usize, E, D>,
    /// `W_m, b_m`: `hidden → N` (masked by `M₂`), the shift.
    pub shift: Linear<usize, N, E, D>,
    /// `W_s, b_s`: `hidden → N` (masked by `M₂`), the gate.
    pub gate: Linear<usize, N, E, D>,
}

impl<N: Dim, E: Real, D: Device<E>> Made<N, E, D> {
    /// A MADE over `dim` variables with `hidden` units and a context of `context`
    /// features.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for `hidden == 0`; the device's allocation errors.
    pub fn new(device: &D, dim: N, hidden: usize, context: usize) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::invalid("hidden", "a MADE needs at least 1 unit"));
        }
        Ok(Self {
            input: Linear::new(device, dim, hidden)?,
            context: Linear::new(device, context, hidden)?,
            shift: Linear::new(device, hidden, dim)?,
            gate: Linear::new(device, hidden, dim)?,
        })
    }

    /// The number of variables `N`.
    pub fn dim(&self) -> N {
        self.input.inputs()
    }

    /// The width `C` of the context.
    pub fn context_width(&self) -> usize {
        self.context.inputs()
    }

    /// `(M₁, M₂)` for the order `1..N` (`reversed`: `N..1`), shapes `(hidden, N)` and
    /// `(N, hidden)`, as 0/1 values.
    pub fn masks(&self, reversed: bool) -> MadeMasks<N, E, D> {
        let (n, h) = (self.dim(), self.input.outputs());
        let (nn, hh) = (n.size(), h);
        let degree_in = |i: usize| if reversed { nn - i } else { i + 1 };
        let degree_hidden = |k: usize| k % nn.saturating_sub(1).max(1) + 1;
        let one = |c: bool| if c { E::ONE } else { E::zero() };
        let m1: Vec<E> = (0..hh)
            .flat_map(|k| (0..nn).map(move |i| one(degree_hidden(k) >= degree_in(i))))
            .collect();
        let m2: Vec<E> = (0..nn)
            .flat_map(|i| (0..hh).map(move |k| one(degree_in(i) > degree_hidden(k))))
            .collect();
        let dev = self.input.weight.device();
        (
            dev.tensor_from_vec(m1, (h, n)),
            dev.tensor_from_vec(m2, (n, h)),
        )
    }
}

impl<N: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D> for Made<N, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Made<N, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("input", |s| &s.input, |s| &mut s.input),
                Self::module("context", |s| &s.context, |s| &mut s.context),
                Self::module("shift", |s| &s.shift, |s| &mut s.shift),
                Self::module("gate", |s| &s.gate, |s| &mut s.gate),
            ),
            |(input, context, shift, gate)| Made {
                input,
                context,
                shift,
                gate,
            },
        )
    }
}

/// One IAF step (Kingma et al. 2016, "Improved Variational Inference with Inverse
/// Autoregressive Flow", eq. 11–14, their numerically stable form), per row:
///
/// `[m, s] = MADE(z, c)`, `σ = sigmoid(s + 2)`, `f(z) = σ ⊙ z + (1 − σ) ⊙ m`,
/// `log |det ∂f/∂z| = Σ_i log σ_i`
///
/// (the Jacobian is triangular in the step's order; `+2` is [`IAF_GATE_BIAS`]). The
/// network's weights are shared by all rows; the context `c`, shape `(batch, C)`, is
/// per row (the encoder's features) and owns the tape. Alternate the order between
/// steps (`reversed`) so that every variable can depend on every other.
///
/// The inverse is computed by `N` passes of the network (each pass fixes one more
/// variable of the order; Kingma et al. 2016, §3), so [`super::TransformedDistribution`]
/// of IAF steps also has `log_prob` at any point.
pub struct IafStep<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The network (a clone shares the weights and their tensor ids).
    pub made: Made<N, E, D>,
    /// The context `c`, shape `(batch, C)`.
    pub context: Tensor<(usize, usize), E, D, T>,
    /// Whether the order is `N..1` instead of `1..N`.
    pub reversed: bool,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> IafStep<N, E, D, T> {
    /// A step of `made` with `context` in the given order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the context's width is not the network's.
    pub fn new(
        made: Made<N, E, D>,
        context: Tensor<(usize, usize), E, D, T>,
        reversed: bool,
    ) -> Result<Self> {
        check_width(
            "IafStep::new (context)",
            made.context_width(),
            context.shape().1,
        )?;
        Ok(Self {
            made,
            context,
            reversed,
        })
    }
}

/// The masks `(M₁, M₂)` of a [`Made`], shapes `(hidden, N)` and `(N, hidden)`.
pub type MadeMasks<N, E, D> = (Tensor<(usize, N), E, D>, Tensor<(N, usize), E, D>);

/// `(m, s)`: the shift and the gate's pre-activation, both `(batch, N)`.
type ShiftGate<N, E, D, T> = (Events<N, E, D, T>, Events<N, E, D, T>);

/// `V c + b_c`, shape `(batch, hidden)`, carrying the context's tape.
fn context_term<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    made: &Made<N, E, D>,
    context: Tensor<(usize, usize), E, D, T>,
) -> Tensor<(usize, usize), E, D, T> {
    let ctx = &made.context;
    let (b, h) = (context.shape().0, ctx.outputs());
    context.matmul(ctx.weight.retaped::<T>().permute())
        + ctx
            .bias
            .retaped::<T>()
            .broadcast_like::<_, Axis<0>>(&(b, h))
}

/// `(m, s + IAF_GATE_BIAS)` for `z` and the context term; `s` carries the tape of
/// `z` and the context, `m` only its own.
fn network<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    made: &Made<N, E, D>,
    masks: &MadeMasks<N, E, D>,
    z: Events<N, E, D, T>,
    ctx: Tensor<(usize, usize), E, D, T>,
) -> ShiftGate<N, E, D, T> {
    // The masked weights are made on their own tapes, and each product is the fused
    // `linear` on them: its backward pass finds their gradients by their ids, and the
    // masks' multiplications (merged into the result's tape) carry them on to `W`. As
    // dfdx's own operations, an allocation failure panics.
    fn fail<X, Err: std::fmt::Debug>(e: Err) -> X {
        panic!("the IAF's MADE: allocation failed: {e:?}")
    }
    let (w1, t1) = (made.input.weight.retaped::<T>() * masks.0.clone()).split_tape();
    let (wm, tm) = (made.shift.weight.retaped::<T>() * masks.1.clone()).split_tape();
    let (ws, ts) = (made.gate.weight.retaped::<T>() * masks.1.clone()).split_tape();
    let (h1, tape) = crate::kernels::linear(z, &w1, &made.input.bias)
        .unwrap_or_else(fail)
        .split_tape();
    let hidden = (h1.put_tape(tape.merge(t1)) + ctx).relu();
    let (m, tape) = crate::kernels::linear(hidden.with_empty_tape(), &wm, &made.shift.bias)
        .unwrap_or_else(fail)
        .split_tape();
    let m = m.put_tape(tape.merge(tm));
    let (s, tape) = crate::kernels::linear(hidden, &ws, &made.gate.bias)
        .unwrap_or_else(fail)
        .split_tape();
    let s = s.put_tape(tape.merge(ts)) + cst::<E>(IAF_GATE_BIAS);
    (m, s)
}

/// `Σ_i log sigmoid(s_i) = −Σ_i softplus(−s_i)`, shape `(batch,)`.
fn sum_log_sigmoid<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    s: Events<N, E, D, T>,
) -> PerExample<E, D, T> {
    let zeros = s.device().zeros_like(s.shape()).put_tape(T::default());
    -(-s).bce_with_logits(zeros).sum::<(usize,), Axis<1>>()
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Bijector<N, E, D> for IafStep<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.context.shape().0
    }

    fn forward(self, z: Events<N, E, D, T>) -> Scored<N, E, D, T> {
        let masks = self.made.masks(self.reversed);
        let ctx = context_term(&self.made, self.context);
        let (m, s) = network(&self.made, &masks, z.with_empty_tape(), ctx);
        let sigma = s.with_empty_tape().sigmoid();
        let y = sigma.with_empty_tape() * z + (-sigma + cst::<E>(1.0)) * m;
        (y, sum_log_sigmoid(s))
    }

    fn inverse(self, y: Events<N, E, D, T>) -> Result<Scored<N, E, D, T>> {
        check_width("IafStep::inverse", self.made.dim(), y.shape().1)?;
        crate::distributions::check_batch("IafStep::inverse", self.batch_size(), y.shape().0)?;
        let masks = self.made.masks(self.reversed);
        let (ctx, ctx_tape) = context_term(&self.made, self.context).split_tape();
        let (y, y_tape) = y.split_tape();
        fn fresh<S: Shape, E: Dtype, D: Storage<E>, T: Default>(
            t: &Tensor<S, E, D>,
        ) -> Tensor<S, E, D, T> {
            t.clone().put_tape(T::default())
        }
        // Pass t fixes the t-th variable of the order: after N passes z is exact, and
        // the last pass's gate was computed at the exact z. Each pass's network tape
        // travels with z; the last one's with the log-determinant.
        let passes = self.made.dim().size();
        let mut z = fresh(&y);
        let mut log_det = z
            .device()
            .zeros_like(&(y.shape().0,))
            .put_tape(T::default());
        for pass in 0..passes {
            let (m, s) = network(&self.made, &masks, z, fresh(&ctx));
            let sigma = s.with_empty_tape().sigmoid();
            let next = (fresh(&y) - (-sigma.with_empty_tape() + cst::<E>(1.0)) * m) / sigma;
            if pass + 1 == passes {
                z = next;
                log_det = sum_log_sigmoid(s);
            } else {
                let (next, t) = next.split_tape();
                let (_, ts) = s.split_tape();
                z = next.put_tape(t.merge(ts));
            }
        }
        let (log_det, t) = log_det.split_tape();
        Ok((z, log_det.put_tape(t.merge(ctx_tape).merge(y_tape))))
    }

    fn fork(&self) -> Self {
        Self {
            made: self.made.clone(),
            context: self.context.with_empty_tape(),
            reversed: self.reversed,
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            made: self.made,
            context: crate::kernels::ops::repeat_rows(self.context, n),
            reversed: self.reversed,
        }
    }

    fn into_tape(self) -> T {
        self.context.split_tape().1
    }
}
