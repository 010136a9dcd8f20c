//! Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1),
//! with its update run on several cores and vectorized on the CPU.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorRef,
};
use dfdx::optim::WeightDecay;
use dfdx::optim::{Adam as DfdxAdam, AdamConfig, Optimizer};
use dfdx::prelude::*;
use dfdx::shapes::Unit;

use crate::error::{Error, Result};
use crate::kernels::cpu::{cpu_grad, is_cpu, same_mut, slice};
use crate::kernels::ops::Real;
use crate::kernels::simd::vectorized;

/// Adam on the parameters of a model `M`, minimizing: for each trainable tensor `θ`
/// with gradient `g` at step `t = 1, 2, …` (Kingma & Ba 2015, Algorithm 1; the form of
/// PyTorch's `torch.optim.Adam` and dfdx's `Adam` with `weight_decay = None`):
///
/// ```text
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
/// ```
///
/// with `m` and `v` zero at the start. On the `Cpu` device (f32, f64) the update is one
/// vectorized pass per tensor, split across `threads` cores by element count, and
/// computes exactly dfdx's expression in the same order, so the parameters equal
/// dfdx's `Adam` bit for bit (tested). Elsewhere it is dfdx's `Adam`.
pub struct Adam<M, E: Dtype, D: Storage<E>> {
    cfg: AdamConfig,
    threads: usize,
    t: i32,
    /// The factor of the summed gradient in the current update (1 but in
    /// [`Adam::update_sum_scaled`]).
    grad_scale: f64,
    /// `(m, v)` per trainable tensor, in the model's visiting order (CPU path).
    moments: Vec<(Vec<E>, Vec<E>)>,
    /// dfdx's optimizer, for devices other than the `Cpu`.
    fallback: Option<DfdxAdam<M, E, D>>,
}

