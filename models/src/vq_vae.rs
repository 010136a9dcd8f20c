//! The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete
//! Representation Learning"): a deterministic encoder, a codebook quantizer with the
//! straight-through gradient, and a decoder.

use dfdx::prelude::*;
use latent::data::Dataset;
use latent::distributions::Categorical;
use latent::eval::EvalReport;
use latent::heads::{BernoulliHead, LikelihoodHead};
use latent::ops::{cst, to_f64_vec};
use latent::train::{Batch, Progress, Task};
use latent::{Distribution, Error, Events, PerExample, Real, Result};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::quantizer::{CodeUsage, CodebookEma, DeadCodeRestart, VectorQuantizer};

/// A VQ-VAE over observations `x ∈ R^X` with a grid of `G` code vectors per example
/// (`G` = 7·7 for the convolutional networks, fixed by the encoder), each one of `K`
/// codebook vectors in `R^DM`:
///
/// - encoder `Enc: (batch, X) → (batch·G, DM)`, the vectors `z_e` (row `b·G + g`);
/// - quantizer: `z_q = e_{k*}`, `k* = argmin_k ‖z_e − e_k‖²`, passed on with the
///   straight-through estimator `z_e + sg[z_q − z_e]` (eq. 3);
/// - decoder `Dec: (batch·G, DM) → (batch, X)`, the likelihood's parameters (Bernoulli
///   logits by default), `p(x | z_q)`.
///
/// Loss per example, in nats (eq. 3), summed over the `G` positions:
/// `L = −log p(x | z_q) + Σ_g ‖sg[z_e,g] − e_{k*_g}‖² + β Σ_g ‖z_e,g − sg[e_{k*_g}]‖²`,
/// `β = commitment_cost` (0.25 in the paper). With [`CodebookUpdate::Ema`] the middle
/// term is dropped and the codebook follows the EMA update instead (Appendix A.1).
///
/// As the paper notes (§3.1), with a uniform prior over codes the posterior is one-hot
/// and `KL = G · ln K` is constant, so `log p(x) ≥ log p(x | z_q) − G ln K` is the
/// reported ELBO.
#[derive(Debug, Clone)]
pub struct VqVae<Enc, Dec, K: Dim, DM: Dim, E: Dtype, D: Storage<E>, Lik = BernoulliHead> {
    /// `x ↦ z_e`.
    pub encoder: Enc,
    /// The codebook.
    pub quantizer: VectorQuantizer<K, DM, E, D>,
    /// `z_q ↦` the likelihood's parameters.
    pub decoder: Dec,
    /// Turns the decoder output into `p(x | z_q)`.
    pub likelihood: Lik,
}

/// The terms of the VQ-VAE loss for a batch, per example, in nats (see [`VqVae`]).
pub struct VqTerms<E: Dtype, D: Device<E>, T> {
    /// `log p(x | z_q)`, shape `(batch,)`, carrying the tape.
    pub reconstruction: PerExample<E, D, T>,
    /// `Σ_g ‖sg[z_e,g] − e_{k*_g}‖²`, shape `(batch,)`; gradient to the codebook only.
    pub codebook: PerExample<E, D, T>,
    /// `Σ_g ‖z_e,g − sg[e_{k*_g}]‖²`, shape `(batch,)`; gradient to the encoder only.
    pub commitment: PerExample<E, D, T>,
    /// The code of each position, `batch · G` indices (row-major per example).
    pub indices: Vec<usize>,
    /// `z_e` on the host, `batch · G · DM` values.
    pub z_e: Vec<f64>,
}

impl<Enc, Dec, K: Dim, DM: Dim, E: Real, D: Device<E>> VqVae<Enc, Dec, K, DM, E, D> {
    /// A VQ-VAE with a Bernoulli likelihood and a fresh codebook on `device`.
    pub fn new(encoder: Enc, decoder: Dec, (codes, dim): (K, DM), device: &D) -> Result<Self> {
        Ok(Self {
            encoder,
            quantizer: VectorQuantizer::new(device, codes, dim)?,
            decoder,
            likelihood: BernoulliHead,
        })
    }
}

