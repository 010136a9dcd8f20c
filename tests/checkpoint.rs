//! Loading a checkpoint is checked against the model before anything is copied:
//! dtype, names, shapes and finiteness, each a typed error naming the problem.

use std::collections::HashMap;

use ::safetensors::tensor::{Dtype as SDtype, TensorView};
use dfdx::prelude::*;
use latent::nn::Linear;
use latent::train::{load_checkpoint, save_checkpoint};
use latent::Error;

type Layer = Linear<Const<3>, Const<2>, f32, Cpu>;

/// Writes a safetensors file of `(name, dtype, shape, bytes)` entries.
fn write(path: &std::path::Path, entries: &[(&str, SDtype, Vec<usize>, Vec<u8>)]) {
    let views: HashMap<String, TensorView> = entries
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    ::safetensors::serialize_to_file(&views, &None, path).unwrap();
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn reason(e: Error) -> String {
    match e {
        Error::Checkpoint { reason, .. } => reason,
        other => panic!("expected a checkpoint error, got {other}"),
    }
}

#[test]
fn loading_checks_dtype_names_shapes_and_values_first() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Cpu::default();
    let saved: Layer = Linear::new(&dev, Const, Const).unwrap();
    let good = dir.path().join("good.safetensors");
    save_checkpoint(&saved, &good).unwrap();
    let mut model: Layer = Linear::new(&Cpu::seed_from_u64(1), Const, Const).unwrap();
    let before = model.weight.as_vec();
    let w = f32s(&[0.5; 6]);
    let b = f32s(&[0.0; 2]);
    let p = |n: &str| dir.path().join(n);

    // The same names and shapes in f64 (a converted checkpoint): dfdx would panic.
    let w64: Vec<u8> = [0.5f64; 6].iter().flat_map(|x| x.to_le_bytes()).collect();
    let b64: Vec<u8> = [0.0f64; 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    write(
        &p("f64"),
        &[
            ("weight", SDtype::F64, vec![2, 3], w64),
            ("bias", SDtype::F64, vec![2], b64),
        ],
    );
    let r = reason(load_checkpoint(&mut model, p("f64")).unwrap_err());
    assert!(r.contains("F64") && r.contains("weight"), "{r}");

    let mut nan = w.clone();
    nan[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write(
        &p("nan"),
        &[
            ("weight", SDtype::F32, vec![2, 3], nan),
            ("bias", SDtype::F32, vec![2], b.clone()),
        ],
    );
    assert!(reason(load_checkpoint(&mut model, p("nan")).unwrap_err()).contains("non-finite"));

    write(
        &p("missing"),
        &[("weight", SDtype::F32, vec![2, 3], w.clone())],
    );
    assert!(reason(load_checkpoint(&mut model, p("missing")).unwrap_err()).contains("missing"));

    write(
        &p("extra"),
        &[
            ("weight", SDtype::F32, vec![2, 3], w.clone()),
            ("bias", SDtype::F32, vec![2], b.clone()),
            ("prior.logits", SDtype::F32, vec![2], b.clone()),
        ],
    );
    let r = reason(load_checkpoint(&mut model, p("extra")).unwrap_err());
    assert!(r.contains("unknown tensor `prior.logits`"), "{r}");

    write(
        &p("shape"),
        &[
            ("weight", SDtype::F32, vec![3, 2], w.clone()),
            ("bias", SDtype::F32, vec![2], b.clone()),
        ],
    );
    assert!(reason(load_checkpoint(&mut model, p("shape")).unwrap_err()).contains("shape"));

    std::fs::write(p("junk"), b"not a checkpoint").unwrap();
    assert!(reason(load_checkpoint(&mut model, p("junk")).unwrap_err()).contains("safetensors"));

    assert_eq!(
        model.weight.as_vec(),
        before,
        "a refused checkpoint changes nothing"
    );
    load_checkpoint(&mut model, &good).unwrap();
    assert_eq!(model.weight.as_vec(), saved.weight.as_vec());
}
