//! Real-valued data sets: `.npy`/`.npz`/CSV round trips (values, shapes, labels), typed
//! errors naming the place for NaN, infinity, non-numbers, ragged rows and labels out
//! of range, standardization fitted on the training split, and seeded splits.

#[path = "support/npy.rs"]
mod npy_file;

use std::io::Write;
use std::path::Path;

use latent::data::{load_table, read_npy, Scaler, Scaling};
use latent::Error;
use npy_file::npy;

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_npz_and_csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let x = [1.5, -2.0, 0.25, 3.0, 4.5, -0.5];
    // f64 (3, 2) and f32 of the same values, with int64 labels.
    let p64 = dir.path().join("x64.npy");
    std::fs::write(&p64, npy("<f8", &[3, 2], &f64s(&x))).unwrap();
    let p32 = dir.path().join("x32.npy");
    let f32s: Vec<u8> = x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
    std::fs::write(&p32, npy("<f4", &[3, 2], &f32s)).unwrap();
    let py = dir.path().join("y.npy");
    let y: Vec<u8> = [2i64, 0, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&py, npy("<i8", &[3], &y)).unwrap();
    assert_eq!(read_npy(&p64).unwrap(), (x.to_vec(), vec![3, 2]));
    // f64 values keep their precision (0.1 + 1e-12 is not an f32).
    let fine = dir.path().join("fine.npy");
    std::fs::write(&fine, npy("<f8", &[1, 2], &f64s(&[0.1 + 1e-12, 1.0]))).unwrap();
    let d = load_table(&fine, None, None).unwrap();
    assert_eq!(d.values.unwrap()[0], 0.1 + 1e-12);
    for p in [&p64, &p32] {
        let d = load_table(p, Some(&py), None).unwrap();
        assert_eq!((d.len(), d.dim()), (3, 2));
        assert_eq!(d.values.as_ref().unwrap(), &x.to_vec());
        assert_eq!(d.labels, vec![2, 0, 7]);
        assert!(d.is_real_valued());
    }
    // .npz with x and y.
    let pz = dir.path().join("data.npz");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&pz).unwrap());
        let opts = zip::write::FileOptions::default();
        z.start_file("x.npy", opts).unwrap();
        z.write_all(&npy("<f8", &[3, 2], &f64s(&x))).unwrap();
        z.start_file("y.npy", opts).unwrap();
        z.write_all(&npy("<i8", &[3], &y)).unwrap();
        z.finish().unwrap();
    }
    let d = load_table(&pz, None, None).unwrap();
    assert_eq!(d.values.as_ref().unwrap(), &x.to_vec());
    assert_eq!(d.labels, vec![2, 0, 7]);
    // CSV with a header and a label column in the middle.
    let pc = dir.path().join("data.csv");
    std::fs::write(&pc, "a,class,b\n1.5,2,-2\n0.25,0,3\n4.5,7,-0.5\n").unwrap();
    let d = load_table(&pc, None, Some("class")).unwrap();
    assert_eq!(d.values.as_ref().unwrap(), &x.to_vec());
    assert_eq!(d.labels, vec![2, 0, 7]);
    let by_index = load_table(&pc, None, Some("1")).unwrap();
    assert_eq!(by_index, d);
    // Without a label column every column is a feature and the labels are 0.
    let all = load_table(&pc, None, None).unwrap();
    assert_eq!((all.dim(), all.labels.clone()), (3, vec![0, 0, 0]));
}

fn bad_value(e: Error) -> (usize, usize, String) {
    match e {
        Error::BadValue {
            row,
            column,
            reason,
            ..
        } => (row, column, reason),
        other => panic!("expected a bad value, got {other:?}"),
    }
}