impl<M: TensorCollection<E, D>, E: Real, D: Device<E>> Adam<M, E, D> {
    /// Adam for `model` with `cfg`, its update split across `threads` cores (at least
    /// 1). Weight decay as dfdx and PyTorch define it: `L2(λ)` adds `λ θ` to the
    /// gradient before the moments (`torch.optim.Adam(weight_decay=λ)`);
    /// `Decoupled(λ)` is AdamW (Loshchilov & Hutter 2019, Algorithm 2): after the Adam
    /// step, `θ ← θ − lr · λ · θ_old` (`torch.optim.AdamW(weight_decay=λ)`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a learning rate, β, ε or weight decay out of range
    /// (`lr > 0`, `0 ≤ β < 1`, `ε > 0`, `λ ≥ 0`, all finite).
    pub fn new(model: &M, cfg: AdamConfig, threads: usize) -> Result<Self> {
        if let Some(WeightDecay::L2(wd) | WeightDecay::Decoupled(wd)) = cfg.weight_decay {
            if !(wd.is_finite() && wd >= 0.0) {
                return Err(Error::invalid(
                    "weight_decay",
                    format!("must be finite and non-negative, got {wd}"),
                ));
            }
        }
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(Error::invalid(
                "lr",
                format!("must be positive and finite, got {}", cfg.lr),
            ));
        }
        if !cfg.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return Err(Error::invalid(
                "betas",
                format!("must lie in [0, 1), got {:?}", cfg.betas),
            ));
        }
        if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
            return Err(Error::invalid(
                "eps",
                format!("must be positive and finite, got {}", cfg.eps),
            ));
        }
        let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();
        Ok(Self {
            cfg,
            threads: threads.max(1),
            t: 0,
            grad_scale: 1.0,
            moments: Vec::new(),
            fallback: (!on_cpu).then(|| DfdxAdam::new(model, cfg)),
        })
    }

    /// The number of updates made so far (`t` of the formula).
    pub fn step(&self) -> i32 {
        self.t
    }

    /// The learning rate of the next update.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    /// Sets the learning rate of the next updates (a schedule's value).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `lr` is positive and finite.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid(
                "lr",
                format!("must be positive and finite, got {lr}"),
            ));
        }
        self.cfg.lr = lr;
        if let Some(opt) = self.fallback.as_mut() {
            opt.cfg.lr = lr;
        }
        Ok(())
    }

    /// The global L2 norm `‖grads + Σ_r more[r]‖₂` over every trainable tensor of
    /// `model` (as `torch.nn.utils.clip_grad_norm_` computes it), in `f64`, leaving the
    /// buffers unchanged.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] off the `Cpu` device.
    pub fn gradient_norm(
        &self,
        model: &M,
        grads: &mut Gradients<E, D>,
        more: &mut [Gradients<E, D>],
    ) -> Result<f64> {
        if self.fallback.is_some() {
            return Err(Error::invalid(
                "grad_clip",
                "gradient clipping runs on the Cpu device only",
            ));
        }
        let mut sets: Vec<&mut Gradients<E, D>> =
            std::iter::once(grads).chain(more.iter_mut()).collect();
        let mut norm = Norm::<E, D> {
            grads: &mut sets,
            sum: 0.0,
        };
        M::iter_tensors(&mut RecursiveWalker {
            m: model,
            f: &mut norm,
        })?;
        Ok(norm.sum.sqrt())
    }

    /// [`Self::update_sum`] with the summed gradient multiplied by `scale` first (a
    /// clipping factor `min(1, max_norm / (‖g‖ + 10⁻⁶))`, say).
    ///
    /// # Errors
    /// As [`Self::update_sum`]; [`Error::InvalidSetting`] for a scale other than 1 off
    /// the CPU.
    pub fn update_sum_scaled(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<E, D>,
        more: &mut [Gradients<E, D>],
        scale: f64,
    ) -> Result<()> {
        if scale != 1.0 && self.fallback.is_some() {
            return Err(Error::invalid(
                "grad_clip",
                "gradient clipping runs on the Cpu device only",
            ));
        }
        self.grad_scale = scale;
        let done = self.update_sum(model, grads, more);
        self.grad_scale = 1.0;
        done
    }

    /// The moments `(m, v)` of each trainable tensor in the model's visiting order (as
    /// [`TensorCollection::iter_tensors`] visits those with `do_gradient_update`), empty
    /// before the first update. `None` off the `Cpu`, where dfdx's `Adam` keeps them
    /// private.
    pub fn moments(&self) -> Option<&[(Vec<E>, Vec<E>)]> {
        self.fallback.is_none().then_some(self.moments.as_slice())
    }

    /// Continues from a saved state: `step` updates made, with `moments` as
    /// [`Self::moments`] returned them, so the next update is exactly the one the saved
    /// optimizer would have made.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] off the `Cpu`, for a negative step, or moments without
    /// a step (or a step without moments).
    pub fn restore(&mut self, step: i32, moments: Vec<(Vec<E>, Vec<E>)>) -> Result<()> {
        if self.fallback.is_some() {
            return Err(Error::invalid(
                "resume",
                "the optimizer's state can only be restored on the Cpu device",
            ));
        }
        if step < 0 || (step == 0) != moments.is_empty() {
            return Err(Error::invalid(
                "optimizer state",
                format!("{step} steps with {} moment tensors", moments.len()),
            ));
        }
        if moments.iter().any(|(m, v)| m.len() != v.len()) {
            return Err(Error::invalid(
                "optimizer state",
                "first and second moments of different sizes",
            ));
        }
        self.t = step;
        self.moments = moments;
        Ok(())
    }

    /// One update of `model`'s trainable tensors from `grads` (as `backward` returns
    /// them: the gradient of the loss to minimize), leaving `grads` zeroed for the next
    /// step (the work of `model.zero_grads`, done in the same pass on the CPU).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if the model's tensors changed in number or size since
    /// the last update, or dfdx's optimizer fails (off the CPU: a trainable tensor
    /// without a gradient). On the CPU a tensor missing from `grads` counts as zero.
    pub fn update(&mut self, model: &mut M, grads: &mut Gradients<E, D>) -> Result<()> {
        self.update_sum(model, grads, &mut [])
    }

    /// [`Self::update`] with the gradient `grads + Σ_r more[r]`, summed in that order
    /// (e.g. the gradients of data-parallel replicas), in the same pass as the update;
    /// every buffer is left zeroed. Off the CPU `more` must be empty.
    ///
    /// # Errors
    /// As [`Self::update`]; [`Error::InvalidSetting`] for a non-empty `more` off the CPU.
    pub fn update_sum(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<E, D>,
        more: &mut [Gradients<E, D>],
    ) -> Result<()> {
        if let Some(opt) = self.fallback.as_mut() {
            if !more.is_empty() {
                return Err(Error::invalid(
                    "threads",
                    "summed gradients are only supported on the Cpu device",
                ));
            }
            opt.update(model, grads)
                .map_err(|e| Error::invalid("model", format!("optimizer update failed: {e:?}")))?;
            return model.try_zero_grads(grads).map_err(Error::device);
        }
        self.t = self
            .t
            .checked_add(1)
            .ok_or_else(|| Error::invalid("step", "too many Adam steps"))?;
        let mut sets: Vec<&mut Gradients<E, D>> =
            std::iter::once(grads).chain(more.iter_mut()).collect();
        let mut work = Collect::<E, D> {
            grads: &mut sets,
            moments: &mut self.moments,
            next: 0,
            items: Vec::new(),
        };
        M::iter_tensors(&mut RecursiveWalker {
            m: model,
            f: &mut work,
        })?;
        let items = work.items;
        let (cfg, t, threads, scale) = (self.cfg, self.t, self.threads, self.grad_scale);
        if is_cpu::<E, D, f32>() {
            run::<f32>(&items, &cfg, t, threads, scale);
        } else {
            run::<f64>(&items, &cfg, t, threads, scale);
        }
        Ok(())
    }
}

