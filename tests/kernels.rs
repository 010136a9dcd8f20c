//! The fused CPU operations against the unfused dfdx expressions they replace (values
//! and gradients), the SIMD matrix product against a naive product on the reference
//! model's shapes, and the data-parallel gradient against the one-replica gradient.

use dfdx::prelude::*;
use latent::data::embedded;
use latent::eval::EvalReport;
use latent::kernels::{bernoulli_log_prob, linear, matmul_naive};
use latent::ops::to_f64_vec;
use latent::train::{Batch, DataParallel, Progress, Task};
use latent::{Distribution, LatentVariableModel, Result};
use latent_models::{mlp_vae, MlpVae};

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Σ_j c_j y_j for a fixed weighting c, so that ∂/∂y is not all ones.
fn weighted_sum<S: Shape, T: Tape<f64, Cpu>>(y: Tensor<S, f64, Cpu, T>) -> Tensor<(), f64, Cpu, T> {
    let dev = y.device().clone();
    let n = y.shape().num_elements();
    let c: Vec<f64> = (0..n)
        .map(|j| ((j * 7919) % 13) as f64 / 6.0 - 1.0)
        .collect();
    let c = dev.tensor_from_vec(c, *y.shape());
    (y * c).sum()
}

#[test]
fn fused_linear_matches_dfdx_matmul_plus_bias_in_values_and_gradients() {
    let dev = Cpu::seed_from_u64(3);
    let x: Tensor<(usize, Const<7>), f64, Cpu> = dev.sample_normal_like(&(5, Const::<7>));
    let w: Tensor<Rank2<3, 7>, f64, Cpu> = dev.sample_normal();
    let b: Tensor<Rank1<3>, f64, Cpu> = dev.sample_normal();

    // Ours.
    let y = linear(x.trace(Gradients::leaky()), &w, &b).unwrap();
    let y_ours = to_f64_vec(&y);
    let ours = weighted_sum(y).backward();
    // dfdx's.
    let xt = x.clone().trace(Gradients::leaky());
    let y = xt.matmul(
        w.retaped::<OwnedTape<f64, Cpu>>()
            .permute::<_, Axes2<1, 0>>(),
    ) + b
        .retaped::<OwnedTape<f64, Cpu>>()
        .broadcast_like(&(5, Const::<3>));
    let y_dfdx = to_f64_vec(&y);
    let theirs = weighted_sum(y).backward();

    close(&y_ours, &y_dfdx, 1e-12, "y");
    close(
        &to_f64_vec(&ours.get(&x)),
        &to_f64_vec(&theirs.get(&x)),
        1e-12,
        "∂x",
    );
    close(
        &to_f64_vec(&ours.get(&w)),
        &to_f64_vec(&theirs.get(&w)),
        1e-12,
        "∂W",
    );
    close(
        &to_f64_vec(&ours.get(&b)),
        &to_f64_vec(&theirs.get(&b)),
        1e-12,
        "∂b",
    );
}

/// Wide enough that the forward product (inner 300) and, on AVX-512 machines, `∂x`
/// (inner 260) take the column-major path (computed transposed, then transposed back
/// with the bias, or added into `∂x`; elsewhere `∂x` is the row-major product); `x` is
/// used a second time so that `∂x` must accumulate.
#[test]
fn fused_linear_matches_dfdx_on_the_column_major_path() {
    let dev = Cpu::seed_from_u64(4);
    let x: Tensor<(usize, Const<300>), f64, Cpu> = dev.sample_normal_like(&(5, Const::<300>));
    let w: Tensor<Rank2<260, 300>, f64, Cpu> = dev.sample_normal();
    let b: Tensor<Rank1<260>, f64, Cpu> = dev.sample_normal();

    let xt = x.trace(Gradients::leaky());
    let y = linear(xt.with_empty_tape(), &w, &b).unwrap();
    let y_ours = to_f64_vec(&y);
    let ours = (weighted_sum(y) + weighted_sum(xt)).backward();
    let xt = x.clone().trace(Gradients::leaky());
    let y = xt.with_empty_tape().matmul(
        w.retaped::<OwnedTape<f64, Cpu>>()
            .permute::<_, Axes2<1, 0>>(),
    ) + b
        .retaped::<OwnedTape<f64, Cpu>>()
        .broadcast_like(&(5, Const::<260>));
    let y_dfdx = to_f64_vec(&y);
    let theirs = (weighted_sum(y) + weighted_sum(xt)).backward();

    close(&y_ours, &y_dfdx, 1e-12, "y");
    for (what, a, b) in [
        ("∂x", to_f64_vec(&ours.get(&x)), to_f64_vec(&theirs.get(&x))),
        ("∂W", to_f64_vec(&ours.get(&w)), to_f64_vec(&theirs.get(&w))),
        ("∂b", to_f64_vec(&ours.get(&b)), to_f64_vec(&theirs.get(&b))),
    ] {
        close(&a, &b, 1e-12, what);
    }
}

