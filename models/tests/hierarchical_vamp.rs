//! The hierarchical VampPrior VAE: both layers' densities against the formulas with
//! statrs, gradients (the `x` branch of `q(z1 | x, z2)` included, whose tape travels
//! with the first layer's) against finite differences, repeated draws, checkpoints.

use dfdx::prelude::*;
use latent::ops::to_f64_vec;
use latent::train::{load_model, save_checkpoint_with, CheckpointMeta, Describe};
use latent::{AmortizedGuide, Distribution, Elbo, LatentVariableModel};
use latent_models::{HierarchicalVampVae, PseudoInit};
use statrs::distribution::{Continuous, Normal as StatrsNormal};

#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

type Model = HierarchicalVampVae<f64, Dev>;
/// Selects one parameter tensor of the model.
type Pick = fn(&mut Model) -> &mut Tensor<(usize, usize), f64, Dev>;

const X: usize = 6;
const H: usize = 4;
const Z1: usize = 3;
const Z2: usize = 2;
const U: usize = 3;
const B: usize = 2;

fn model(seed: u64) -> Model {
    let dev = Dev::seed_from_u64(seed);
    HierarchicalVampVae::new(
        &dev,
        (X, H, Z1, Z2),
        U,
        &PseudoInit::Random {
            mean: 0.4,
            std: 0.3,
        },
    )
    .unwrap()
}

fn data(dev: &Dev) -> (Tensor<(usize, usize), f64, Dev>, Vec<f64>) {
    let x = dev.tensor_from_vec(
        (0..B * X)
            .map(|i| ((i * 7) % 3 == 0) as u8 as f64)
            .collect(),
        (B, X),
    );
    // Rows [z1, z2].
    let z = vec![0.3, -0.8, 1.1, 0.5, -0.2, -1.4, 0.2, 0.9, -0.6, 0.1];
    (x, z)
}

/// `Σ_d log N(v_d; μ_d, σ_d)` with statrs.
fn log_normal(v: &[f64], loc: &[f64], log_scale: &[f64]) -> f64 {
    v.iter()
        .zip(loc)
        .zip(log_scale)
        .map(|((v, m), s)| StatrsNormal::new(*m, s.exp()).unwrap().ln_pdf(*v))
        .sum()
}

fn rows(v: &[f64], b: usize, w: usize) -> &[f64] {
    &v[b * w..(b + 1) * w]
}