impl<Enc, Dec, K: Dim, DM: Dim, E: Real, D: Device<E>, Lik> VqVae<Enc, Dec, K, DM, E, D, Lik> {
    /// The loss terms for a batch `x` of shape `(batch, X)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the encoder's rows are not a multiple of the batch;
    /// [`Error::NonFinite`] for a non-finite `z_e`; the networks' errors.
    pub fn terms<X: Dim, T>(&self, x: Events<X, E, D, T>) -> Result<VqTerms<E, D, T>>
    where
        T: Tape<E, D>,
        Enc: Module<Events<X, E, D, T>, Output = Events<DM, E, D, T>>,
        Dec: Module<Events<DM, E, D, T>, Output = Events<X, E, D, T>>,
        Lik: LikelihoodHead<X, E, D, T>,
    {
        let batch = x.shape().0;
        let target = x.retaped::<NoneTape>().retaped::<T>();
        let z_e = self.encoder.try_forward(x).map_err(Error::device)?;
        let rows = z_e.shape().0;
        if batch == 0 || rows % batch != 0 {
            return Err(Error::not_a_multiple(
                "VqVae encoder (rows per batch)",
                batch,
                rows,
            ));
        }
        let g = rows / batch;
        let q = self.quantizer.quantize(z_e)?;
        let per_example =
            |t: PerExample<E, D, T>| t.reshape_like(&(batch, g)).sum::<(usize,), Axis<1>>();
        let logits = self.decoder.try_forward(q.z_q).map_err(Error::device)?;
        let reconstruction = self.likelihood.distribution(logits)?.log_prob(target)?;
        Ok(VqTerms {
            reconstruction,
            codebook: per_example(q.codebook_loss),
            commitment: per_example(q.commitment_loss),
            indices: q.indices,
            z_e: q.z_e,
        })
    }

    /// The likelihood `p(x | z_q)` decoded from codes: `indices` holds `G` codes per
    /// example, row-major.
    ///
    /// # Errors
    /// The networks' errors.
    pub fn decode<X: Dim>(&self, indices: &[usize]) -> Result<Lik::Dist>
    where
        Dec: Module<Events<DM, E, D>, Output = Events<X, E, D>>,
        Lik: LikelihoodHead<X, E, D, NoneTape>,
    {
        let z_q = self.quantizer.lookup(indices);
        let out = self.decoder.try_forward(z_q).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }

    /// The codes of a batch `x`, `G` per example, row-major.
    ///
    /// # Errors
    /// The encoder's errors.
    pub fn encode<X: Dim>(&self, x: Events<X, E, D>) -> Result<Vec<usize>>
    where
        Enc: Module<Events<X, E, D>, Output = Events<DM, E, D>>,
    {
        let z_e = self.encoder.try_forward(x).map_err(Error::device)?;
        self.quantizer.nearest(&z_e)
    }
}

impl<Enc, Dec, K, DM, E, D, Lik> TensorCollection<E, D> for VqVae<Enc, Dec, K, DM, E, D, Lik>
where
    K: Dim + Default,
    DM: Dim + Default,
    E: Real,
    D: Device<E>,
    Enc: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        VqVae<Enc::To<E2, D2>, Dec::To<E2, D2>, K, DM, E2, D2, Lik::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("encoder", |s| &s.encoder, |s| &mut s.encoder),
                Self::module("quantizer", |s| &s.quantizer, |s| &mut s.quantizer),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::module("likelihood", |s| &s.likelihood, |s| &mut s.likelihood),
            ),
            |(encoder, quantizer, decoder, likelihood)| VqVae {
                encoder,
                quantizer,
                decoder,
                likelihood,
            },
        )
    }
}

/// How the codebook learns.
#[derive(Debug, Clone, PartialEq)]
pub enum CodebookUpdate {
    /// By gradient of the codebook term `‖sg[z_e] − e‖²` (eq. 3).
    Loss,
    /// By the exponential moving average of the vectors assigned to each code
    /// (Appendix A.1); the codebook term is left out of the loss.
    Ema(CodebookEma),
}