#[test]
fn simd_product_matches_the_naive_product_on_the_reference_shapes() {
    // The reference VAE's first layer: (128 × 784) · (784 × 400), in f32.
    let dev = Cpu::seed_from_u64(5);
    let x: Tensor<(usize, Const<784>), f32, Cpu> = dev.sample_uniform_like(&(128, Const::<784>));
    let w: Tensor<Rank2<400, 784>, f32, Cpu> = dev.sample_normal();
    let b: Tensor<Rank1<400>, f32, Cpu> = dev.zeros();
    let y = to_f64_vec(&linear(x.clone(), &w, &b).unwrap());
    let xs = to_f64_vec(&x);
    let ws = to_f64_vec(&w);
    // Wᵀ as a row-major 784 × 400 matrix.
    let mut wt = vec![0.0; 784 * 400];
    for o in 0..400 {
        for i in 0..784 {
            wt[i * 400 + o] = ws[o * 784 + i];
        }
    }
    let want = matmul_naive(&xs, &wt, (128, 784, 400));
    // f32 accumulation over 784 products of magnitude ≤ ~3: well inside 1e-4 relative.
    close(&y, &want, 1e-4, "x·Wᵀ");
    println!("SIMD level: {}", latent::kernels::simd_level());
}

#[test]
fn fused_bernoulli_log_prob_matches_bce_with_logits() {
    let dev = Cpu::seed_from_u64(9);
    let l0: Tensor<(usize, Const<6>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    let mut l = to_f64_vec(&l0);
    l[0] = 60.0; // extreme logits: exact softplus needed
    l[1] = -60.0;
    let l = dev.tensor_from_vec(
        l.iter().map(|v| v * 3.0).collect::<Vec<_>>(),
        (4, Const::<6>),
    );
    let x: Tensor<(usize, Const<6>), f64, Cpu> = dev.sample_uniform_like(&(4, Const));

    let ours = bernoulli_log_prob(
        l.trace(Gradients::leaky()),
        x.clone().put_tape(OwnedTape::default()),
    );
    let v_ours = to_f64_vec(&ours);
    let g_ours = weighted_sum(ours).backward();
    let theirs = -l
        .trace(Gradients::leaky())
        .bce_with_logits(x.clone().put_tape(OwnedTape::default()))
        .sum::<(usize,), Axis<1>>();
    let v_theirs = to_f64_vec(&theirs);
    let g_theirs = weighted_sum(theirs).backward();
    close(&v_ours, &v_theirs, 1e-12, "log p");
    close(
        &to_f64_vec(&g_ours.get(&l)),
        &to_f64_vec(&g_theirs.get(&l)),
        1e-12,
        "∂ℓ",
    );

    // f32 against the f64 values: within f32 rounding of a 6-term sum.
    let l32: Tensor<(usize, Const<6>), f32, Cpu> = l.to_dtype();
    let x32: Tensor<(usize, Const<6>), f32, Cpu> = x.to_dtype();
    close(
        &to_f64_vec(&bernoulli_log_prob(l32, x32)),
        &v_theirs,
        1e-5,
        "log p (f32)",
    );
}

/// A deterministic loss for the replica test: the Bernoulli reconstruction of the
/// images decoded from the guide's mean (no `ε`, no binarization).
#[derive(Clone)]
struct MeanReconstruction;

type Vae = MlpVae<Const<784>, Const<64>, Const<4>, f32, Cpu>;

impl Task<f32, Cpu, Vae> for MeanReconstruction {
    fn loss(
        &mut self,
        model: &Vae,
        batch: Batch<'_, Cpu>,
        grads: Gradients<f32, Cpu>,
        _progress: Progress,
    ) -> Result<Tensor<(), f32, Cpu, OwnedTape<f32, Cpu>>> {
        let x = batch.images::<Const<784>, f32>()?;
        let q = LatentVariableModel::<f32, Cpu, OwnedTape<f32, Cpu>>::guide(
            model,
            x.clone().traced(grads),
        )?;
        let p = model.likelihood(q.loc)?;
        Ok(-p.log_prob(x.retaped())?.mean::<(), Axis<0>>())
    }
    fn evaluate(&mut self, _: &Vae, _: &latent::data::Dataset, _: &Cpu) -> Result<EvalReport> {
        unreachable!("not evaluated")
    }
    fn describe(&self) -> String {
        "mean reconstruction".into()
    }
}

#[test]
fn replica_gradients_sum_to_the_whole_batch_gradient() {
    let data = embedded().unwrap().train.take(37);
    let dev = Cpu::seed_from_u64(1);
    let model: Vae = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let idx: Vec<usize> = (0..37).collect();
    let progress = Progress {
        step: 0,
        epoch: 1,
        kl_weight: 1.0,
    };
    let grad_with = |threads: usize| {
        let mut dp = DataParallel::new(&model, threads, 0).unwrap();
        assert_eq!(dp.replicas(), threads);
        let (loss, g) = dp
            .gradients(
                &model,
                &mut MeanReconstruction,
                &data,
                &idx,
                None::<&mut rand::rngs::StdRng>,
                &dev,
                model.alloc_grads(),
                progress,
            )
            .unwrap();
        let w = &model.guide.encoder.0.weight;
        let v = &model.decoder.2.bias;
        (loss, to_f64_vec(&g.get(w)), to_f64_vec(&g.get(v)))
    };
    let (l1, w1, b1) = grad_with(1);
    for threads in [2, 3] {
        let (l, w, b) = grad_with(threads);
        // Same sums in another order: f32 summation tolerance.
        assert!(
            (l - l1).abs() <= 1e-4 * l1.abs(),
            "{threads} replicas: loss {l} vs {l1}"
        );
        close(&w, &w1, 1e-4, "∂W (encoder)");
        close(&b, &b1, 1e-4, "∂b (decoder)");
        assert!(
            w1.iter().any(|v| v.abs() > 1e-4),
            "the gradient is not trivially zero"
        );
    }
}

#[test]
fn observed_data_gets_no_input_gradient_and_the_same_parameter_gradients() {
    let dev = Cpu::seed_from_u64(4);
    let x: Tensor<(usize, Const<7>), f32, Cpu> = dev.sample_normal_like(&(5, Const));
    let w: Tensor<Rank2<3, 7>, f32, Cpu> = dev.sample_normal();
    let b: Tensor<Rank1<3>, f32, Cpu> = dev.sample_normal();
    let loss = |y: Tensor<(usize, Const<3>), f32, Cpu, OwnedTape<f32, Cpu>>| y.square().sum();

    let traced = loss(linear(x.clone().traced(Gradients::leaky()), &w, &b).unwrap()).backward();
    let observed =
        loss(linear(latent::observed(x.clone(), Gradients::leaky()), &w, &b).unwrap()).backward();

    assert_eq!(to_f64_vec(&traced.get(&w)), to_f64_vec(&observed.get(&w)));
    assert_eq!(to_f64_vec(&traced.get(&b)), to_f64_vec(&observed.get(&b)));
    assert!(to_f64_vec(&traced.get(&x)).iter().any(|v| *v != 0.0));
    assert!(to_f64_vec(&observed.get(&x)).iter().all(|v| *v == 0.0));
    // A different tensor with equal values is not observed.
    let other = dev.tensor_from_vec(x.as_vec(), (5, Const::<7>));
    let g = loss(linear(other.clone().traced(Gradients::leaky()), &w, &b).unwrap()).backward();
    assert_eq!(to_f64_vec(&g.get(&other)), to_f64_vec(&traced.get(&x)));
}

#[test]
fn fused_affine_rows_and_gather_rows_match_dfdx_in_values_and_gradients() {
    use latent::kernels::{affine_rows, gather_rows};
    let dev = Cpu::seed_from_u64(8);
    let x: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    let w: Tensor<Rank3<2, 3, 5>, f64, Cpu> = dev.sample_normal(); // 6 × 5 row-major
    let b: Tensor<Rank1<5>, f64, Cpu> = dev.sample_normal();
    // Rows 3, 0, pad, 1, 3, 2, pad, 0 of x, two per output row: (4, 6).
    let idx = [3, 0, 4, 1, 3, 2, 9, 0];

    let ours = {
        let cols = gather_rows(x.trace(Gradients::leaky()), &idx).unwrap();
        affine_rows(cols.reshape_like(&(4, 6)), &w, &b).unwrap()
    };
    let y_ours = to_f64_vec(&ours);
    let g_ours = weighted_sum(ours).backward();

    let theirs = {
        let padded = (
            x.trace(Gradients::leaky()),
            dev.zeros_like(&(1, Const::<3>)),
        )
            .concat_along(Axis::<0>);
        let i: Vec<usize> = idx.iter().map(|&i| i.min(4)).collect();
        let cols = padded
            .gather(dev.tensor_from_vec(i, (8,)))
            .reshape_like(&(4, 6));
        let w2 = w
            .retaped::<OwnedTape<f64, Cpu>>()
            .reshape_like(&(6, Const::<5>));
        cols.matmul(w2)
            + b.retaped::<OwnedTape<f64, Cpu>>()
                .broadcast_like(&(4, Const::<5>))
    };
    let y_theirs = to_f64_vec(&theirs);
    let g_theirs = weighted_sum(theirs).backward();

    close(&y_ours, &y_theirs, 1e-12, "y");
    close(
        &to_f64_vec(&g_ours.get(&x)),
        &to_f64_vec(&g_theirs.get(&x)),
        1e-12,
        "∂x",
    );
    close(
        &to_f64_vec(&g_ours.get(&w)),
        &to_f64_vec(&g_theirs.get(&w)),
        1e-12,
        "∂W",
    );
    close(
        &to_f64_vec(&g_ours.get(&b)),
        &to_f64_vec(&g_theirs.get(&b)),
        1e-12,
        "∂b",
    );
}

/// The shift-and-add convolution equals the im2col form (gather, then the affine map)
/// in values and in the gradients of the input, kernel and bias: a 3×3 "same"
/// convolution from 3 to 2 channels on two 4×5 images, whose taps include padding.
#[test]
fn shift_add_conv_matches_the_im2col_convolution_in_values_and_gradients() {
    use latent::kernels::{affine_rows, gather_rows, shift_add_conv};
    let dev = Cpu::seed_from_u64(9);
    let (b, h, w) = (2usize, 4usize, 5usize);
    let n = b * h * w;
    let x: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(n, Const));
    let k: Tensor<Rank4<3, 3, 3, 2>, f64, Cpu> = dev.sample_normal(); // (kh, kw, I, O)
    let bias: Tensor<Rank1<2>, f64, Cpu> = dev.sample_normal();
    let mut taps = Vec::new();
    for bi in 0..b {
        for i in 0..h as isize {
            for j in 0..w as isize {
                for di in -1..=1isize {
                    for dj in -1..=1isize {
                        let (y, xx) = (i + di, j + dj);
                        let inside = y >= 0 && xx >= 0 && y < h as isize && xx < w as isize;
                        taps.push(if inside {
                            bi * h * w + y as usize * w + xx as usize
                        } else {
                            n + 3 // padding: any index past the last row
                        });
                    }
                }
            }
        }
    }
    let ours = shift_add_conv(x.trace(Gradients::leaky()), &k, &bias, &taps).unwrap();
    let y_ours = to_f64_vec(&ours);
    let g_ours = weighted_sum(ours).backward();
    let theirs = {
        let cols = gather_rows(x.trace(Gradients::leaky()), &taps).unwrap();
        affine_rows(cols.reshape_like(&(n, 27)), &k, &bias).unwrap()
    };
    let y_theirs = to_f64_vec(&theirs);
    let g_theirs = weighted_sum(theirs).backward();
    close(&y_ours, &y_theirs, 1e-12, "y");
    close_conv_gradients(&g_ours, &g_theirs, &x, &k, &bias);
}