/// One tensor's update: raw views of its parameters, gradient and moments.
struct Item {
    p: usize,
    /// The gradient buffers to sum, in order; zeroed by the update.
    g: Vec<usize>,
    m: usize,
    v: usize,
    len: usize,
}

struct Collect<'a, 'g, E: Unit, D: Storage<E>> {
    grads: &'a mut [&'g mut Gradients<E, D>],
    moments: &'a mut Vec<(Vec<E>, Vec<E>)>,
    next: usize,
    items: Vec<Item>,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Collect<'_, '_, E, D> {
    type Viewer = ViewTensorMut;
    type Err = Error;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &mut Tensor<S, E, D>,
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Error> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let len = t.shape().num_elements();
        if slice::<_, _, _, _, E>(t).is_none() {
            return Err(Error::invalid(
                "model",
                "a trainable tensor is not contiguous",
            ));
        }
        if self.next == self.moments.len() {
            self.moments
                .push((vec![E::default(); len], vec![E::default(); len]));
        }
        let (m, v) = &mut self.moments[self.next];
        if m.len() != len {
            return Err(Error::invalid(
                "model",
                "trainable tensors changed size between updates",
            ));
        }
        self.next += 1;
        let mut g = Vec::with_capacity(self.grads.len());
        for set in self.grads.iter_mut() {
            let buf: &mut Vec<E> = cpu_grad(set, t)?;
            g.push(buf.as_mut_ptr() as usize);
        }
        // `&mut t[0…]` makes the buffer unique (no copy: nothing else holds it between
        // steps) and gives its base address.
        let p = if len == 0 { 0 } else { first_mut(t) as usize };
        self.items.push(Item {
            p,
            g,
            m: m.as_mut_ptr() as usize,
            v: v.as_mut_ptr() as usize,
            len,
        });
        Ok(None)
    }
}

/// The address of element 0 of a `Cpu` tensor, made unique first.
fn first_mut<S: Shape, E: Dtype, D: Device<E>>(t: &mut Tensor<S, E, D>) -> *mut E {
    let zero = S::Concrete::default();
    if is_cpu::<E, D, f32>() {
        let t: &mut Tensor<S, f32, Cpu> = same_mut(t);
        (&mut t[zero] as *mut f32).cast()
    } else {
        let t: &mut Tensor<S, f64, Cpu> = same_mut(t);
        (&mut t[zero] as *mut f64).cast()
    }
}

/// Elements per piece of the update that a thread takes at a time: 32k (1.3 MB of
/// the update's ten streams).
const UPDATE_CHUNK: usize = 1 << 15;

