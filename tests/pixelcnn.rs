//! The gated PixelCNN prior over code grids: exactly normalized, autoregressive (no
//! leak, no blind spot), and it learns dependence an independent prior cannot.

use latent_models::GatedPixelCnn;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = dfdx::tensor::Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

/// Σ over all 3⁴ grids of a 2×2 grid with 3 codes of p(c) is 1.
#[test]
fn sums_to_one_over_every_grid() {
    let dev = Dev::seed_from_u64(1);
    let net: GatedPixelCnn<2, 2, 2, f64, Dev> = GatedPixelCnn::new(&dev, 3, 4).unwrap();
    let all: Vec<usize> = (0..81)
        .flat_map(|n| (0..4).map(move |p| (n / 3usize.pow(p)) % 3))
        .collect();
    let total: f64 = net.log_prob(&all).unwrap().iter().map(|l| l.exp()).sum();
    assert!((total - 1.0).abs() < 1e-12, "Σ p = {total}");
}

/// Changing the code at position p leaves every factor before p unchanged (no leak of
/// the present or the future), and the upper-right neighbour two columns over changes
/// the factor at p (no blind spot, which a plain stack of masked 3×3 convolutions has).
#[test]
fn is_autoregressive_without_blind_spot() {
    let dev = Dev::seed_from_u64(2);
    let net: GatedPixelCnn<3, 5, 5, f64, Dev> = GatedPixelCnn::new(&dev, 6, 8).unwrap();
    let base: Vec<usize> = (0..25).map(|i| (i * 7 + 3) % 6).collect();
    let before = net.conditionals(&base).unwrap();
    for p in 0..25 {
        let mut changed = base.clone();
        changed[p] = (changed[p] + 1) % 6;
        let after = net.conditionals(&changed).unwrap();
        for i in 0..p {
            assert_eq!(
                before[i], after[i],
                "changing position {p} changed factor {i}"
            );
        }
    }
    // (2, 1) reads (1, 3): row above, two columns to the right.
    let (p, q) = (2 * 5 + 1, 5 + 3);
    let mut changed = base.clone();
    changed[q] = (changed[q] + 1) % 6;
    let after = net.conditionals(&changed).unwrap();
    assert_ne!(
        before[p], after[p],
        "position (2,1) does not see (1,3): a blind spot"
    );
}

/// Grids whose codes all equal the first (uniform over 4): the true entropy is ln 4 per
/// grid; an independent prior per position needs 9 ln 4 = 12.5 nats. The PixelCNN
/// learns the copying.
#[test]
fn learns_dependence_between_positions() {
    let dev = Dev::seed_from_u64(3);
    let mut net: GatedPixelCnn<3, 3, 3, f32, Dev> = GatedPixelCnn::new(&dev, 4, 16).unwrap();
    let codes: Vec<usize> = (0..2000)
        .flat_map(|n| std::iter::repeat_n(n % 4, 9))
        .collect();
    let history = net.fit(&codes, 10, 50, 3e-3, 0).unwrap();
    let nll = -net.log_prob(&codes[..400 * 9]).unwrap().iter().sum::<f64>() / 400.0;
    assert!(
        nll < 2.0,
        "NLL {nll} nats per grid (history {history:?}); ln 4 = 1.39 is the floor"
    );
    assert!(history[9] < history[0]);
    // Samples follow the rule too.
    let s = net.sample(20, &dev).unwrap();
    let copies = s.chunks(9).filter(|g| g.iter().all(|&c| c == g[0])).count();
    assert!(copies >= 16, "{copies} of 20 samples are constant grids");
    assert!(net.log_prob(&[4; 9]).is_err());
}