/// Two convolutions' gradients of the input, kernel and bias agree to 1e-12, and none
/// is all zero.
fn close_conv_gradients<C: Dim, K: Shape, O: Dim>(
    ours: &Gradients<f64, Cpu>,
    theirs: &Gradients<f64, Cpu>,
    x: &Tensor<(usize, C), f64, Cpu>,
    kernel: &Tensor<K, f64, Cpu>,
    bias: &Tensor<(O,), f64, Cpu>,
) {
    for (what, a, b) in [
        ("∂x", to_f64_vec(&ours.get(x)), to_f64_vec(&theirs.get(x))),
        (
            "∂W",
            to_f64_vec(&ours.get(kernel)),
            to_f64_vec(&theirs.get(kernel)),
        ),
        (
            "∂b",
            to_f64_vec(&ours.get(bias)),
            to_f64_vec(&theirs.get(bias)),
        ),
    ] {
        assert!(a.iter().any(|v| *v != 0.0), "{what} is not all zero");
        close(&a, &b, 1e-12, what);
    }
}

/// The im2col convolution as one operation agrees with its composition from
/// `gather_rows` and `affine_rows` (each checked against dfdx above) in values and in
/// the gradients of the input, kernel and bias: a 4×4 stride-2 convolution with
/// padding 1 from 3 to 5 channels on two 6×6 images (the encoder's kind of layer).
#[test]
fn im2col_conv_matches_its_composition_in_values_and_gradients() {
    use latent::kernels::{affine_rows, gather_rows, im2col_conv};
    let dev = Cpu::seed_from_u64(11);
    let (b, h, w, k, s, p) = (2usize, 6usize, 6usize, 4isize, 2isize, 1isize);
    let n = b * h * w;
    let x: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(n, Const));
    let kernel: Tensor<Rank4<4, 4, 3, 5>, f64, Cpu> = dev.sample_normal(); // (kh, kw, I, O)
    let bias: Tensor<Rank1<5>, f64, Cpu> = dev.sample_normal();
    let (ho, wo) = (
        (h as isize + 2 * p - k) / s + 1,
        (w as isize + 2 * p - k) / s + 1,
    );
    let mut taps = Vec::new();
    for bi in 0..b {
        for i in 0..ho {
            for j in 0..wo {
                for di in 0..k {
                    for dj in 0..k {
                        let (y, xx) = (i * s + di - p, j * s + dj - p);
                        let inside = y >= 0 && xx >= 0 && y < h as isize && xx < w as isize;
                        taps.push(if inside {
                            bi * h * w + y as usize * w + xx as usize
                        } else {
                            n // padding
                        });
                    }
                }
            }
        }
    }
    let m = taps.len() / 16;
    assert!(taps.contains(&n), "the taps include padding");
    let ours = im2col_conv(x.trace(Gradients::leaky()), &kernel, &bias, &taps).unwrap();
    assert_eq!(ours.shape().0, m);
    let y_ours = to_f64_vec(&ours);
    let g_ours = weighted_sum(ours).backward();
    let theirs = {
        let cols = gather_rows(x.trace(Gradients::leaky()), &taps).unwrap();
        affine_rows(cols.reshape_like(&(m, 48)), &kernel, &bias).unwrap()
    };
    let y_theirs = to_f64_vec(&theirs);
    let g_theirs = weighted_sum(theirs).backward();
    close(&y_ours, &y_theirs, 1e-12, "y");
    close_conv_gradients(&g_ours, &g_theirs, &x, &kernel, &bias);
}