#[test]
fn bad_values_are_typed_errors_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let csv = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (row, column, _) =
        bad_value(load_table(csv("nan.csv", "a,b\n1,2\n3,nan\n"), None, None).unwrap_err());
    assert_eq!((row, column), (1, 1));
    let (row, column, _) =
        bad_value(load_table(csv("inf.csv", "a,b\ninf,2\n"), None, None).unwrap_err());
    assert_eq!((row, column), (0, 0));
    let (row, column, reason) =
        bad_value(load_table(csv("word.csv", "a,b\n1,2\n3,4\n5,six\n"), None, None).unwrap_err());
    assert_eq!((row, column), (2, 1));
    assert!(reason.contains("`six` is not a number"), "{reason}");
    let (row, _, reason) =
        bad_value(load_table(csv("ragged.csv", "a,b,c\n1,2,3\n4,5\n"), None, None).unwrap_err());
    assert_eq!(row, 1);
    assert!(reason.contains("2 fields, the header has 3"), "{reason}");
    let (row, _, reason) =
        bad_value(load_table(csv("label.csv", "a,y\n1,3\n2,300\n"), None, Some("y")).unwrap_err());
    assert_eq!(row, 1);
    assert!(reason.contains("label 300"), "{reason}");
    assert!(matches!(
        load_table(csv("nolabel.csv", "a,b\n1,2\n"), None, Some("class")),
        Err(Error::InvalidSetting { .. })
    ));
    // A NaN in a .npy names its row and column too; a 3-D array is a shape error.
    let p = dir.path().join("nan.npy");
    std::fs::write(&p, npy("<f8", &[2, 2], &f64s(&[0.0, 1.0, f64::NAN, 2.0]))).unwrap();
    assert_eq!(bad_value(load_table(&p, None, None).unwrap_err()).0, 1);
    let p = dir.path().join("cube.npy");
    std::fs::write(&p, npy("<f8", &[1, 2, 2], &f64s(&[0.0; 4]))).unwrap();
    assert!(matches!(
        load_table(&p, None, None),
        Err(Error::ShapeMismatch { .. })
    ));
    let p = dir.path().join("junk.npy");
    std::fs::write(&p, b"not numpy").unwrap();
    assert!(matches!(
        load_table(&p, None, None),
        Err(Error::BadValue { .. })
    ));
    // A model of another width refuses the batch with a shape error.
    let d = load_table(csv("ok.csv", "a,b\n1,2\n"), None, None).unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let got = d.batch::<dfdx::shapes::Const<3>, f32, _>(&dev, &[0], None);
    assert!(matches!(got, Err(Error::ShapeMismatch { .. })));
}

#[test]
fn scaling_is_fitted_on_the_training_split_and_inverts() {
    let p = Path::new("mem");
    let train = latent::data::Dataset::from_rows(vec![1.0, 10.0, 3.0, 10.0, 5.0, 10.0], 2, None, p)
        .unwrap();
    let test = latent::data::Dataset::from_rows(vec![7.0, 12.0], 2, None, p).unwrap();
    // Column 0: mean 3, population std √(8/3); column 1 constant: scale 1.
    let s = Scaler::fit(&train, Scaling::Standardize).unwrap();
    assert!(
        (s.offset[0] - 3.0).abs() < 1e-12 && (s.scale[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12
    );
    assert_eq!((s.offset[1], s.scale[1]), (10.0, 1.0));
    let t = s.apply(&test).unwrap();
    let v = t.values.as_ref().unwrap();
    assert!((v[0] - 4.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-12 && v[1] == 2.0);
    let back = s.invert(&t).unwrap();
    assert!((back.values.unwrap()[0] - 7.0).abs() < 1e-12);
    // Min-max: the training split spans [0, 1].
    let m = Scaler::fit(&train, Scaling::MinMax).unwrap();
    let v = m.apply(&train).unwrap().values.unwrap();
    assert_eq!(v, vec![0.0, 0.0, 0.5, 0.0, 1.0, 0.0]);
    // Images cannot be scaled.
    let images = latent::data::embedded().unwrap().test.take(2);
    assert!(matches!(
        Scaler::fit(&images, Scaling::Standardize),
        Err(Error::InvalidSetting { .. })
    ));
}

#[test]
fn a_seeded_split_holds_out_the_asked_fraction() {
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let d = latent::data::Dataset::from_rows(values, 1, None, Path::new("mem")).unwrap();
    let (rest, held) = d.split_off(0.1, 5).unwrap();
    assert_eq!((rest.len(), held.len()), (90, 10));
    let (r, h) = (rest.values.clone().unwrap(), held.values.clone().unwrap());
    assert!(h.iter().all(|v| !r.contains(v)));
    assert_eq!(d.split_off(0.1, 5).unwrap().1, held);
    assert_ne!(d.split_off(0.1, 6).unwrap().1, held);
    assert!(d.split_off(0.0, 5).is_err() && d.split_off(1.0, 5).is_err());
}
