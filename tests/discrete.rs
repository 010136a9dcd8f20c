//! Discrete latents on toy models small enough to sum by hand: the score-function
//! estimators (plain, NVIL, VIMCO) against exact gradients, and enumeration against the
//! brute-force sum.

use dfdx::prelude::*;
use latent::distributions::Categorical;
use latent::inference::enumerate::{
    enumerated_log_marginal_likelihood, EnumeratedElbo, EnumeratedModel,
};
use latent::inference::nvil::Moments;
use latent::inference::vimco::leave_one_out_signals;
use latent::ops::to_f64_vec;
use latent::{
    Bernoulli, ConditionalModel, Conditioned, Distribution, Elbo, Events, ImportanceWeighted,
    KlEstimator, LatentVariableModel, Normal, Nvil, Objective, PerExample, Result, Vimco,
};

#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn variance(v: &[f64]) -> f64 {
    let (m, _) = mean_se(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Central differences of an exact host function: accurate to ~1e-9 here.
fn exact_gradient(f: impl Fn(&[f64]) -> f64, at: &[f64]) -> Vec<f64> {
    let h = 1e-5;
    (0..at.len())
        .map(|i| {
            let (mut a, mut b) = (at.to_vec(), at.to_vec());
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Two Bernoulli latents with a Gaussian likelihood: q(z) = Π Bernoulli(σ(φ_i)) (not
// amortized), p(z) = Bernoulli(½)², p(x | z) = N(x; w·z + c, 1).

const PHI: [f64; 2] = [0.4, -0.9];
const W: [f64; 2] = [1.5, -2.0];
const C: f64 = 0.3;
const X_OBS: f64 = 1.1;

struct ToyBernoulli {
    phi: Tensor<(Const<2>,), f64, Dev>,
    /// NVIL's baseline `C_ψ(x)`: one number for the one `x`.
    baseline: Tensor<(Const<1>,), f64, Dev>,
    w: Tensor<(Const<2>, Const<1>), f64, Dev>,
}

impl ToyBernoulli {
    fn new(dev: &Dev, baseline: f64) -> Self {
        Self {
            phi: dev.tensor(PHI),
            baseline: dev.tensor([baseline]),
            w: dev.tensor([[W[0]], [W[1]]]),
        }
    }
}

impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T> for ToyBernoulli {
    type X = Const<1>;
    type Z = Const<2>;
    type Posterior = Bernoulli<Const<2>, f64, Dev, T>;
    type Prior = Bernoulli<Const<2>, f64, Dev, T>;
    type Likelihood = Normal<Const<1>, f64, Dev, T>;

    fn guide(&self, x: Events<Const<1>, f64, Dev, T>) -> Result<Self::Posterior> {
        let b = x.shape().0;
        let (_, tape) = x.split_tape();
        let logits = self
            .phi
            .clone()
            .put_tape(tape)
            .broadcast_like::<_, Axis<0>>(&(b, Const::<2>));
        Ok(Bernoulli::new(logits))
    }

    fn prior(&self, batch: usize, device: &Dev) -> Result<Self::Prior> {
        Ok(Bernoulli::new(
            device.zeros_like(&(batch, Const::<2>)).retaped(),
        ))
    }

    fn likelihood(&self, z: Events<Const<2>, f64, Dev, T>) -> Result<Self::Likelihood> {
        let loc = z.matmul(self.w.clone()) + C;
        let log_scale = loc.device().zeros_like(loc.shape()).retaped::<T>();
        Normal::new(loc, log_scale)
    }

    fn baseline(
        &self,
        x: Events<Const<1>, f64, Dev, T>,
    ) -> Option<Result<PerExample<f64, Dev, T>>> {
        let b = x.shape().0;
        let (_, tape) = x.split_tape();
        Some(Ok(self
            .baseline
            .clone()
            .put_tape(tape)
            .broadcast_like::<_, Axis<0>>(&(b, Const::<1>))
            .reshape_like(&(b,))))
    }
}

/// `log p(x, z)` of the toy for a state `z`.
fn toy_log_joint(z: [f64; 2]) -> f64 {
    let loc = W[0] * z[0] + W[1] * z[1] + C;
    -0.5 * LN_2PI - 0.5 * (X_OBS - loc).powi(2) + 2.0 * 0.5f64.ln()
}

fn toy_log_q(phi: &[f64], z: [f64; 2]) -> f64 {
    (0..2)
        .map(|i| {
            if z[i] > 0.5 {
                sigmoid(phi[i]).ln()
            } else {
                sigmoid(-phi[i]).ln()
            }
        })
        .sum()
}

const STATES: [[f64; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];

/// The exact ELBO: `Σ_z q(z) [log p(x, z) − log q(z)]`.
fn toy_elbo(phi: &[f64]) -> f64 {
    STATES
        .iter()
        .map(|&z| {
            let lq = toy_log_q(phi, z);
            lq.exp() * (toy_log_joint(z) - lq)
        })
        .sum()
}

/// The exact IWAE_k bound: `E[log (1/k) Σ_j p(x, z_j)/q(z_j)]` over all `4^k` draws.
fn toy_iwae(phi: &[f64], k: usize) -> f64 {
    let mut total = 0.0;
    for code in 0..4usize.pow(k as u32) {
        let (mut c, mut prob, mut ws) = (code, 1.0, Vec::with_capacity(k));
        for _ in 0..k {
            let z = STATES[c % 4];
            c /= 4;
            let lq = toy_log_q(phi, z);
            prob *= lq.exp();
            ws.push(toy_log_joint(z) - lq);
        }
        let m = ws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + (ws.iter().map(|w| (w - m).exp()).sum::<f64>() / k as f64).ln();
        total += prob * lse;
    }
    total
}

/// `passes` estimates of `∇_φ mean_batch(objective)` on `batch` copies of the one `x`.
fn toy_gradients<O: Objective>(
    objective: &O,
    baseline: f64,
    batch: usize,
    passes: usize,
    seed: u64,
) -> Vec<[f64; 2]> {
    let dev = Dev::seed_from_u64(seed);
    let model = ToyBernoulli::new(&dev, baseline);
    (0..passes)
        .map(|_| {
            let x = dev.tensor_from_vec(vec![X_OBS; batch], (batch, Const::<1>));
            let value = objective
                .objective(&model, x.traced(Gradients::leaky()))
                .unwrap();
            let grads = (value.sum::<(), _>() / batch as f64).backward();
            grads.get(&model.phi).array()
        })
        .collect()
}

/// Checks each coordinate's mean against `exact` within 4 standard errors; returns the
/// per-draw variance of each coordinate (the variance of one example's estimate).
fn check_unbiased(name: &str, grads: &[[f64; 2]], exact: &[f64], batch: usize) -> [f64; 2] {
    let mut var = [0.0; 2];
    for i in 0..2 {
        let v: Vec<f64> = grads.iter().map(|g| g[i]).collect();
        let (m, se) = mean_se(&v);
        assert!(
            (m - exact[i]).abs() < 4.0 * se + 1e-9,
            "{name}: ∂/∂φ{i} = {m} ± {se}, exact {}",
            exact[i]
        );
        var[i] = variance(&v) * batch as f64;
    }
    var
}

const BATCH: usize = 500;
const PASSES: usize = 60;

#[test]
fn score_function_elbo_gradient_is_unbiased_with_closed_form_and_sampled_kl() {
    let exact = exact_gradient(toy_elbo, &PHI);
    // The KL(Bernoulli‖Bernoulli) of the guide is differentiated exactly and only the
    // reconstruction is sampled (Rao-Blackwellized) …
    let g = toy_gradients(&Elbo::new(1).unwrap(), 0.0, BATCH, PASSES, 1);
    check_unbiased("REINFORCE, closed-form KL", &g, &exact, BATCH);
    // … or everything is sampled.
    let mc = Elbo::new(1).unwrap().with_kl(KlEstimator::MonteCarlo);
    let g = toy_gradients(&mc, 0.0, BATCH, PASSES, 2);
    check_unbiased("REINFORCE, sampled KL", &g, &exact, BATCH);
    // With more samples per example.
    let g = toy_gradients(&Elbo::new(4).unwrap(), 0.0, BATCH, PASSES, 3);
    check_unbiased("REINFORCE, L = 4", &g, &exact, BATCH);
}

#[test]
fn the_reported_elbo_is_the_elbo_not_the_surrogate() {
    let dev = Dev::seed_from_u64(4);
    let model = ToyBernoulli::new(&dev, 0.0);
    let n = 20_000;
    let x = dev.tensor_from_vec(vec![X_OBS; n], (n, Const::<1>));
    for (name, value) in [
        (
            "elbo",
            Elbo::new(1).unwrap().objective(&model, x.clone()).unwrap(),
        ),
        (
            "nvil",
            Nvil::default().objective(&model, x.clone()).unwrap(),
        ),
    ] {
        let (m, se) = mean_se(&to_f64_vec(&value));
        let exact = toy_elbo(&PHI);
        assert!(
            (m - exact).abs() < 4.0 * se,
            "{name}: {m} ± {se} vs {exact}"
        );
    }
    let value = Vimco::new(3).unwrap().objective(&model, x).unwrap();
    let (m, se) = mean_se(&to_f64_vec(&value));
    let exact = toy_iwae(&PHI, 3);
    assert!(
        (m - exact).abs() < 4.0 * se,
        "vimco: {m} ± {se} vs IWAE_3 {exact}"
    );
}

/// NVIL with fixed moments (`α` ≈ 1, variance below 1 so the signal is not rescaled):
/// its baselines are then constants, which must leave the mean alone.
fn nvil_with_fixed_centre(centre: f64) -> Nvil {
    Nvil::default()
        .with_alpha(0.999_999)
        .unwrap()
        .with_moments(Moments {
            mean: centre,
            variance: 0.5,
            initialized: true,
        })
}

#[test]
fn nvil_baselines_keep_the_mean_and_lower_the_variance() {
    let exact = exact_gradient(toy_elbo, &PHI);
    let plain = toy_gradients(&Elbo::new(1).unwrap(), 0.0, BATCH, PASSES, 11);
    let v_plain = check_unbiased("REINFORCE", &plain, &exact, BATCH);

    // E_q[log p(x | z)], what a fitted baseline C_ψ(x) + c would approach.
    let expected_signal: f64 = STATES
        .iter()
        .map(|&z| toy_log_q(&PHI, z).exp() * (toy_log_joint(z) - 2.0 * 0.5f64.ln()))
        .sum();
    // The input-dependent baseline alone, the running centre alone, and both.
    for (name, c_x, centre) in [
        ("C(x)", expected_signal, 0.0),
        ("c", 0.0, expected_signal),
        ("C(x) + c", expected_signal - 1.0, 1.0),
    ] {
        let g = toy_gradients(&nvil_with_fixed_centre(centre), c_x, BATCH, PASSES, 12);
        let v = check_unbiased(&format!("NVIL, {name}"), &g, &exact, BATCH);
        for i in 0..2 {
            assert!(
                v[i] < 0.5 * v_plain[i],
                "NVIL ({name}) variance {} not below half of REINFORCE's {}",
                v[i],
                v_plain[i]
            );
        }
    }
    // A deliberately wrong baseline is still unbiased (only noisier).
    let g = toy_gradients(&nvil_with_fixed_centre(0.0), 25.0, BATCH, PASSES, 13);
    check_unbiased("NVIL, wrong baseline", &g, &exact, BATCH);
}

// ---------------------------------------------------------------------------------
// The same toy given a condition `y`: p(x | z, y) = N(x; w·z + c + y, 1), observed at
// x = X_OBS + y, so each example's ELBO and its gradient are the unconditional toy's.
// Its baseline C_ψ(x, y) = b + y − (x − X_OBS) equals b only when each row gets its own
// condition.

struct ToyConditional(ToyBernoulli);

impl<T: Tape<f64, Dev> + 'static> ConditionalModel<f64, Dev, T> for ToyConditional {
    type X = Const<1>;
    type Y = Const<1>;
    type Z = Const<2>;
    type Posterior = Bernoulli<Const<2>, f64, Dev, T>;
    type Prior = Bernoulli<Const<2>, f64, Dev, T>;
    type Likelihood = Normal<Const<1>, f64, Dev, T>;

    fn guide(
        &self,
        x: Events<Const<1>, f64, Dev, T>,
        _y: Events<Const<1>, f64, Dev, T>,
    ) -> Result<Self::Posterior> {
        LatentVariableModel::<f64, Dev, T>::guide(&self.0, x)
    }

    fn prior(&self, y: Events<Const<1>, f64, Dev, T>) -> Result<Self::Prior> {
        let device = y.device().clone();
        LatentVariableModel::<f64, Dev, T>::prior(&self.0, y.shape().0, &device)
    }

    fn likelihood(
        &self,
        z: Events<Const<2>, f64, Dev, T>,
        y: Events<Const<1>, f64, Dev, T>,
    ) -> Result<Self::Likelihood> {
        let loc = z.matmul(self.0.w.clone()) + C + y;
        let log_scale = loc.device().zeros_like(loc.shape()).retaped::<T>();
        Normal::new(loc, log_scale)
    }

    fn baseline(
        &self,
        x: Events<Const<1>, f64, Dev, T>,
        y: Events<Const<1>, f64, Dev, T>,
    ) -> Option<Result<PerExample<f64, Dev, T>>> {
        let b = x.shape().0;
        let (x, tape) = x.split_tape();
        let b_param = self
            .0
            .baseline
            .clone()
            .put_tape(tape)
            .broadcast_like::<_, Axis<0>>(&(b, Const::<1>));
        Some(Ok((b_param + y - x + X_OBS).reshape_like(&(b,))))
    }
}

/// The conditions of `batch` rows: 0.5, −1, 0.5, −1, …
fn toy_conditions(dev: &Dev, batch: usize) -> Tensor<(usize, Const<1>), f64, Dev> {
    let y: Vec<f64> = (0..batch)
        .map(|i| if i % 2 == 0 { 0.5 } else { -1.0 })
        .collect();
    dev.tensor_from_vec(y, (batch, Const::<1>))
}

/// `PASSES` estimates of `∇_φ mean_batch(objective)` on the conditional toy, `BATCH`
/// examples with alternating conditions, through [`Conditioned`].
fn conditional_gradients<O: Objective>(objective: &O, baseline: f64, seed: u64) -> Vec<[f64; 2]> {
    let dev = Dev::seed_from_u64(seed);
    let model = ToyConditional(ToyBernoulli::new(&dev, baseline));
    (0..PASSES)
        .map(|_| {
            let y = toy_conditions(&dev, BATCH);
            let x = y.clone() + X_OBS;
            let bound = Conditioned::new(&model, y);
            let value = objective
                .objective(&bound, x.traced(Gradients::leaky()))
                .unwrap();
            let grads = (value.sum::<(), _>() / BATCH as f64).backward();
            grads.get(&model.0.phi).array()
        })
        .collect()
}

#[test]
fn a_conditional_model_passes_its_baseline_through_conditioned() {
    let dev = Dev::seed_from_u64(21);
    let model = ToyConditional(ToyBernoulli::new(&dev, 2.0));
    let y = toy_conditions(&dev, 2);
    let bound = Conditioned::new(&model, y);
    // x = X_OBS + y row by row: C(x, y) = b = 2 for both rows.
    let x = dev
        .tensor([[X_OBS + 0.5], [X_OBS - 1.0]])
        .realize::<(usize, Const<1>)>();
    let c = LatentVariableModel::<f64, Dev, NoneTape>::baseline(&bound, x)
        .expect("the conditional baseline")
        .unwrap();
    assert_eq!(to_f64_vec(&c), [2.0, 2.0]);
    // Other x: C(x, y) = 2 + y − (x − X_OBS) = 2 + 0.5 − 1 and 2 − 1 − 0.
    let x = dev
        .tensor([[X_OBS + 1.0], [X_OBS]])
        .realize::<(usize, Const<1>)>();
    let c = LatentVariableModel::<f64, Dev, NoneTape>::baseline(&bound, x)
        .unwrap()
        .unwrap();
    assert_eq!(to_f64_vec(&c), [1.5, 1.0]);
    // Four rows (two samples per example, sample-major): y repeated.
    let x = dev
        .tensor([[X_OBS], [X_OBS], [X_OBS], [X_OBS]])
        .realize::<(usize, Const<1>)>();
    let c = LatentVariableModel::<f64, Dev, NoneTape>::baseline(&bound, x)
        .unwrap()
        .unwrap();
    assert_eq!(to_f64_vec(&c), [2.5, 1.0, 2.5, 1.0]);
    // Three rows do not belong to a batch of two conditions.
    let x = dev
        .tensor([[0.0], [0.0], [0.0]])
        .realize::<(usize, Const<1>)>();
    assert!(
        LatentVariableModel::<f64, Dev, NoneTape>::baseline(&bound, x)
            .unwrap()
            .is_err()
    );
}

#[test]
fn nvil_on_a_conditional_model_uses_its_baseline_keeps_the_mean_and_lowers_the_variance() {
    let exact = exact_gradient(toy_elbo, &PHI);
    let expected_signal: f64 = STATES
        .iter()
        .map(|&z| toy_log_q(&PHI, z).exp() * (toy_log_joint(z) - 2.0 * 0.5f64.ln()))
        .sum();
    let plain = conditional_gradients(&Elbo::new(1).unwrap(), expected_signal, 22);
    let v_plain = check_unbiased("REINFORCE, conditional", &plain, &exact, BATCH);
    // The baseline alone (the running centre held at 0): it is C(x, y) = E[signal]
    // only if Conditioned hands each row its own y.
    let nvil = nvil_with_fixed_centre(0.0);
    let g = conditional_gradients(&nvil, expected_signal, 23);
    let v = check_unbiased("NVIL, conditional C(x, y)", &g, &exact, BATCH);
    for i in 0..2 {
        assert!(
            v[i] < 0.5 * v_plain[i],
            "NVIL's conditional baseline: variance {} not below half of REINFORCE's {}",
            v[i],
            v_plain[i]
        );
    }
}

#[test]
fn nvil_running_moments_follow_the_paper_and_survive_a_state_round_trip() {
    let mut nvil = Nvil::default();
    let a = latent::SignalMoments::of(&[1.0, 3.0]);
    nvil.update(&a);
    // The first batch's own moments: mean 2, variance 1.
    assert_eq!(
        nvil.moments(),
        Moments {
            mean: 2.0,
            variance: 1.0,
            initialized: true
        }
    );
    nvil.update(&latent::SignalMoments::of(&[10.0, 10.0]));
    // c ← 0.8·2 + 0.2·10, v ← 0.8·1 + 0.2·0.
    let m = nvil.moments();
    assert!(
        (m.mean - 3.6).abs() < 1e-12 && (m.variance - 0.8).abs() < 1e-12,
        "{m:?}"
    );
    let state = Objective::state(&nvil).unwrap();
    let mut fresh = Nvil::default();
    Objective::restore(&mut fresh, &state).unwrap();
    assert_eq!(fresh.moments(), m);
    let bad = serde_json::json!({"mean": 1.0, "variance": -2.0, "initialized": true});
    assert!(Objective::restore(&mut fresh, &bad).is_err());
    assert!(Nvil::default().with_alpha(1.0).is_err());
}

#[test]
fn nvil_refuses_a_model_without_a_baseline_network() {
    let dev = Dev::default();
    let model = latent_models::LinearGaussian::<Const<2>, Const<1>, f64, Dev>::new(
        &dev,
        (Const, Const),
        &[1.0, 0.5],
        &[0.0, 0.0],
        0.5,
    )
    .unwrap();
    let x = dev.tensor_from_vec(vec![0.1, 0.2], (1, Const::<2>));
    let err = Nvil::default()
        .objective(&model, x.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("baseline"), "{err}");
    assert!(Nvil::default()
        .with_input_baseline(false)
        .objective(&model, x)
        .is_ok());
}

#[test]
fn vimco_gradient_is_that_of_the_k_sample_bound_with_lower_variance() {
    let k = 3;
    let exact = exact_gradient(|p| toy_iwae(p, k), &PHI);
    let plain = toy_gradients(&ImportanceWeighted::new(k).unwrap(), 0.0, BATCH, PASSES, 21);
    let v_plain = check_unbiased("IWAE with plain score", &plain, &exact, BATCH);
    let vimco = toy_gradients(&Vimco::new(k).unwrap(), 0.0, BATCH, PASSES, 22);
    let v_vimco = check_unbiased("VIMCO", &vimco, &exact, BATCH);
    for i in 0..2 {
        assert!(
            v_vimco[i] < 0.5 * v_plain[i],
            "VIMCO variance {} not below half of the plain estimator's {}",
            v_vimco[i],
            v_plain[i]
        );
    }
    assert!(Vimco::new(1).is_err());
}

#[test]
fn vimco_leave_one_out_signals_match_the_formula_written_out() {
    // Mnih & Rezende 2016, eq. 9: L̂_{−j} = log (1/k)(Σ_{i≠j} w_i + exp(mean_{i≠j} log w_i)).
    let (k, batch) = (4, 2);
    let log_w = [-3.0, 1.0, -2.5, 0.5, -1.0, -40.0, 0.2, 2.0]; // [j·batch + b]
    let got = leave_one_out_signals(&log_w, k, batch);
    for b in 0..batch {
        let l: Vec<f64> = (0..k).map(|j| log_w[j * batch + b]).collect();
        let bound = (l.iter().map(|v| v.exp()).sum::<f64>() / k as f64).ln();
        for j in 0..k {
            let others: Vec<f64> = (0..k).filter(|&i| i != j).map(|i| l[i]).collect();
            let geo = others.iter().sum::<f64>() / (k - 1) as f64;
            let loo = ((others.iter().map(|v| v.exp()).sum::<f64>() + geo.exp()) / k as f64).ln();
            let want = bound - loo;
            assert!(
                (got[j * batch + b] - want).abs() < 1e-12,
                "j {j} b {b}: {} vs {want}",
                got[j * batch + b]
            );
        }
    }
    // A weight 1e300 times the others' does not lose them.
    let got = leave_one_out_signals(&[700.0, 0.0, 1.0], 3, 1);
    let loo0 = ((0f64.exp() + 1f64.exp() + 0.5f64.exp()) / 3.0).ln();
    let bound = 700.0 + (1.0f64 / 3.0).ln() + ((-700f64).exp() + (-699f64).exp() + 1.0).ln();
    assert!(
        (got[0] - (bound - loo0)).abs() < 1e-9,
        "{} vs {}",
        got[0],
        bound - loo0
    );
}

// ---------------------------------------------------------------------------------
// A categorical latent: q(y) = softmax(φ), p(y) = 1/3, p(x | y) = N(x; μ_y, 1).

const MU: [f64; 3] = [-2.0, 0.5, 3.0];
const PHI3: [f64; 3] = [0.2, -0.4, 0.7];

struct ToyMixture {
    phi: Tensor<(Const<3>,), f64, Dev>,
    mu: Tensor<(Const<3>, Const<1>), f64, Dev>,
}

impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T> for ToyMixture {
    type X = Const<1>;
    type Z = Const<3>;
    type Posterior = Categorical<Const<3>, f64, Dev, T>;
    type Prior = Categorical<Const<3>, f64, Dev, T>;
    type Likelihood = Normal<Const<1>, f64, Dev, T>;

    fn guide(&self, x: Events<Const<1>, f64, Dev, T>) -> Result<Self::Posterior> {
        let b = x.shape().0;
        let (_, tape) = x.split_tape();
        // `contiguous()`: dfdx 0.13's log-sum-exp (so log_softmax) keeps one row's
        // gradient when its input is a stride-0 broadcast (as `MixtureOfDiagNormals`
        // notes).
        Ok(Categorical::new(
            self.phi
                .clone()
                .put_tape(tape)
                .broadcast_like::<_, Axis<0>>(&(b, Const::<3>))
                .contiguous(),
        ))
    }

    fn prior(&self, batch: usize, device: &Dev) -> Result<Self::Prior> {
        Ok(Categorical::new(
            device.zeros_like(&(batch, Const::<3>)).retaped(),
        ))
    }

    fn likelihood(&self, z: Events<Const<3>, f64, Dev, T>) -> Result<Self::Likelihood> {
        let loc = z.matmul(self.mu.clone());
        let log_scale = loc.device().zeros_like(loc.shape()).retaped::<T>();
        Normal::new(loc, log_scale)
    }
}

fn mixture_elbo(phi: &[f64]) -> f64 {
    let m = phi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + phi.iter().map(|p| (p - m).exp()).sum::<f64>().ln();
    (0..3)
        .map(|y| {
            let lq = phi[y] - lse;
            let lj = -0.5 * LN_2PI - 0.5 * (X_OBS - MU[y]).powi(2) + (1.0f64 / 3.0).ln();
            lq.exp() * (lj - lq)
        })
        .sum()
}

#[test]
fn categorical_score_gradient_is_unbiased() {
    let exact = exact_gradient(mixture_elbo, &PHI3);
    for (name, elbo, seed) in [
        ("closed-form KL", Elbo::new(1).unwrap(), 31),
        (
            "sampled KL",
            Elbo::new(1).unwrap().with_kl(KlEstimator::MonteCarlo),
            32,
        ),
    ] {
        let dev = Dev::seed_from_u64(seed);
        let model = ToyMixture {
            phi: dev.tensor(PHI3),
            mu: dev.tensor([[MU[0]], [MU[1]], [MU[2]]]),
        };
        let grads: Vec<Vec<f64>> = (0..PASSES)
            .map(|_| {
                let x = dev.tensor_from_vec(vec![X_OBS; BATCH], (BATCH, Const::<1>));
                let v = elbo
                    .objective(&model, x.traced(Gradients::leaky()))
                    .unwrap();
                let g = (v.sum::<(), _>() / BATCH as f64).backward();
                g.get(&model.phi).as_vec()
            })
            .collect();
        for i in 0..3 {
            let v: Vec<f64> = grads.iter().map(|g| g[i]).collect();
            let (m, se) = mean_se(&v);
            assert!(
                (m - exact[i]).abs() < 4.0 * se + 1e-9,
                "{name}: ∂/∂φ{i} = {m} ± {se}, exact {}",
                exact[i]
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Enumeration: y ∈ {0, 1, 2} with p(y) = 1/3, p(z | y) = N(μ_y, 1), p(x | z) = N(z, σ²),
// q(y | x) = softmax(φ), q(z | x, y) = p(z | x, y) exactly. Then ELBO(x | y) = log p(x | y)
// for every draw, and the enumerated ELBO is Σ_y q(y)[log p(x | y) + log p(y) − log q(y)]
// with no Monte Carlo error at all.

const SIG: f64 = 0.6;

struct ToyEnumerated {
    phi: Tensor<(Const<3>,), f64, Dev>,
    mu: Tensor<(Const<3>, Const<1>), f64, Dev>,
}

impl<T: Tape<f64, Dev> + 'static> ConditionalModel<f64, Dev, T> for ToyEnumerated {
    type X = Const<1>;
    type Y = Const<3>;
    type Z = Const<1>;
    type Posterior = Normal<Const<1>, f64, Dev, T>;
    type Prior = Normal<Const<1>, f64, Dev, T>;
    type Likelihood = Normal<Const<1>, f64, Dev, T>;

    fn guide(
        &self,
        x: Events<Const<1>, f64, Dev, T>,
        y: Events<Const<3>, f64, Dev, T>,
    ) -> Result<Self::Posterior> {
        let s2 = SIG * SIG;
        let prior_mean = y.matmul(self.mu.clone());
        let loc = (prior_mean * s2 + x) / (s2 + 1.0);
        let log_scale =
            loc.device().ones_like(loc.shape()).retaped::<T>() * (0.5 * (s2 / (s2 + 1.0)).ln());
        Normal::new(loc, log_scale)
    }

    fn prior(&self, y: Events<Const<3>, f64, Dev, T>) -> Result<Self::Prior> {
        let loc = y.matmul(self.mu.clone());
        let log_scale = loc.device().zeros_like(loc.shape()).retaped::<T>();
        Normal::new(loc, log_scale)
    }

    fn likelihood(
        &self,
        z: Events<Const<1>, f64, Dev, T>,
        _y: Events<Const<3>, f64, Dev, T>,
    ) -> Result<Self::Likelihood> {
        let log_scale = z.device().ones_like(z.shape()).retaped::<T>() * SIG.ln();
        Normal::new(z, log_scale)
    }
}

impl<T: Tape<f64, Dev> + 'static> EnumeratedModel<f64, Dev, T> for ToyEnumerated {
    fn site_guide(
        &self,
        x: Events<Const<1>, f64, Dev, T>,
    ) -> Result<Categorical<Const<3>, f64, Dev, T>> {
        let b = x.shape().0;
        let (_, tape) = x.split_tape();
        // `contiguous()`: dfdx 0.13's log-sum-exp (so log_softmax) keeps one row's
        // gradient when its input is a stride-0 broadcast (as `MixtureOfDiagNormals`
        // notes).
        Ok(Categorical::new(
            self.phi
                .clone()
                .put_tape(tape)
                .broadcast_like::<_, Axis<0>>(&(b, Const::<3>))
                .contiguous(),
        ))
    }

    fn site_prior(&self, batch: usize, device: &Dev) -> Result<Categorical<Const<3>, f64, Dev, T>> {
        Ok(Categorical::new(
            device.zeros_like(&(batch, Const::<3>)).retaped(),
        ))
    }
}

/// `log p(x | y) = log N(x; μ_y, 1 + σ²)`.
fn log_px_given(y: usize, x: f64) -> f64 {
    let v = 1.0 + SIG * SIG;
    -0.5 * (LN_2PI + v.ln()) - 0.5 * (x - MU[y]).powi(2) / v
}

#[test]
fn enumeration_equals_the_brute_force_sum_and_its_gradient() {
    let dev = Dev::seed_from_u64(41);
    let model = ToyEnumerated {
        phi: dev.tensor(PHI3),
        mu: dev.tensor([[MU[0]], [MU[1]], [MU[2]]]),
    };
    let xs = [X_OBS, -1.7];
    let x = dev.tensor_from_vec(xs.to_vec(), (2, Const::<1>));
    let terms = EnumeratedElbo::new(Elbo::new(3).unwrap().with_kl(KlEstimator::MonteCarlo))
        .estimate(&model, x.clone().traced(Gradients::leaky()))
        .unwrap();
    let elbo = to_f64_vec(&terms.elbo);
    let lse = {
        let m = PHI3.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + PHI3.iter().map(|p| (p - m).exp()).sum::<f64>().ln()
    };
    let q: Vec<f64> = PHI3.iter().map(|p| (p - lse).exp()).collect();
    let mut expected_grad = [0.0; 3];
    for (b, &xb) in xs.iter().enumerate() {
        let a: Vec<f64> = (0..3)
            .map(|y| log_px_given(y, xb) + (1.0f64 / 3.0).ln())
            .collect();
        let f: f64 = (0..3).map(|y| q[y] * (a[y] - q[y].ln())).sum();
        assert!(
            (elbo[b] - f).abs() < 1e-10,
            "example {b}: enumerated {} vs brute force {f}",
            elbo[b]
        );
        // ∂F/∂φ_j = q_j (a_j − log q_j − F).
        for j in 0..3 {
            expected_grad[j] += q[j] * (a[j] - q[j].ln() - f);
        }
    }
    let grads = terms.objective.sum::<(), _>().backward();
    let g = grads.get(&model.phi).array();
    for j in 0..3 {
        assert!(
            (g[j] - expected_grad[j]).abs() < 1e-9,
            "∂/∂φ{j}: {} vs {}",
            g[j],
            expected_grad[j]
        );
    }

    // The importance-sampled log p(x) with y enumerated: exact here, log Σ_y p(y) p(x | y).
    let ll = enumerated_log_marginal_likelihood(&model, &x, 50, 7).unwrap();
    for (b, &xb) in xs.iter().enumerate() {
        let exact = (0..3)
            .map(|y| (log_px_given(y, xb) + (1.0f64 / 3.0).ln()).exp())
            .sum::<f64>()
            .ln();
        assert!(
            (ll.log_px[b] - exact).abs() < 1e-10,
            "{} vs {exact}",
            ll.log_px[b]
        );
        assert!(ll.stderr[b] < 1e-10);
    }
}

// ---------------------------------------------------------------------------------
// Both kinds of latent in one guide: b ~ Bernoulli(σ(φ)) drawn discretely, then
// z | b ~ N(μ_b, 1) drawn pathwise; events are rows [b, z]. The model: p(b) = ½,
// p(z) = N(0, 1), p(x | b, z) = N(x; z + v·b, 1). The estimator must give the pathwise
// gradient to μ and the score to φ, with the whole signal as the score's weight
// (Pyro's TraceGraph_ELBO on a guide with one site of each kind).

const V: f64 = 1.3;
const MU2: [f64; 2] = [0.4, -0.7];

/// The guide family of the mixed model, a user's own `GuideDistribution`.
struct BernoulliThenNormal<T> {
    /// `(batch, 1)` logits of `b`.
    phi: Tensor<(usize, Const<1>), f64, Dev, T>,
    /// `(batch, 2)`: `μ_0, μ_1`, the means of `z` given `b`.
    mu: Tensor<(usize, Const<2>), f64, Dev, T>,
}

/// Column `j` of `(n, 2)` rows as `(n, 1)`, by a product with a constant (dfdx's
/// `slice` overwrites gradients).
fn col<T: Tape<f64, Dev>>(
    e: Tensor<(usize, usize), f64, Dev, T>,
    j: usize,
) -> Tensor<(usize, Const<1>), f64, Dev, T> {
    let dev = e.device().clone();
    let pick: Tensor<(usize, Const<1>), f64, Dev> = dev.tensor_from_vec(
        if j == 0 {
            vec![1.0, 0.0]
        } else {
            vec![0.0, 1.0]
        },
        (2, Const),
    );
    e.matmul(pick)
}

/// `μ_b = μ_0 (1 − b) + μ_1 b`, shape `(n, 1)`.
fn mean_given<T2: Tape<f64, Dev>>(
    mu: Tensor<(usize, Const<2>), f64, Dev, T2>,
    b: Tensor<(usize, Const<1>), f64, Dev>,
) -> Tensor<(usize, Const<1>), f64, Dev, T2> {
    let dev = b.device().clone();
    let n = b.shape().0;
    let flip: Tensor<(Const<1>, Const<2>), f64, Dev> = dev.tensor([[-1.0, 1.0]]);
    let base: Tensor<(Const<2>,), f64, Dev> = dev.tensor([1.0, 0.0]);
    let onehot = b.matmul(flip) + base.broadcast_like::<_, Axis<0>>(&(n, Const::<2>));
    (mu * onehot)
        .sum::<(usize,), Axis<1>>()
        .reshape_like(&(n, Const::<1>))
}

/// Rows `[b, z]` of width 2 (run-time), carrying `z`'s tape.
fn rows<T2: Tape<f64, Dev>>(
    b: Tensor<(usize, Const<1>), f64, Dev>,
    z: Tensor<(usize, Const<1>), f64, Dev, T2>,
) -> Events<usize, f64, Dev, T2> {
    let dev = b.device().clone();
    let first: Tensor<(Const<1>, usize), f64, Dev> =
        dev.tensor_from_vec(vec![1.0, 0.0], (Const, 2));
    let second: Tensor<(Const<1>, usize), f64, Dev> =
        dev.tensor_from_vec(vec![0.0, 1.0], (Const, 2));
    z.matmul(second) + b.matmul(first)
}

impl<T: Tape<f64, Dev>> BernoulliThenNormal<T> {
    fn bernoulli(phi: Tensor<(usize, Const<1>), f64, Dev, T>) -> Bernoulli<Const<1>, f64, Dev, T> {
        Bernoulli::new(phi)
    }
}

impl<T: Tape<f64, Dev>> latent::Distribution<usize, f64, Dev> for BernoulliThenNormal<T> {
    type Tape = T;
    fn batch_size(&self) -> usize {
        self.phi.shape().0
    }
    fn device(&self) -> Dev {
        self.phi.device().clone()
    }
    fn log_prob(self, e: Events<usize, f64, Dev, T>) -> Result<PerExample<f64, Dev, T>> {
        let b = col(e.with_empty_tape(), 0);
        let z = col(e, 1);
        let b_data = b.retaped::<NoneTape>();
        let lb = Self::bernoulli(self.phi).log_prob(b)?;
        let loc = mean_given(self.mu, b_data);
        let n = z.shape().0;
        let lz = Normal::new(loc, z.device().zeros_like(&(n, Const::<1>)).retaped::<T>())?
            .log_prob(z)?;
        Ok(lb + lz)
    }
    fn sample(&self) -> Events<usize, f64, Dev> {
        let b = Self::bernoulli(self.phi.retaped::<T>()).sample();
        let n = b.shape().0;
        let z = mean_given(self.mu.retaped::<NoneTape>(), b.clone())
            + self.phi.device().sample_normal_like(&(n, Const::<1>));
        rows(b, z)
    }
    fn mean(self) -> Events<usize, f64, Dev, T> {
        unimplemented!("not needed here")
    }
    fn fork(&self) -> Self {
        Self {
            phi: self.phi.with_empty_tape(),
            mu: self.mu.with_empty_tape(),
        }
    }
    fn repeat(self, n: usize) -> Self {
        Self {
            phi: latent::ops::repeat_rows(self.phi, n),
            mu: latent::ops::repeat_rows(self.mu, n),
        }
    }
    fn into_tape(self) -> T {
        let (_, a) = self.phi.split_tape();
        let (_, b) = self.mu.split_tape();
        a.merge(b)
    }
}

impl<T: Tape<f64, Dev>> latent::GuideDistribution<usize, f64, Dev> for BernoulliThenNormal<T> {
    fn draw(self) -> Result<latent::distributions::Drawn<usize, f64, Dev, T>> {
        let d = self.draw_with_log_prob()?;
        // log q's tape is the original's: keep it in the score's.
        let (_, t) = d.log_q.split_tape();
        let score = d.score.map(|s| {
            let (s, ts) = s.split_tape();
            s.put_tape(ts.merge(t))
        });
        Ok((d.z, score))
    }
    fn draw_with_log_prob(self) -> Result<latent::GuideDraw<usize, f64, Dev, T>> {
        let score_fork = Self::bernoulli(self.phi.with_empty_tape());
        let b = score_fork.sample();
        let score = score_fork.log_prob(b.clone().retaped())?;
        let n = b.shape().0;
        let noise = self.phi.device().sample_normal_like(&(n, Const::<1>));
        let z = mean_given(self.mu.with_empty_tape(), b.clone()) + noise;
        let e = rows(b, z);
        let log_q = latent::Distribution::log_prob(self, e.with_empty_tape())?;
        Ok(latent::GuideDraw {
            z: e,
            log_q,
            score: Some(score),
        })
    }
}

struct ToyMixed {
    phi: Tensor<(Const<1>,), f64, Dev>,
    mu: Tensor<(Const<2>,), f64, Dev>,
}

impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T> for ToyMixed {
    type X = Const<1>;
    type Z = usize;
    type Posterior = BernoulliThenNormal<T>;
    type Prior = StandardBoth<T>;
    type Likelihood = Normal<Const<1>, f64, Dev, T>;

    fn guide(&self, x: Events<Const<1>, f64, Dev, T>) -> Result<Self::Posterior> {
        let n = x.shape().0;
        let (_, tape) = x.split_tape();
        Ok(BernoulliThenNormal {
            phi: self
                .phi
                .clone()
                .put_tape(tape)
                .broadcast_like::<_, Axis<0>>(&(n, Const::<1>))
                .contiguous(),
            mu: self
                .mu
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&(n, Const::<2>))
                .contiguous(),
        })
    }

    fn prior(&self, batch: usize, device: &Dev) -> Result<Self::Prior> {
        Ok(StandardBoth {
            n: batch,
            dev: device.clone(),
            _t: std::marker::PhantomData,
        })
    }

    fn likelihood(&self, e: Events<usize, f64, Dev, T>) -> Result<Self::Likelihood> {
        let b = col(e.with_empty_tape(), 0);
        let z = col(e, 1);
        let loc = z + b * V;
        let n = loc.shape().0;
        Normal::new(loc, self_zeros::<T>(n))
    }
}

fn self_zeros<T: Tape<f64, Dev>>(n: usize) -> Tensor<(usize, Const<1>), f64, Dev, T> {
    Dev::default().zeros_like(&(n, Const::<1>)).retaped::<T>()
}

/// `p(b, z) = Bernoulli(b; ½) N(z; 0, 1)` on rows `[b, z]`.
struct StandardBoth<T> {
    n: usize,
    dev: Dev,
    _t: std::marker::PhantomData<T>,
}

impl<T: Tape<f64, Dev>> latent::Distribution<usize, f64, Dev> for StandardBoth<T> {
    type Tape = T;
    fn batch_size(&self) -> usize {
        self.n
    }
    fn device(&self) -> Dev {
        self.dev.clone()
    }
    fn log_prob(self, e: Events<usize, f64, Dev, T>) -> Result<PerExample<f64, Dev, T>> {
        let z = col(e, 1);
        let n = z.shape().0;
        let lz = Normal::new(self_zeros::<T>(n), self_zeros::<T>(n))?.log_prob(z)?;
        Ok(lz + 0.5f64.ln())
    }
    fn sample(&self) -> Events<usize, f64, Dev> {
        unimplemented!("not needed here")
    }
    fn mean(self) -> Events<usize, f64, Dev, T> {
        unimplemented!("not needed here")
    }
    fn fork(&self) -> Self {
        Self {
            n: self.n,
            dev: self.dev.clone(),
            _t: std::marker::PhantomData,
        }
    }
    fn repeat(self, n: usize) -> Self {
        Self {
            n: self.n * n,
            ..self
        }
    }
    fn into_tape(self) -> T {
        T::default()
    }
}

/// The exact ELBO of the mixed toy in `(φ, μ_0, μ_1)`: with `z | b ~ N(μ_b, 1)`,
/// `E[log N(x; z + v b, 1)] = −½ ln 2π − ½((x − μ_b − v b)² + 1)`,
/// `E[log N(z; 0, 1)] = −½ ln 2π − ½(μ_b² + 1)`, `E[log N(z; μ_b, 1)] = −½ ln 2π − ½`.
fn mixed_elbo(p: &[f64]) -> f64 {
    let (phi, mu) = (p[0], [p[1], p[2]]);
    (0..2)
        .map(|b| {
            let q = if b == 1 { sigmoid(phi) } else { sigmoid(-phi) };
            let m = mu[b];
            let lik = -0.5 * LN_2PI - 0.5 * ((X_OBS - m - V * b as f64).powi(2) + 1.0);
            let prior = -0.5 * LN_2PI - 0.5 * (m * m + 1.0) + 0.5f64.ln();
            let entropy_z = 0.5 * LN_2PI + 0.5;
            q * (lik + prior + entropy_z - q.ln())
        })
        .sum()
}

#[test]
fn a_guide_with_a_discrete_and_a_pathwise_site_gets_both_gradients_unbiased() {
    let at = [0.3, MU2[0], MU2[1]];
    let exact = exact_gradient(mixed_elbo, &at);
    let dev = Dev::seed_from_u64(51);
    let model = ToyMixed {
        phi: dev.tensor([at[0]]),
        mu: dev.tensor(MU2),
    };
    let n = BATCH;
    let mut draws: Vec<[f64; 3]> = Vec::new();
    for _ in 0..PASSES {
        let x = dev.tensor_from_vec(vec![X_OBS; n], (n, Const::<1>));
        let v = Elbo::new(1)
            .unwrap()
            .objective(&model, x.traced(Gradients::leaky()))
            .unwrap();
        let g = (v.sum::<(), _>() / n as f64).backward();
        let (gp, gm) = (g.get(&model.phi).array(), g.get(&model.mu).array());
        draws.push([gp[0], gm[0], gm[1]]);
    }
    for i in 0..3 {
        let v: Vec<f64> = draws.iter().map(|d| d[i]).collect();
        let (m, se) = mean_se(&v);
        assert!(
            (m - exact[i]).abs() < 4.0 * se + 1e-9,
            "parameter {i}: {m} ± {se}, exact {}",
            exact[i]
        );
    }
    // NVIL's centring reaches the discrete site only, and leaves every mean alone.
    let nvil = nvil_with_fixed_centre(-3.0).with_input_baseline(false);
    let mut draws: Vec<[f64; 3]> = Vec::new();
    for _ in 0..PASSES {
        let x = dev.tensor_from_vec(vec![X_OBS; n], (n, Const::<1>));
        let v = nvil
            .objective(&model, x.traced(Gradients::leaky()))
            .unwrap();
        let g = (v.sum::<(), _>() / n as f64).backward();
        let (gp, gm) = (g.get(&model.phi).array(), g.get(&model.mu).array());
        draws.push([gp[0], gm[0], gm[1]]);
    }
    for i in 0..3 {
        let v: Vec<f64> = draws.iter().map(|d| d[i]).collect();
        let (m, se) = mean_se(&v);
        assert!(
            (m - exact[i]).abs() < 4.0 * se + 1e-9,
            "NVIL, parameter {i}: {m} ± {se}, exact {}",
            exact[i]
        );
    }
    assert!(
        exact[0].abs() > 0.05,
        "the test needs a score gradient to check: {}",
        exact[0]
    );
}