#[test]
fn test_nll_across_threads_is_reproducible_and_agrees_with_one_thread() {
    use latent::eval::{test_nll, EvalOptions};
    let data = embedded().unwrap().test.take(40);
    let data = latent::train::prepare_test(&data, latent::data::Binarization::Dynamic, 0);
    let dev = Cpu::seed_from_u64(2);
    let model: Vae = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let nll = |threads: usize| {
        let options = EvalOptions {
            k: 200,
            batch: 10,
            chunk: 50,
            threads,
            ..Default::default()
        };
        test_nll(&model, &data, &Cpu::seed_from_u64(7), &options).unwrap()
    };
    let (one, two, again) = (nll(1), nll(2), nll(2));
    assert_eq!(two, again, "same seed and thread count, same estimate");
    let tol = 5.0 * (one.stderr.powi(2) + two.stderr.powi(2)).sqrt();
    assert!(
        (one.nll - two.nll).abs() <= tol,
        "1 thread {} ± {}, 2 threads {} ± {}",
        one.nll,
        one.stderr,
        two.nll,
        two.stderr
    );
    assert!(
        one.nll.is_finite() && one.nll > 100.0,
        "an untrained model's NLL in nats"
    );
}

/// `rows × C` fair 0/1 draws from `dev` (binary data for the Bernoulli term).
fn coin_flips<const C: usize>(dev: &Cpu, rows: usize) -> Tensor<(usize, Const<C>), f32, Cpu> {
    let u: Tensor<(usize, Const<C>), f32, Cpu> = dev.sample_uniform_like(&(rows, Const));
    let bits = u
        .as_vec()
        .into_iter()
        .map(|v| if v < 0.5 { 0.0 } else { 1.0 });
    dev.tensor_from_vec(bits.collect(), (rows, Const::<C>))
}