/// Runs the update of every item on `threads` threads (small updates stay on this
/// thread): the concatenation of all items is cut into pieces of [`UPDATE_CHUNK`]
/// elements that each thread takes in turn until none is left, so a thread slowed by
/// the machine does less of it. Each element's update is the same whoever runs it.
fn run<F: Unit + num_traits::Float>(
    items: &[Item],
    cfg: &AdamConfig,
    t: i32,
    threads: usize,
    scale: f64,
) {
    let total: usize = items.iter().map(|i| i.len).sum();
    let threads = if total < 1 << 16 { 1 } else { threads.max(1) };
    let pieces = total.div_ceil(UPDATE_CHUNK);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        vectorized(
            #[inline(always)]
            || loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= pieces {
                    break;
                }
                let range = (c * UPDATE_CHUNK, ((c + 1) * UPDATE_CHUNK).min(total));
                adam_range::<F>(items, cfg, t, range, scale);
            },
        )
    };
    if threads == 1 {
        work();
        return;
    }
    let work = &work;
    let jobs: Vec<Box<dyn FnOnce() + Send + '_>> = (1..threads)
        .map(|_| Box::new(work) as Box<dyn FnOnce() + Send + '_>)
        .collect();
    crate::train::workers::run_with(jobs, work);
}

/// The update of elements `lo..hi` of the concatenation of all items.
#[inline(always)]
fn adam_range<F: Unit + num_traits::Float>(
    items: &[Item],
    cfg: &AdamConfig,
    t: i32,
    (lo, hi): (usize, usize),
    scale: f64,
) {
    let mut offset = 0;
    for it in items {
        let (a, b) = (lo.max(offset), hi.min(offset + it.len));
        if a < b {
            let (s, n) = (a - offset, b - a);
            // SAFETY: the items are distinct tensors' buffers of `len` elements each,
            // alive for the update, and the ranges handed to threads are disjoint.
            unsafe {
                let view = |a: usize| std::slice::from_raw_parts_mut((a as *mut F).add(s), n);
                let (g0, rest) = match it.g.split_first() {
                    Some(x) => x,
                    None => unreachable!("at least one gradient set"),
                };
                let g0 = view(*g0);
                let (p, m, v) = (view(it.p), view(it.m), view(it.v));
                match (rest, scale == 1.0) {
                    // Two replicas: their sum in the update's own pass, one pass over
                    // the memory instead of two (10 streams per element instead of 12).
                    ([g1], true) => {
                        let g1 = view(*g1);
                        match cfg.weight_decay {
                            None => adam_slice_sum::<F, false>(cfg, t, p, g0, g1, m, v),
                            Some(_) => adam_slice_sum::<F, true>(cfg, t, p, g0, g1, m, v),
                        }
                    }
                    _ => {
                        for &g in rest {
                            for (a, b) in g0.iter_mut().zip(view(g)) {
                                *a = *a + *b;
                                *b = F::zero();
                            }
                        }
                        if scale != 1.0 {
                            let s = F::from(scale).unwrap_or_else(F::one);
                            for g in g0.iter_mut() {
                                *g = *g * s;
                            }
                        }
                        match cfg.weight_decay {
                            None => adam_slice::<F, false>(cfg, t, p, g0, m, v),
                            Some(_) => adam_slice::<F, true>(cfg, t, p, g0, m, v),
                        }
                    }
                }
            }
        }
        offset += it.len;
    }
}

/// The constants of one Adam update (step `t`), in `F`.
struct AdamConsts<F> {
    b1: F,
    b2: F,
    one_b1: F,
    one_b2: F,
    c1: F,
    c2: F,
    eps: F,
    lr: F,
    l2: F,
    decoupled: F,
}

impl<F: num_traits::Float> AdamConsts<F> {
    #[inline(always)]
    fn new(cfg: &AdamConfig, t: i32) -> Self {
        let c = |x: f64| F::from(x).unwrap_or_else(F::nan);
        let (b1, b2) = (c(cfg.betas[0]), c(cfg.betas[1]));
        let (l2, decoupled) = match cfg.weight_decay {
            Some(WeightDecay::L2(x)) => (c(x), F::zero()),
            Some(WeightDecay::Decoupled(x)) => (F::zero(), c(x * cfg.lr)),
            None => (F::zero(), F::zero()),
        };
        Self {
            b1,
            b2,
            one_b1: F::one() - b1,
            one_b2: F::one() - b2,
            c1: (F::one() - b1.powi(t)).recip(),
            c2: (F::one() - b2.powi(t)).recip(),
            eps: c(cfg.eps),
            lr: c(cfg.lr),
            l2,
            decoupled,
        }
    }