#[test]
fn guide_and_prior_are_the_papers_factorization() {
    let mut m = model(1);
    // Pixels outside [0, 1], so the clamp matters.
    let mut v = to_f64_vec(&m.pseudo_inputs);
    (v[0], v[5]) = (-0.3, 1.4);
    m.pseudo_inputs.copy_from(&v);
    let dev = m.pseudo_inputs.device().clone();
    let (x, z) = data(&dev);
    let zt = dev.tensor_from_vec(z.clone(), (B, Z1 + Z2));
    let q = <Model as LatentVariableModel<f64, Dev, NoneTape>>::guide(&m, x.clone()).unwrap();
    let got_q = to_f64_vec(&q.log_prob(zt.clone()).unwrap());
    let p = <Model as LatentVariableModel<f64, Dev, NoneTape>>::prior(&m, B, &dev).unwrap();
    let got_p = to_f64_vec(&p.log_prob(zt).unwrap());

    // By hand: q(z2 | x), then q(z1 | x, z2) from the layers called one by one.
    let top = m.q_z2.posterior(x.clone()).unwrap();
    let (tl, ts) = (to_f64_vec(&top.loc), to_f64_vec(&top.log_scale));
    let z2: Vec<f64> = (0..B)
        .flat_map(|b| rows(&z, b, Z1 + Z2)[Z1..].to_vec())
        .collect();
    let z1: Vec<f64> = (0..B)
        .flat_map(|b| rows(&z, b, Z1 + Z2)[..Z1].to_vec())
        .collect();
    let z2t = dev.tensor_from_vec(z2.clone(), (B, Z2));
    let xf = m.q_z1_inputs.0.forward(x);
    let zf = m.q_z1_inputs.1.forward(z2t.clone());
    let joint = m.q_z1.posterior((xf, zf).concat_along(Axis::<1>)).unwrap();
    let (jl, js) = (to_f64_vec(&joint.loc), to_f64_vec(&joint.log_scale));
    // p(z2): the mean of the components at the clamped pseudo-inputs; p(z1 | z2).
    let u: Vec<f64> = to_f64_vec(&m.pseudo_inputs)
        .iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
    assert!(to_f64_vec(&m.pseudo_inputs)
        .iter()
        .any(|v| !(0.0..=1.0).contains(v)));
    let comps = m.q_z2.posterior(dev.tensor_from_vec(u, (U, X))).unwrap();
    let (cl, cs) = (to_f64_vec(&comps.loc), to_f64_vec(&comps.log_scale));
    let cond = m.p_z1.posterior(z2t).unwrap();
    let (pl, ps) = (to_f64_vec(&cond.loc), to_f64_vec(&cond.log_scale));
    for b in 0..B {
        let want_q = log_normal(rows(&z2, b, Z2), rows(&tl, b, Z2), rows(&ts, b, Z2))
            + log_normal(rows(&z1, b, Z1), rows(&jl, b, Z1), rows(&js, b, Z1));
        assert!(
            (got_q[b] - want_q).abs() < 1e-10,
            "q, example {b}: {} vs {want_q}",
            got_q[b]
        );
        let mix: f64 = (0..U)
            .map(|k| log_normal(rows(&z2, b, Z2), rows(&cl, k, Z2), rows(&cs, k, Z2)).exp())
            .sum::<f64>()
            / U as f64;
        let want_p = mix.ln() + log_normal(rows(&z1, b, Z1), rows(&pl, b, Z1), rows(&ps, b, Z1));
        assert!(
            (got_p[b] - want_p).abs() < 1e-10,
            "p, example {b}: {} vs {want_p}",
            got_p[b]
        );
    }
}

/// `Σ_b [log p(x|z) + log p(z) − log q(z|x)]` at fixed `z`, and its gradient.
fn objective(
    m: &Model,
    x: &Tensor<(usize, usize), f64, Dev>,
    z: &[f64],
    grads: bool,
) -> (f64, Option<Gradients<f64, Dev>>) {
    let dev = x.device().clone();
    let zt = dev.tensor_from_vec(z.to_vec(), (B, Z1 + Z2));
    if !grads {
        let q = <Model as LatentVariableModel<f64, Dev, NoneTape>>::guide(m, x.clone()).unwrap();
        let p = <Model as LatentVariableModel<f64, Dev, NoneTape>>::prior(m, B, &dev).unwrap();
        let l =
            <Model as LatentVariableModel<f64, Dev, NoneTape>>::likelihood(m, zt.clone()).unwrap();
        let v = l.log_prob(x.clone()).unwrap() + p.log_prob(zt.clone()).unwrap()
            - q.log_prob(zt).unwrap();
        return (v.sum::<(), _>().array(), None);
    }
    let g = m.alloc_grads();
    let q = <Model as LatentVariableModel<f64, Dev, OwnedTape<f64, Dev>>>::guide(
        m,
        x.clone().traced(g),
    )
    .unwrap();
    let lq = q.log_prob(zt.clone().retaped()).unwrap();
    let p =
        <Model as LatentVariableModel<f64, Dev, OwnedTape<f64, Dev>>>::prior(m, B, &dev).unwrap();
    let lp = p.log_prob(zt.clone().retaped()).unwrap();
    let l =
        <Model as LatentVariableModel<f64, Dev, OwnedTape<f64, Dev>>>::likelihood(m, zt.retaped())
            .unwrap();
    let lx = l.log_prob(x.clone().retaped()).unwrap();
    let total = (lx + lp - lq).sum::<(), _>();
    let v = total.array();
    (v, Some(total.backward()))
}

/// Central differences of `objective` in entry `i` of the tensor `pick` selects.
fn finite_difference(
    m: &Model,
    x: &Tensor<(usize, usize), f64, Dev>,
    z: &[f64],
    pick: Pick,
    i: usize,
) -> f64 {
    let h = 1e-6;
    let at = |delta: f64| {
        let mut m2 = m.clone();
        let t = pick(&mut m2);
        let mut v = t.as_vec();
        v[i] += delta;
        *t = t.device().tensor_from_vec(v, *t.shape());
        objective(&m2, x, z, false).0
    };
    (at(h) - at(-h)) / (2.0 * h)
}