/// The fused Bernoulli log-likelihood also keeps the promise of `latent::observed`: no
/// gradient with respect to observed targets, the same gradient for the logits.
#[test]
fn observed_targets_get_no_gradient_from_the_bernoulli_likelihood() {
    let dev = Cpu::seed_from_u64(6);
    let logits: Tensor<(usize, Const<37>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
    let x = coin_flips::<37>(&dev, 4);
    let run = |observed: bool| {
        let l = logits.clone().traced(Gradients::leaky());
        let t = if observed {
            latent::observed(x.clone(), Gradients::leaky())
        } else {
            x.clone().traced(Gradients::leaky())
        };
        bernoulli_log_prob(l, t).sum().backward()
    };
    let (traced, observed) = (run(false), run(true));
    assert_eq!(
        to_f64_vec(&traced.get(&logits)),
        to_f64_vec(&observed.get(&logits))
    );
    // ∂/∂x of Σ x ℓ − softplus(ℓ) is ℓ: not zero unless asked for nothing.
    assert_eq!(to_f64_vec(&traced.get(&x)), to_f64_vec(&logits));
    assert!(to_f64_vec(&observed.get(&x)).iter().all(|v| *v == 0.0));
}

/// `repeat_rows` on the `Cpu` (block copies, and `gather_rows`'s scatter-add with a
/// tape) equals dfdx's broadcast and reshape, in values with and without a tape and in
/// the gradient (each row's gradient is the sum over its copies).
#[test]
fn repeat_rows_matches_dfdx_broadcast_and_reshape() {
    use latent::ops::repeat_rows;
    let dev = Cpu::seed_from_u64(11);
    let t: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(3, Const::<5>));
    let n = 4;
    let dfdx_way = |t: Tensor<(usize, Const<5>), f64, Cpu, OwnedTape<f64, Cpu>>| {
        t.broadcast_like::<_, Axis<0>>(&(n, 3, Const::<5>))
            .reshape_like(&(n * 3, Const::<5>))
    };
    let ours = repeat_rows(t.clone(), n);
    let theirs = dfdx_way(t.leaky_trace()).retaped::<NoneTape>();
    assert_eq!(ours.shape().0, 12);
    assert_eq!(ours.as_vec(), theirs.as_vec());
    // Row s·batch + b is row b.
    assert_eq!(
        ours.as_vec()[(2 * 3 + 1) * 5..(2 * 3 + 2) * 5],
        t.as_vec()[5..10]
    );
    let g_ours = weighted_sum(repeat_rows(t.leaky_trace(), n)).backward();
    let g_theirs = weighted_sum(dfdx_way(t.leaky_trace())).backward();
    close(
        &g_ours.get(&t).as_vec(),
        &g_theirs.get(&t).as_vec(),
        1e-12,
        "∂t",
    );
    assert_eq!(repeat_rows(t.clone(), 1).as_vec(), t.as_vec());
}

