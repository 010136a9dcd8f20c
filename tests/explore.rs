//! The latent paths behind the generate pictures (interpolation, traversal) and the
//! decode/reconstruct helpers, against values worked out by hand and the model's own
//! likelihood.

use dfdx::prelude::*;
use latent::eval::explore::{column_std, decode, descending, interpolate, reconstruct, traverse};
use latent::{Distribution, Error, LatentVariableModel};
use latent_models::{mlp_vae, MlpVae};

#[test]
fn interpolation_runs_evenly_from_one_end_to_the_other() {
    let p = interpolate(&[0.0, 2.0], &[1.0, -2.0], 5).unwrap();
    let want = [0.0, 2.0, 0.25, 1.0, 0.5, 0.0, 0.75, -1.0, 1.0, -2.0];
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{p:?}");
    }
    assert_eq!(interpolate(&[3.0], &[5.0], 1).unwrap(), vec![3.0]);
    assert!(matches!(
        interpolate(&[0.0], &[1.0, 2.0], 3),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        interpolate(&[0.0], &[1.0], 0),
        Err(Error::InvalidSetting { .. })
    ));
}

#[test]
fn traversal_moves_one_coordinate_per_row() {
    // Around (1, −1, 0) with spreads (0.5, 2, 1): dimension 1 then 0, radius 3.
    let t = traverse(&[1.0, -1.0, 0.0], &[0.5, 2.0, 1.0], &[1, 0], 3, 3.0).unwrap();
    let want = [
        1.0, -7.0, 0.0, 1.0, -1.0, 0.0, 1.0, 5.0, 0.0, // dimension 1: −1 ± 6
        -0.5, -1.0, 0.0, 1.0, -1.0, 0.0, 2.5, -1.0, 0.0, // dimension 0: 1 ± 1.5
    ];
    assert_eq!(t, want);
    assert!(matches!(
        traverse(&[0.0, 0.0], &[1.0, 1.0], &[2], 3, 3.0),
        Err(Error::InvalidSetting { .. })
    ));
    assert!(matches!(
        traverse(&[0.0, 0.0], &[1.0], &[0], 3, 3.0),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn spreads_and_orders() {
    // Columns (1, 3) and (2, 2): population standard deviations 1 and 0.
    assert_eq!(column_std(&[1.0, 2.0, 3.0, 2.0], 2), vec![1.0, 0.0]);
    assert_eq!(descending(&[0.5, 2.0, 0.5, 1.0]), vec![1, 3, 0, 2]);
}

#[test]
fn decode_and_reconstruct_are_the_likelihood_means() {
    let dev = Cpu::seed_from_u64(3);
    let model: MlpVae<Const<784>, usize, usize, f64, Cpu> = mlp_vae(&dev, (Const, 32, 4)).unwrap();
    let z = [0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25];
    let ours = decode(&model, &z, 4, &dev).unwrap().as_vec();
    let zt = dev.tensor_from_vec(z.to_vec(), (2, 4usize));
    let theirs = model.likelihood(zt).unwrap().mean().as_vec();
    assert_eq!(ours, theirs);
    assert!(ours.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(matches!(
        decode(&model, &z[..7], 4, &dev),
        Err(Error::NotAMultiple { .. })
    ));

    let x: Tensor<(usize, Const<784>), f64, Cpu> = dev.sample_uniform_like(&(3, Const));
    let r = reconstruct(&model, x.clone()).unwrap();
    let mu = model.guide(x).unwrap().mean();
    assert_eq!(r.as_vec(), model.likelihood(mu).unwrap().mean().as_vec());
    assert_eq!(r.shape().0, 3);
}