/// Trains a [`VqVae`] with [`latent::train::fit_task`]: the loss of [`VqVae`] with
/// `commitment_cost = β`, the codebook learned by loss or EMA, optional dead-code
/// restarts, and on the test set the reconstruction term, the constant `KL = G ln K`
/// and the bound `log p(x|z_q) − G ln K`.
#[derive(Debug, Clone)]
pub struct VqVaeTask<X: Dim> {
    /// `β` of the commitment term (0.25 in the paper).
    pub commitment_cost: f64,
    /// How the codebook learns.
    pub codebook: CodebookUpdate,
    /// Dead-code restarts, if any.
    pub restart: Option<DeadCodeRestart>,
    /// The codes chosen in the last training batch, and `z_e`.
    last: Option<(Vec<usize>, Vec<f64>)>,
    rng: Xoshiro256PlusPlus,
    /// Codes restarted so far.
    pub restarts: usize,
    /// The codebook size `K`, once the task has seen the model (for [`Task::describe`]).
    codes: Option<usize>,
    /// The observations' width `X`.
    observations: std::marker::PhantomData<fn() -> X>,
}

impl<X: Dim> VqVaeTask<X> {
    /// A task with the given commitment cost and codebook update; `seed` drives the
    /// choice of restart vectors.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `commitment_cost` is negative or not finite.
    pub fn new(commitment_cost: f64, codebook: CodebookUpdate, seed: u64) -> Result<Self> {
        if !(commitment_cost.is_finite() && commitment_cost >= 0.0) {
            return Err(Error::invalid(
                "commitment_cost",
                format!("must be finite and non-negative, got {commitment_cost}"),
            ));
        }
        Ok(Self {
            commitment_cost,
            codebook,
            restart: None,
            last: None,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            restarts: 0,
            codes: None,
            observations: std::marker::PhantomData,
        })
    }

    /// Turns on dead-code restarts.
    pub fn with_restarts(self, restart: DeadCodeRestart) -> Self {
        Self {
            restart: Some(restart),
            ..self
        }
    }
}