/// The repeated rows of observed data are observed too: the Bernoulli term of a
/// multi-sample objective (its targets `repeat_rows(x, k)`) leaves their gradient at zero
/// and gives the logits the same gradient as with plain targets.
#[test]
fn repeated_observed_targets_get_no_gradient() {
    use latent::ops::repeat_rows;
    let dev = Cpu::seed_from_u64(12);
    let x = coin_flips::<9>(&dev, 2);
    let logits: Tensor<(usize, Const<9>), f32, Cpu> = dev.sample_normal_like(&(6, Const));
    let run = |observed: bool| {
        let data = if observed {
            latent::observed(x.clone(), Gradients::leaky()).retaped::<NoneTape>()
        } else {
            x.clone()
        };
        let targets = repeat_rows(data, 3);
        let l = logits.clone().traced(Gradients::leaky());
        let g = bernoulli_log_prob(l, targets.clone().traced(Gradients::leaky()))
            .sum()
            .backward();
        (to_f64_vec(&g.get(&logits)), to_f64_vec(&g.get(&targets)))
    };
    let ((l_plain, t_plain), (l_obs, t_obs)) = (run(false), run(true));
    assert_eq!(l_plain, l_obs);
    // ∂/∂x of Σ x ℓ − softplus(ℓ) is ℓ for plain targets, nothing for observed ones.
    assert_eq!(t_plain, to_f64_vec(&logits));
    assert!(t_obs.iter().all(|v| *v == 0.0));
}

/// dfdx's gated activation of rows `[a, b]`: `a.tanh() * b.sigmoid()` of the halves.
fn gate_by_dfdx<E: Dtype, T: Tape<E, Cpu>>(
    pre: Tensor<(usize, usize), E, Cpu, T>,
    c: usize,
) -> Tensor<(usize, usize), E, Cpu, T>
where
    Cpu: Device<E>,
{
    let b = latent::ops::columns(pre.with_empty_tape(), c..2 * c).unwrap();
    let a = latent::ops::columns(pre, 0..c).unwrap();
    a.tanh() * b.sigmoid()
}