#[test]
fn gradients_match_finite_differences_in_every_branch() {
    let m = model(2);
    let dev = m.pseudo_inputs.device().clone();
    let (x, z) = data(&dev);
    let (_, g) = objective(&m, &x, &z, true);
    let g = g.unwrap();
    let picks: [(&str, Pick); 6] = [
        // The x branch of q(z1 | x, z2): its tape travels with q(z2 | x)'s.
        ("q(z1|x,z2) x layer", |m| &mut m.q_z1_inputs.0.value.weight),
        ("q(z1|x,z2) z2 layer", |m| &mut m.q_z1_inputs.1.gate.weight),
        ("q(z2|x) first layer", |m| {
            &mut m.q_z2.encoder.0.value.weight
        }),
        ("p(z1|z2)", |m| &mut m.p_z1.encoder.1.gate.weight),
        ("decoder z2 layer", |m| &mut m.decoder.1.value.weight),
        ("pseudo-inputs", |m| &mut m.pseudo_inputs),
    ];
    for (name, pick) in picks {
        let mut m2 = m.clone();
        let auto = g.get(pick(&mut m2)).as_vec();
        let mut checked = 0;
        for (i, a) in auto.iter().enumerate().take(6) {
            let fd = finite_difference(&m, &x, &z, pick, i);
            assert!(
                (a - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "{name}[{i}]: autograd {a} vs finite differences {fd}"
            );
            checked += (fd.abs() > 1e-9) as usize;
        }
        // The pseudo-inputs clamped to 0 or 1 have no gradient; the others must.
        assert!(
            checked > 0,
            "{name}: every checked entry had a zero gradient"
        );
    }
}

#[test]
fn repeated_draws_see_their_own_example() {
    let m = model(3);
    let dev = m.pseudo_inputs.device().clone();
    let (x, z) = data(&dev);
    let q = <Model as LatentVariableModel<f64, Dev, NoneTape>>::guide(&m, x.clone()).unwrap();
    let once = to_f64_vec(
        &q.fork()
            .log_prob(dev.tensor_from_vec(z.clone(), (B, Z1 + Z2)))
            .unwrap(),
    );
    // Three draws per example, sample-major: row s·B + b is example b.
    let tiled: Vec<f64> = (0..3).flat_map(|_| z.clone()).collect();
    let thrice = to_f64_vec(
        &q.repeat(3)
            .log_prob(dev.tensor_from_vec(tiled, (3 * B, Z1 + Z2)))
            .unwrap(),
    );
    for s in 0..3 {
        for b in 0..B {
            assert!((thrice[s * B + b] - once[b]).abs() < 1e-12);
        }
    }
    // The estimators run: the ELBO and the IWAE bound, finite and ordered.
    let elbo = to_f64_vec(&Elbo::default().estimate(&m, x.clone()).unwrap().elbo);
    let ll = latent::log_marginal_likelihood(&m, &x, 50, 10).unwrap();
    assert!(elbo.iter().chain(&ll.log_px).all(|v| v.is_finite()));
    assert_eq!((elbo.len(), ll.log_px.len()), (B, B));
}

#[test]
fn checkpoint_round_trip() {
    let m = model(4);
    let dir = std::env::temp_dir().join(format!("latent-hvamp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    save_checkpoint_with(&m, &[], &CheckpointMeta::new(Some(m.spec())), &path).unwrap();
    let mut other = model(5);
    load_model(&mut other, &path).unwrap();
    assert_eq!(
        to_f64_vec(&other.pseudo_inputs),
        to_f64_vec(&m.pseudo_inputs)
    );
    assert_eq!(
        to_f64_vec(&other.decoder.3.weight),
        to_f64_vec(&m.decoder.3.weight)
    );
    assert_eq!(m.spec().sizes["z2"], Z2);
    assert_eq!(m.spec().kind, "hierarchical-vamp-vae");
    std::fs::remove_dir_all(dir).ok();
}