impl<X, Enc, Dec, K, DM, E, D, Lik> Task<E, D, VqVae<Enc, Dec, K, DM, E, D, Lik>> for VqVaeTask<X>
where
    X: Dim + Default,
    K: Dim,
    DM: Dim,
    E: Real,
    D: Device<E>,
    Enc: Module<Events<X, E, D, OwnedTape<E, D>>, Output = Events<DM, E, D, OwnedTape<E, D>>>
        + Module<Events<X, E, D>, Output = Events<DM, E, D>>,
    Dec: Module<Events<DM, E, D, OwnedTape<E, D>>, Output = Events<X, E, D, OwnedTape<E, D>>>
        + Module<Events<DM, E, D>, Output = Events<X, E, D>>,
    Lik: LikelihoodHead<X, E, D, OwnedTape<E, D>> + LikelihoodHead<X, E, D, NoneTape>,
{
    fn loss(
        &mut self,
        model: &VqVae<Enc, Dec, K, DM, E, D, Lik>,
        batch: Batch<'_, D>,
        grads: Gradients<E, D>,
        _progress: Progress,
    ) -> Result<Tensor<(), E, D, OwnedTape<E, D>>> {
        self.codes = Some(model.quantizer.codebook.shape().0.size());
        let x = batch.images::<X, E>()?;
        let t = model.terms(latent::ops::observed(x, grads))?;
        let mut loss = t.commitment * cst::<E>(self.commitment_cost) - t.reconstruction;
        if matches!(self.codebook, CodebookUpdate::Loss) {
            loss = loss + t.codebook;
        } else {
            // Keep the codebook term's (empty) tape out of the graph entirely.
            drop(t.codebook);
        }
        self.last = Some((t.indices, t.z_e));
        Ok(loss.mean::<(), Axis<0>>())
    }

    /// Appends the replica's codes and encoder outputs to this task's, so the EMA
    /// update and the dead-code restarts see the whole batch, in replica order (the
    /// order of the batch).
    fn absorb(&mut self, replica: Self) {
        if let Some((indices, z_e)) = replica.last {
            match &mut self.last {
                Some((i, z)) => {
                    i.extend(indices);
                    z.extend(z_e);
                }
                None => self.last = Some((indices, z_e)),
            }
        }
    }

    /// Gathers every rank's codes and encoder outputs of the step, in rank order, so
    /// the EMA update and the dead-code restarts (whose generator is the same on every
    /// rank) see the global batch and stay identical on all ranks.
    fn exchange(&mut self, world: &dyn latent::distributed::Communicator) -> Result<()> {
        let (indices, z_e) = self.last.take().unwrap_or_default();
        let codes: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
        let all_codes = world.all_gather_u64(&codes)?;
        let all_z = world.all_gather_f64(&z_e)?;
        let indices: Vec<usize> = all_codes
            .into_iter()
            .flatten()
            .map(|i| i as usize)
            .collect();
        let z_e: Vec<f64> = all_z.into_iter().flatten().collect();
        if !indices.is_empty() {
            self.last = Some((indices, z_e));
        }
        Ok(())
    }

    fn after_update(
        &mut self,
        model: &mut VqVae<Enc, Dec, K, DM, E, D, Lik>,
        _progress: Progress,
    ) -> Result<()> {
        let Some((indices, z_e)) = self.last.take() else {
            return Ok(());
        };
        let dm = model.quantizer.codebook.shape().1.size();
        let mut book = to_f64_vec(&model.quantizer.codebook);
        let mut changed = false;
        if let CodebookUpdate::Ema(ema) = &mut self.codebook {
            book = ema.update(&book, &z_e, &indices)?;
            changed = true;
        }
        if let Some(restart) = &mut self.restart {
            for (code, v) in restart.step(&z_e, &indices, &mut self.rng) {
                book[code * dm..(code + 1) * dm].copy_from_slice(&v);
                if let CodebookUpdate::Ema(ema) = &mut self.codebook {
                    ema.reset(code, &v);
                }
                self.restarts += 1;
                changed = true;
            }
        }
        if changed {
            let values: Vec<E> = book.iter().map(|&v| cst::<E>(v)).collect();
            model.quantizer.codebook.copy_from(&values);
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        model: &VqVae<Enc, Dec, K, DM, E, D, Lik>,
        test: &Dataset,
        device: &D,
    ) -> Result<EvalReport> {
        let (mut rec, mut codes) = (0.0, 0usize);
        for chunk in latent::eval::batches(test.len(), 1000)? {
            let x = test.batch::<X, E, D>(device, &chunk, None)?;
            let t = model.terms(x)?;
            rec += to_f64_vec(&t.reconstruction).iter().sum::<f64>();
            codes += t.indices.len();
        }
        let n = test.len().max(1) as f64;
        let k = model.quantizer.codebook.shape().0.size();
        let kl = codes as f64 / n * (k as f64).ln();
        EvalReport {
            elbo: rec / n - kl,
            reconstruction: rec / n,
            kl,
            n: test.len(),
        }
        .checked("test VQ-VAE bound")
    }

    fn describe(&self) -> String {
        let update = match self.codebook {
            CodebookUpdate::Loss => "codebook loss".to_string(),
            CodebookUpdate::Ema(ref e) => format!("EMA γ={}", e.decay),
        };
        let k = self.codes.map_or_else(String::new, |k| format!("K={k}, "));
        format!("vq-vae({k}β={}, {update})", self.commitment_cost)
    }

    /// The EMA statistics (`counts`, `sums`), the restarts' usage averages, the
    /// restart generator and the number of restarts so far.
    fn state(&self) -> Result<serde_json::Value> {
        let ema = match &self.codebook {
            CodebookUpdate::Ema(e) => Some((&e.counts, &e.sums)),
            CodebookUpdate::Loss => None,
        };
        let usage = self.restart.as_ref().map(|r| &r.usage);
        serde_json::to_value((ema, usage, &self.rng, self.restarts))
            .map_err(|e| Error::invalid("task state", e.to_string()))
    }

    /// # Errors
    /// [`Error::InvalidSetting`] for a state of another configuration (EMA or not,
    /// restarts or not, another codebook size).
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        type State = (
            Option<(Vec<f64>, Vec<f64>)>,
            Option<Vec<f64>>,
            Xoshiro256PlusPlus,
            usize,
        );
        let bad = |why: String| Error::invalid("task state", why);
        let (ema, usage, rng, restarts): State =
            serde_json::from_value(state.clone()).map_err(|e| bad(e.to_string()))?;
        match (&mut self.codebook, ema) {
            (CodebookUpdate::Ema(e), Some((counts, sums)))
                if counts.len() == e.counts.len() && sums.len() == e.sums.len() =>
            {
                e.counts = counts;
                e.sums = sums;
            }
            (CodebookUpdate::Loss, None) => {}
            _ => return Err(bad("the EMA statistics do not fit this task".into())),
        }
        match (&mut self.restart, usage) {
            (Some(r), Some(u)) if u.len() == r.usage.len() => r.usage = u,
            (None, None) => {}
            _ => return Err(bad("the restart statistics do not fit this task".into())),
        }
        self.rng = rng;
        self.restarts = restarts;
        Ok(())
    }
}