/// The fused `tanh(a) ⊙ σ(b)` equals dfdx's unfused expression in values (with and
/// without a tape) and in the gradient, in f64 (to rounding) and f32 (to its
/// polynomial's few ulps), for widths that are and are not multiples of the SIMD
/// lanes, pre-activations from −20 to 20 and near 0; an odd width is refused.
#[test]
fn gated_activation_matches_dfdx_tanh_times_sigmoid() {
    use latent::kernels::gated_activation;
    let dev = Cpu::seed_from_u64(13);
    for c in [1usize, 16, 37] {
        let n = 5;
        let v: Vec<f64> = (0..n * 2 * c)
            .map(|i| match i % 4 {
                0 => ((i * 7919) % 400) as f64 / 10.0 - 20.0,
                1 => ((i * 31) % 200) as f64 * 1e-4 - 1e-2,
                _ => ((i * 613) % 1000) as f64 / 250.0 - 2.0,
            })
            .collect();
        let pre = dev.tensor_from_vec(v.clone(), (n, 2 * c));
        let ours = gated_activation(pre.clone()).unwrap();
        let theirs = gate_by_dfdx(pre.clone(), c);
        assert_eq!(ours.shape(), &(n, c));
        close(&ours.as_vec(), &theirs.as_vec(), 1e-15, "y (f64)");
        let g_ours = weighted_sum(gated_activation(pre.leaky_trace()).unwrap()).backward();
        let g_theirs = weighted_sum(gate_by_dfdx(pre.leaky_trace(), c)).backward();
        close(
            &g_ours.get(&pre).as_vec(),
            &g_theirs.get(&pre).as_vec(),
            1e-14,
            "∂pre (f64)",
        );

        // f32: the polynomial tanh and σ, the same gradient formula.
        let pre32 = dev.tensor_from_vec(v.iter().map(|&x| x as f32).collect(), (n, 2 * c));
        let y32 = gated_activation(pre32.clone()).unwrap();
        let ref32 = gate_by_dfdx(pre32.clone(), c);
        close(&to_f64_vec(&y32), &to_f64_vec(&ref32), 1e-6, "y (f32)");
        let taped = gated_activation(pre32.leaky_trace()).unwrap();
        assert_eq!(to_f64_vec(&taped), to_f64_vec(&y32), "taped = untaped");
        let g32 = taped.sum().backward();
        let gref = gate_by_dfdx(pre32.leaky_trace(), c).sum().backward();
        close(
            &to_f64_vec(&g32.get(&pre32)),
            &to_f64_vec(&gref.get(&pre32)),
            2e-6,
            "∂pre (f32)",
        );
    }
    let odd = dev.tensor_from_vec(vec![0.0f32; 6], (2usize, 3usize));
    assert!(matches!(
        gated_activation(odd),
        Err(latent::Error::NotAMultiple { .. })
    ));
}

/// The fused `a ⊙ σ(b)` equals dfdx's `a * b.sigmoid()` in values (with and without a
/// tape) and in both inputs' gradients, when each input carries its own tape as in a
/// gated layer, in f64 (to rounding) and f32 (to its polynomial's few ulps), for widths
/// that are and are not multiples of the SIMD lanes; a gate of another shape is refused.
#[test]
fn gated_linear_unit_matches_dfdx_value_times_sigmoid() {
    use latent::kernels::gated_linear_unit;
    let dev = Cpu::seed_from_u64(14);
    for c in [1usize, 16, 37] {
        let n = 5;
        let values = |shift: usize| -> Vec<f64> {
            (0..n * c)
                .map(|i| match (i + shift) % 3 {
                    0 => (((i + shift) * 7919) % 400) as f64 / 10.0 - 20.0,
                    1 => (((i + shift) * 31) % 200) as f64 * 1e-4 - 1e-2,
                    _ => (((i + shift) * 613) % 1000) as f64 / 250.0 - 2.0,
                })
                .collect()
        };
        let (va, vb) = (values(0), values(1));
        let a = dev.tensor_from_vec(va.clone(), (n, c));
        let b = dev.tensor_from_vec(vb.clone(), (n, c));
        let ours = gated_linear_unit(a.clone(), b.clone()).unwrap();
        close(
            &ours.as_vec(),
            &(a.clone() * b.clone().sigmoid()).as_vec(),
            1e-15,
            "y (f64)",
        );
        // Each input on its own tape, merged by the operation (as in `GatedLinear`).
        let ta = a.leaky_trace();
        let tb = b.clone().put_tape(OwnedTape::default());
        let g_ours = weighted_sum(gated_linear_unit(ta, tb).unwrap()).backward();
        let g_theirs = weighted_sum(a.leaky_trace() * b.leaky_trace().sigmoid()).backward();
        for (t, what) in [(&a, "∂a (f64)"), (&b, "∂b (f64)")] {
            close(
                &g_ours.get(t).as_vec(),
                &g_theirs.get(t).as_vec(),
                1e-14,
                what,
            );
        }

        let a32 = dev.tensor_from_vec(va.iter().map(|&x| x as f32).collect(), (n, c));
        let b32 = dev.tensor_from_vec(vb.iter().map(|&x| x as f32).collect(), (n, c));
        let y32 = gated_linear_unit(a32.clone(), b32.clone()).unwrap();
        let ref32 = a32.clone() * b32.clone().sigmoid();
        close(&to_f64_vec(&y32), &to_f64_vec(&ref32), 1e-6, "y (f32)");
        let taped = gated_linear_unit(
            a32.leaky_trace(),
            b32.clone().put_tape(OwnedTape::default()),
        )
        .unwrap();
        assert_eq!(to_f64_vec(&taped), to_f64_vec(&y32), "taped = untaped");
        let g32 = taped.sum().backward();
        let gref = (a32.leaky_trace() * b32.leaky_trace().sigmoid())
            .sum()
            .backward();
        for (t, what) in [(&a32, "∂a (f32)"), (&b32, "∂b (f32)")] {
            close(
                &to_f64_vec(&g32.get(t)),
                &to_f64_vec(&gref.get(t)),
                2e-6,
                what,
            );
        }
    }
    let a = dev.tensor_from_vec(vec![0.0f32; 6], (2usize, 3usize));
    let b = dev.tensor_from_vec(vec![0.0f32; 4], (2usize, 2usize));
    assert!(matches!(
        gated_linear_unit(a, b),
        Err(latent::Error::ShapeMismatch { .. })
    ));
}