    /// dfdx's Adam expression (`dfdx::tensor_ops::adam::cpu_kernel`) for one element
    /// with gradient `g`, in the same order of operations. With `DECAY`, dfdx's weight
    /// decay too: `L2(λ)` adds `λ θ` to the gradient first; `Decoupled(λ)` (AdamW) adds
    /// `lr · λ · θ` to the step (without it the decay terms are compiled out). The new
    /// moments are stored with subnormals flushed to zero ([`flush`]), where dfdx keeps
    /// them: the same values until a moment falls below `f32::MIN_POSITIVE`.
    #[inline(always)]
    fn step<const DECAY: bool>(&self, p: &mut F, mut g: F, m: &mut F, v: &mut F) {
        if DECAY {
            g = g + self.l2 * *p;
        }
        *m = flush(*m * self.b1 + g * self.one_b1);
        *v = flush(*v * self.b2 + g.powi(2) * self.one_b2);
        let m_hat = *m * self.c1;
        let v_hat = *v * self.c2;
        let mut step = self.lr * m_hat / (v_hat.sqrt() + self.eps);
        if DECAY {
            step = step + self.decoupled * *p;
        }
        *p = *p - step;
    }
}

/// `x`, or zero if it is subnormal (`|x|` below the smallest normal number), as the
/// moments are stored: arithmetic on a subnormal operand costs a microcode assist of
/// ~100 cycles on x86, and the first moment of a weight whose gradient has become
/// exactly zero (a dead unit's) decays by `β₁` per step through the whole subnormal
/// range (~150 steps) on its way to zero. Without this, the update of the reference
/// VAE took 0.36 ms per step in the first epoch and 1.3 ms in the third. The step
/// such a moment would give is below `lr · 10⁻³⁸ / ε` and is lost to rounding anyway.
#[inline(always)]
fn flush<F: num_traits::Float>(x: F) -> F {
    if x.abs() < F::min_positive_value() {
        F::zero()
    } else {
        x
    }
}

/// [`AdamConsts::step`] over slices the compiler vectorizes; zeroes `g` as it goes.
#[inline(always)]
fn adam_slice<F: num_traits::Float, const DECAY: bool>(
    cfg: &AdamConfig,
    t: i32,
    p: &mut [F],
    g: &mut [F],
    m: &mut [F],
    v: &mut [F],
) {
    let k = AdamConsts::<F>::new(cfg, t);
    for (((p, g), m), v) in p
        .iter_mut()
        .zip(g.iter_mut())
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        k.step::<DECAY>(p, std::mem::replace(g, F::zero()), m, v);
    }
}

/// [`adam_slice`] with the gradient `g0 + g1` (two replicas', summed in that order as
/// the separate pass would), zeroing both as it goes.
#[inline(always)]
fn adam_slice_sum<F: num_traits::Float, const DECAY: bool>(
    cfg: &AdamConfig,
    t: i32,
    p: &mut [F],
    g0: &mut [F],
    g1: &mut [F],
    m: &mut [F],
    v: &mut [F],
) {
    let k = AdamConsts::<F>::new(cfg, t);
    for ((((p, g0), g1), m), v) in p
        .iter_mut()
        .zip(g0.iter_mut())
        .zip(g1.iter_mut())
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let g = std::mem::replace(g0, F::zero()) + std::mem::replace(g1, F::zero());
        k.step::<DECAY>(p, g, m, v);
    }
}

/// Σ over trainable tensors and elements of `(Σ_sets g)²`.
struct Norm<'a, 'g, E: Unit, D: Storage<E>> {
    grads: &'a mut [&'g mut Gradients<E, D>],
    sum: f64,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Norm<'_, '_, E, D> {
    type Viewer = ViewTensorRef;
    type Err = Error;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &Tensor<S, E, D>,
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Error> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        // Each set's buffer of this tensor, read element by element: no temporary
        // of the tensor's size on every step.
        let bufs = self
            .grads
            .iter_mut()
            .map(|set| cpu_grad(set, t).map(|b| &b[..]))
            .collect::<Result<Vec<&[E]>>>()?;
        let len = t.shape().num_elements();
        let mut tensor = 0.0;
        for i in 0..len {
            let g: f64 = bufs.iter().map(|b| b[i].to_f64().unwrap_or(f64::NAN)).sum();
            tensor += g * g;
        }
        self.sum += tensor;
        Ok(None)
    }
}
