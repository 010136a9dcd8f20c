//! The full-covariance guide against an exact answer: probabilistic PCA with
//! non-orthogonal loadings has a correlated Gaussian posterior. A `MultivariateNormal`
//! guide set to it makes every importance weight `p(x, z)/q(z)` equal `p(x)` exactly
//! (zero variance), so each log-weight is statrs-free closed-form `log p(x)` to 1e-9;
//! the best diagonal guide cannot (its log-weights vary, and its ELBO is strictly
//! below `log p(x)`).

use dfdx::prelude::*;
use latent::distributions::{MultivariateNormal, Normal, StandardNormal};
use latent::ops::{to_f64_vec, Events};
use latent::{log_weights, LatentVariableModel, Result};
use latent_models::LinearGaussian;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;
type Ppca = LinearGaussian<Const<3>, Const<2>, f64, Dev>;
// Non-orthogonal columns: WᵀW + σ²I is not diagonal, so the posterior is correlated.
const W: [f64; 6] = [1.0, 0.8, 0.5, 2.0, -0.7, 1.2];
const B: [f64; 3] = [0.1, -0.2, 0.3];
const X: [f64; 3] = [1.5, -0.4, 2.2];

/// pPCA with a fixed guide: the exact posterior in full (`Full`) or only its marginals
/// (`Diagonal`).
struct Fixed<Q> {
    ppca: Ppca,
    guide: fn(usize, &Dev) -> Q,
}

fn cholesky2(c: &[f64]) -> [f64; 4] {
    let l00 = c[0].sqrt();
    let l10 = c[2] / l00;
    [l00, 0.0, l10, (c[3] - l10 * l10).sqrt()]
}

fn exact(dev: &Dev) -> (Vec<f64>, Vec<f64>) {
    let ppca: Ppca = LinearGaussian::new(dev, (Const, Const), &W, &B, 0.6).unwrap();
    ppca.exact_posterior(&X).unwrap()
}

macro_rules! lvm {
    ($q:ident) => {
        impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T>
            for Fixed<$q<Const<2>, f64, Dev>>
        {
            type X = Const<3>;
            type Z = Const<2>;
            type Posterior = $q<Const<2>, f64, Dev, T>;
            type Prior = StandardNormal<Const<2>, f64, Dev, T>;
            type Likelihood = Normal<Const<3>, f64, Dev, T>;
            fn guide(&self, x: Events<Const<3>, f64, Dev, T>) -> Result<Self::Posterior> {
                let q = (self.guide)(x.shape().0, x.device());
                Ok(lift(q))
            }
            fn prior(&self, batch: usize, dev: &Dev) -> Result<Self::Prior> {
                LatentVariableModel::<f64, Dev, T>::prior(&self.ppca, batch, dev)
            }
            fn likelihood(&self, z: Events<Const<2>, f64, Dev, T>) -> Result<Self::Likelihood> {
                LatentVariableModel::<f64, Dev, T>::likelihood(&self.ppca, z)
            }
        }
    };
}

trait Lift<T> {
    type Out;
    fn lift(self) -> Self::Out;
}
impl<T: Tape<f64, Dev>> Lift<T> for MultivariateNormal<Const<2>, f64, Dev> {
    type Out = MultivariateNormal<Const<2>, f64, Dev, T>;
    fn lift(self) -> Self::Out {
        MultivariateNormal {
            loc: self.loc.put_tape(T::default()),
            scale_tril: self.scale_tril.put_tape(T::default()),
        }
    }
}
impl<T: Tape<f64, Dev>> Lift<T> for Normal<Const<2>, f64, Dev> {
    type Out = Normal<Const<2>, f64, Dev, T>;
    fn lift(self) -> Self::Out {
        Normal {
            loc: self.loc.put_tape(T::default()),
            log_scale: self.log_scale.put_tape(T::default()),
        }
    }
}
fn lift<T, Q: Lift<T>>(q: Q) -> Q::Out {
    q.lift()
}

lvm!(MultivariateNormal);
lvm!(Normal);

fn full(n: usize, dev: &Dev) -> MultivariateNormal<Const<2>, f64, Dev> {
    let (mean, cov) = exact(dev);
    let l = cholesky2(&cov);
    MultivariateNormal::from_host(dev, Const, &mean.repeat(n), &l.repeat(n)).unwrap()
}

fn diagonal(n: usize, dev: &Dev) -> Normal<Const<2>, f64, Dev> {
    let (mean, cov) = exact(dev);
    Normal::from_host(
        dev,
        Const,
        &mean.repeat(n),
        &[cov[0].sqrt(), cov[3].sqrt()].repeat(n),
    )
    .unwrap()
}

#[test]
fn the_exact_correlated_posterior_makes_every_importance_weight_p_of_x() {
    let dev = Dev::seed_from_u64(5);
    let ppca: Ppca = LinearGaussian::new(&dev, (Const, Const), &W, &B, 0.6).unwrap();
    let log_px = ppca.exact_log_marginal(&X).unwrap();
    let (_, cov) = exact(&dev);
    let rho = cov[1] / (cov[0] * cov[3]).sqrt();
    assert!(
        rho.abs() > 0.2,
        "the posterior must be correlated: ρ = {rho}"
    );
    let x = dev.tensor_from_vec(X.to_vec(), (1, Const::<3>));

    let model = Fixed {
        ppca: ppca.clone(),
        guide: full,
    };
    let lw = to_f64_vec(&log_weights(&model, x.clone(), 2000).unwrap());
    for w in &lw {
        assert!(
            (w - log_px).abs() < 1e-9,
            "log-weight {w} vs log p(x) {log_px}"
        );
    }

    // Its marginals alone (a diagonal guide) leave the weights spread and the ELBO below.
    let model = Fixed {
        ppca,
        guide: diagonal,
    };
    let lw = to_f64_vec(&log_weights(&model, x, 20_000).unwrap());
    let mean = lw.iter().sum::<f64>() / lw.len() as f64;
    let sd = (lw.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (lw.len() - 1) as f64).sqrt();
    assert!(
        sd > 0.05,
        "the diagonal guide's log-weights barely vary: sd {sd}"
    );
    assert!(
        mean < log_px - 0.01,
        "ELBO {mean} not below log p(x) {log_px}"
    );
}