/// The fused categorical log-probability equals dfdx's `(ℓ.log_softmax() * x).sum(1)` in
/// values (with and without a tape) and in the gradients of the logits and the targets,
/// in f64 (to rounding) and f32 (to its polynomial exponential), for one-hot and soft
/// targets, logits up to ±60 and class counts that are and are not multiples of the
/// SIMD lanes; observed targets get no gradient.
#[test]
fn categorical_log_prob_matches_dfdx_log_softmax() {
    use latent::kernels::categorical_log_prob;
    let dev = Cpu::seed_from_u64(14);
    for k in [1usize, 16, 37, 256] {
        let n = 6;
        let l: Vec<f64> = (0..n * k)
            .map(|i| match i % 3 {
                0 => ((i * 7919) % 1200) as f64 / 10.0 - 60.0,
                _ => ((i * 613) % 1000) as f64 / 250.0 - 2.0,
            })
            .collect();
        // Rows 0..3 one-hot, rows 3..6 soft weights summing to 2.
        let x: Vec<f64> = (0..n * k)
            .map(|i| {
                let (r, j) = (i / k, i % k);
                if r < 3 {
                    f64::from(j == (r * 5) % k)
                } else {
                    2.0 / k as f64
                }
            })
            .collect();
        let logits = dev.tensor_from_vec(l.clone(), (n, k));
        let xs = dev.tensor_from_vec(x.clone(), (n, k));
        let by_dfdx =
            |l: Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
             x: Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>| {
                (l.log_softmax::<Axis<1>>() * x).sum::<(usize,), Axis<1>>()
            };
        let ours = categorical_log_prob(logits.clone(), xs.clone());
        let theirs = by_dfdx(logits.leaky_trace(), xs.leaky_trace());
        close(&ours.as_vec(), &theirs.as_vec(), 1e-13, "log p (f64)");
        let g_ours = weighted_sum(categorical_log_prob(
            logits.leaky_trace(),
            xs.clone().traced(Gradients::leaky()),
        ))
        .backward();
        let g_theirs = weighted_sum(by_dfdx(
            logits.leaky_trace(),
            xs.clone().traced(Gradients::leaky()),
        ))
        .backward();
        close(
            &g_ours.get(&logits).as_vec(),
            &g_theirs.get(&logits).as_vec(),
            1e-13,
            "∂ℓ (f64)",
        );
        close(
            &g_ours.get(&xs).as_vec(),
            &g_theirs.get(&xs).as_vec(),
            1e-13,
            "∂x (f64)",
        );

        let l32 = dev.tensor_from_vec(l.iter().map(|&v| v as f32).collect(), (n, k));
        let x32 = dev.tensor_from_vec(x.iter().map(|&v| v as f32).collect(), (n, k));
        let y32 = categorical_log_prob(l32.clone(), x32.clone());
        let ref32 = (l32.leaky_trace().log_softmax::<Axis<1>>() * x32.leaky_trace())
            .sum::<(usize,), Axis<1>>();
        close(&to_f64_vec(&y32), &to_f64_vec(&ref32), 2e-6, "log p (f32)");
        let taped =
            categorical_log_prob(l32.leaky_trace(), x32.clone().put_tape(Default::default()));
        assert_eq!(to_f64_vec(&taped), to_f64_vec(&y32), "taped = untaped");
        let g32 = taped.sum().backward();
        let gref = (l32.leaky_trace().log_softmax::<Axis<1>>() * x32.clone())
            .sum::<(usize,), Axis<1>>()
            .sum()
            .backward();
        close(
            &to_f64_vec(&g32.get(&l32)),
            &to_f64_vec(&gref.get(&l32)),
            1e-6,
            "∂ℓ (f32)",
        );
        // Observed targets: the same ∂ℓ, no ∂x.
        let obs = latent::observed(x32.clone(), Gradients::leaky()).retaped::<NoneTape>();
        let g_obs = categorical_log_prob(l32.leaky_trace(), obs.clone().traced(Gradients::leaky()))
            .sum()
            .backward();
        assert_eq!(to_f64_vec(&g_obs.get(&l32)), to_f64_vec(&g32.get(&l32)));
        assert!(to_f64_vec(&g_obs.get(&obs)).iter().all(|v| *v == 0.0));
    }
}