/// A prior over the grid of codes, for sampling: uniform, or one categorical per grid
/// position fitted to the codes of a data set (with add-one smoothing). The paper fits a
/// PixelCNN over the grid instead (§4.1); independent positions are the simplest prior
/// that follows the data.
#[derive(Debug, Clone, PartialEq)]
pub struct CodePrior {
    /// `ln π_{g,k}`, `G · K` values.
    pub log_probs: Vec<f64>,
    /// Positions per example.
    pub grid: usize,
    /// Codebook size.
    pub codes: usize,
}

impl CodePrior {
    /// The uniform prior over `k` codes at each of `grid` positions.
    pub fn uniform(grid: usize, k: usize) -> Self {
        Self {
            log_probs: vec![-(k as f64).ln(); grid * k],
            grid,
            codes: k,
        }
    }

    /// Fits `π_{g,k} = (n_{g,k} + 1) / (N + K)` to `indices` (`grid` codes per
    /// example, row-major).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `indices` is not a positive multiple of `grid`;
    /// [`Error::InvalidSetting`] for a code `≥ k`.
    pub fn fit(indices: &[usize], grid: usize, k: usize) -> Result<Self> {
        if grid == 0 || indices.is_empty() || !indices.len().is_multiple_of(grid) {
            return Err(Error::not_a_multiple(
                "CodePrior::fit (codes)",
                grid,
                indices.len(),
            ));
        }
        let mut counts = vec![1.0; grid * k];
        for (j, &c) in indices.iter().enumerate() {
            if c >= k {
                return Err(Error::invalid("code", format!("{c} is not below {k}")));
            }
            counts[(j % grid) * k + c] += 1.0;
        }
        let total = (indices.len() / grid + k) as f64;
        Ok(Self {
            log_probs: counts.iter().map(|c| (c / total).ln()).collect(),
            grid,
            codes: k,
        })
    }

    /// Draws the codes of `n` examples (`n · grid` indices, row-major) with the
    /// [`Categorical`] distribution (in `f64`) on `device`.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a device that can fail.
    pub fn sample<D: Device<f64>>(&self, n: usize, device: &D) -> Result<Vec<usize>> {
        let k = self.codes;
        let logits: Vec<f64> = (0..n).flat_map(|_| self.log_probs.clone()).collect();
        let dist =
            Categorical::<usize, f64, D>::new(device.tensor_from_vec(logits, (n * self.grid, k)));
        let one_hot = to_f64_vec(&dist.sample());
        Ok(one_hot
            .chunks(k)
            .map(|row| row.iter().position(|&v| v > 0.5).unwrap_or(0))
            .collect())
    }
}

/// The codebook usage of a model on `data` (see [`CodeUsage`]), with the code index of
/// every position of every example. `width` is the encoder's input width `X` (for
/// example `Const::<784>` for the conv encoder, which is generic over it).
///
/// # Errors
/// Shape mismatches between the data and the model; the networks' errors.
pub fn code_usage<X, Enc, Dec, K, DM, E, D, Lik>(
    model: &VqVae<Enc, Dec, K, DM, E, D, Lik>,
    data: &Dataset,
    width: X,
    device: &D,
) -> Result<(CodeUsage, Vec<usize>)>
where
    X: Dim + Default,
    K: Dim,
    DM: Dim,
    E: Real,
    D: Device<E>,
    Enc: Module<Events<X, E, D>, Output = Events<DM, E, D>>,
{
    let mut all = Vec::new();
    for chunk in latent::eval::batches(data.len(), 1000)? {
        let x: Events<X, E, D> = data.batch(device, &chunk, None)?;
        latent::ops::check_width("code_usage (the data's width)", width, x.shape().1)?;
        all.extend(model.encode(x)?);
    }
    Ok((
        CodeUsage::of(&all, model.quantizer.codebook.shape().0.size()),
        all,
    ))
}
