//! Pathwise gradients: `rsample`, closed-form KL and `detach`, against central finite
//! differences, in f64.

use dfdx::prelude::*;
use latent::distributions::{Normal, Reparameterizable};
use latent::ops::{detach, to_f64_vec};
use latent::KlDivergence;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

/// `z = rsample()` for fixed parameters, with the device reseeded so that `ε` repeats.
fn rsample_with(seed: u64, loc: &[f64], log_scale: &[f64]) -> Vec<f64> {
    let dev = Dev::seed_from_u64(seed);
    let n = loc.len();
    let q: Normal<Const<1>, f64, Dev> = Normal::new(
        dev.tensor_from_vec(loc.to_vec(), (n, Const::<1>)),
        dev.tensor_from_vec(log_scale.to_vec(), (n, Const::<1>)),
    )
    .unwrap();
    to_f64_vec(&q.rsample())
}

#[test]
fn rsample_gradients_are_one_and_eps_sigma() {
    let seed = 11;
    let loc = vec![0.3, -1.2, 2.0, 0.0];
    let log_scale = vec![-0.5, 0.1, 0.7, -2.0];
    let n = loc.len();

    // Analytic (tape) gradients of Σ z.
    let dev = Dev::seed_from_u64(seed);
    let loc_t = dev.tensor_from_vec(loc.clone(), (n, Const::<1>));
    let ls_t = dev.tensor_from_vec(log_scale.clone(), (n, Const::<1>));
    let grads = Gradients::leaky();
    let q = Normal::new(
        loc_t.clone().traced(grads),
        ls_t.clone().put_tape(OwnedTape::default()),
    )
    .unwrap();
    let z = q.rsample();
    let z_val = to_f64_vec(&z);
    let g = z.sum::<(), _>().backward();
    let g_loc = to_f64_vec(&g.get(&loc_t));
    let g_ls = to_f64_vec(&g.get(&ls_t));

    let h = 1e-6;
    for i in 0..n {
        let eps = (z_val[i] - loc[i]) / log_scale[i].exp();
        assert!((g_loc[i] - 1.0).abs() < 1e-12, "dz/dloc = {}", g_loc[i]);
        let expected = eps * log_scale[i].exp();
        assert!(
            (g_ls[i] - expected).abs() < 1e-12,
            "dz/dlog σ = {} vs εσ = {expected}",
            g_ls[i]
        );

        // Central finite differences with the same ε.
        let mut up = loc.clone();
        up[i] += h;
        let mut down = loc.clone();
        down[i] -= h;
        let fd_loc = (rsample_with(seed, &up, &log_scale)[i]
            - rsample_with(seed, &down, &log_scale)[i])
            / (2.0 * h);
        assert!((fd_loc - g_loc[i]).abs() < 1e-6, "fd dz/dloc {fd_loc}");
        let mut up = log_scale.clone();
        up[i] += h;
        let mut down = log_scale.clone();
        down[i] -= h;
        let fd_ls =
            (rsample_with(seed, &loc, &up)[i] - rsample_with(seed, &loc, &down)[i]) / (2.0 * h);
        assert!(
            (fd_ls - g_ls[i]).abs() < 1e-6 * g_ls[i].abs().max(1.0),
            "fd dz/dlog σ {fd_ls} vs {}",
            g_ls[i]
        );
    }
}

fn kl_value(ql: f64, qs: f64, pl: f64, ps: f64) -> f64 {
    let dev = Dev::default();
    let mk = |l: f64, s: f64| -> Normal<Const<1>, f64, Dev> {
        Normal::new(
            dev.tensor_from_vec(vec![l], (1, Const::<1>)),
            dev.tensor_from_vec(vec![s], (1, Const::<1>)),
        )
        .unwrap()
    };
    to_f64_vec(&mk(ql, qs).kl_divergence(mk(pl, ps)).unwrap())[0]
}

#[test]
fn normal_kl_gradients_match_finite_differences() {
    let dev = Dev::default();
    let params = [0.4, -0.3, -1.1, 0.5];
    let ts: Vec<Tensor<(usize, Const<1>), f64, Dev>> = params
        .iter()
        .map(|&v| dev.tensor_from_vec(vec![v], (1, Const::<1>)))
        .collect();
    let tape = || OwnedTape::<f64, Dev>::default();
    let q = Normal::new(
        ts[0].clone().traced(Gradients::leaky()),
        ts[1].clone().put_tape(tape()),
    )
    .unwrap();
    let p = Normal::new(
        ts[2].clone().put_tape(tape()),
        ts[3].clone().put_tape(tape()),
    )
    .unwrap();
    let g = q.kl_divergence(p).unwrap().sum::<(), _>().backward();
    let h = 1e-6;
    for (i, t) in ts.iter().enumerate() {
        let analytic = to_f64_vec(&g.get(t))[0];
        let mut up = params;
        up[i] += h;
        let mut down = params;
        down[i] -= h;
        let fd = (kl_value(up[0], up[1], up[2], up[3])
            - kl_value(down[0], down[1], down[2], down[3]))
            / (2.0 * h);
        assert!(
            (fd - analytic).abs() < 1e-6 * fd.abs().max(1.0),
            "param {i}: tape {analytic}, fd {fd}"
        );
    }
}

/// `y = 3a`, `loss = Σ 2y − sg[y]`: the true gradient is `∂loss/∂a = 6`. A "detached"
/// copy made with `retaped` keeps `y`'s id, so the subtraction's gradient `−1` lands on
/// `y` too and leaks into `a` (giving 3): the dfdx 0.13 trap `detach` exists for.
#[test]
fn detach_stops_gradients_where_retaped_leaks() {
    let dev = Dev::default();
    let a = dev.tensor_from_vec(vec![1.0f64, -2.0, 0.5], (3,));

    let y = a.clone().traced(Gradients::leaky()) * 3.0;
    let stopped = detach(&y);
    assert_eq!(stopped.as_vec(), vec![3.0, -6.0, 1.5]);
    let g = (y * 2.0 - stopped).sum::<(), _>().backward();
    assert_eq!(
        to_f64_vec(&g.get(&a)),
        vec![6.0; 3],
        "detach must stop the gradient"
    );

    let y = a.clone().traced(Gradients::leaky()) * 3.0;
    let leaky = y.retaped::<NoneTape>();
    let g = (y * 2.0 - leaky).sum::<(), _>().backward();
    assert_eq!(
        to_f64_vec(&g.get(&a)),
        vec![3.0; 3],
        "retaped is expected to leak"
    );
}
