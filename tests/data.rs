//! The IDX reader and writer, Fashion-MNIST discovery and batching.

use dfdx::prelude::*;
use latent::data::{
    discover, embedded, load_dir, parse_idx, read_idx, shuffled_batches, write_idx, Binarization,
    Dataset, IdxArray,
};
use latent::Error;
use rand::SeedableRng;

fn sample_images(n: usize) -> (IdxArray, IdxArray) {
    let images = IdxArray {
        dims: vec![n, 28, 28],
        data: (0..n * 784).map(|i| (i * 7 % 256) as u8).collect(),
    };
    let labels = IdxArray {
        dims: vec![n],
        data: (0..n).map(|i| (i % 10) as u8).collect(),
    };
    (images, labels)
}

#[test]
fn idx_round_trips_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = sample_images(5);
    for name in ["images-idx3-ubyte", "images-idx3-ubyte.gz"] {
        let path = dir.path().join(name);
        write_idx(&path, &images).unwrap();
        assert_eq!(read_idx(&path).unwrap(), images);
    }
    let path = dir.path().join("labels.gz");
    write_idx(&path, &labels).unwrap();
    let back = read_idx(&path).unwrap();
    assert_eq!(back.dims, vec![5]);
    assert_eq!(back.data, vec![0, 1, 2, 3, 4]);
}

#[test]
fn idx_rejects_wrong_magic_truncation_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = sample_images(3);
    let good = latent::data::encode_idx(&images).unwrap();
    let p = std::path::Path::new("x");

    let mut bad_magic = good.clone();
    bad_magic[0] = 0x12;
    let e = parse_idx(&bad_magic, p).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("magic")),
        "{e}"
    );

    let mut bad_type = good.clone();
    bad_type[2] = 0x0D; // float
    assert!(matches!(
        parse_idx(&bad_type, p),
        Err(Error::MalformedIdx { .. })
    ));

    let e = parse_idx(&good[..good.len() - 1], p).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("truncated data")),
        "{e}"
    );
    let e = parse_idx(&good[..10], p).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("truncated header")),
        "{e}"
    );
    assert!(matches!(
        parse_idx(&good[..2], p),
        Err(Error::MalformedIdx { .. })
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        parse_idx(&trailing, p),
        Err(Error::MalformedIdx { .. })
    ));

    // A truncated gzip file on disk.
    let path = dir.path().join("t.gz");
    write_idx(&path, &images).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_idx(&path).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { path: ep, .. } if ep == &path),
        "{e}"
    );

    let e = read_idx(dir.path().join("missing")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Gzip bounds: a header that declares more than the limit is refused before anything
/// is inflated or allocated; a multi-member gzip is one stream; anything after the last
/// member is refused; a header that promises more than the stream holds is truncation.
#[test]
fn idx_gzip_is_bounded_multi_member_and_strict_about_trailing_data() {
    let p = std::path::Path::new("x.gz");
    let (images, _) = sample_images(4);
    let good = latent::data::encode_idx(&images).unwrap();

    // Declared 4·784 bytes, limit 1000: refused from the header alone.
    let e = latent::data::parse_idx_limited(&gzip(&good), p, 1000).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("above the limit")),
        "{e}"
    );
    // A header declaring 4 × 2^31 bytes with no data: refused by the default limit (or
    // reported truncated) without inflating or allocating gigabytes.
    let huge = [0u8, 0, 8, 3, 0, 0, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 1];
    assert!(matches!(
        parse_idx(&gzip(&huge), p),
        Err(Error::MalformedIdx { .. })
    ));

    // Two members (as `cat a.gz b.gz` makes): one IDX stream.
    let (head, tail) = good.split_at(100);
    let mut two = gzip(head);
    two.extend(gzip(tail));
    assert_eq!(parse_idx(&two, p).unwrap(), images);

    // Garbage after the gzip stream, and a second member that carries extra data.
    let mut garbage = gzip(&good);
    garbage.extend_from_slice(b"not gzip");
    assert!(matches!(
        parse_idx(&garbage, p),
        Err(Error::MalformedIdx { .. })
    ));
    let mut extra = gzip(&good);
    extra.extend(gzip(&[1, 2, 3]));
    let e = parse_idx(&extra, p).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("trailing")),
        "{e}"
    );
    // Promises more than it holds.
    let e = parse_idx(&gzip(&good[..good.len() - 5]), p).unwrap_err();
    assert!(
        matches!(&e, Error::MalformedIdx { reason, .. } if reason.contains("truncated data")),
        "{e}"
    );
}

#[test]
fn load_dir_reads_mnist_style_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = sample_images(6);
    write_idx(dir.path().join("train-images-idx3-ubyte.gz"), &images).unwrap();
    write_idx(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    write_idx(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
    write_idx(dir.path().join("t10k-labels-idx1-ubyte.gz"), &labels).unwrap();
    let splits = discover(Some(dir.path().to_str().unwrap())).unwrap();
    assert_eq!(
        (splits.train.len(), splits.test.len(), splits.train.dim()),
        (6, 6, 784)
    );

    // Labels that do not match the images are a shape error.
    let wrong = IdxArray {
        dims: vec![5],
        data: vec![0; 5],
    };
    write_idx(dir.path().join("t10k-labels-idx1-ubyte.gz"), &wrong).unwrap();
    assert!(matches!(
        load_dir(dir.path()),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn embedded_subset_is_real_fashion_mnist() {
    let s = embedded().unwrap();
    assert_eq!((s.train.len(), s.test.len()), (4000, 1000));
    assert_eq!((s.train.rows, s.train.cols), (28, 28));
    // Every class is present, roughly balanced.
    for c in 0..10u8 {
        let count = s.train.labels.iter().filter(|&&l| l == c).count();
        assert!((300..=500).contains(&count), "class {c}: {count}");
    }
    // The first training image of Fashion-MNIST is an ankle boot (label 9).
    assert_eq!(s.train.labels[0], 9);
    assert_eq!(discover(Some("embedded")).unwrap().source, "embedded");
}

#[test]
fn batches_are_seeded_and_cover_the_data() {
    let mut r1 = rand::rngs::StdRng::seed_from_u64(3);
    let mut r2 = rand::rngs::StdRng::seed_from_u64(3);
    let a = shuffled_batches(10, 4, &mut r1).unwrap();
    assert_eq!(a, shuffled_batches(10, 4, &mut r2).unwrap());
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert!(shuffled_batches(10, 0, &mut r1).is_err());
}

#[test]
fn batch_scales_and_binarizes() {
    let dev = Cpu::default();
    let (images, labels) = sample_images(3);
    let ds = Dataset::from_idx(images, labels).unwrap();
    let x = ds
        .batch::<Const<784>, f32, Cpu>(&dev, &[2, 0], None)
        .unwrap();
    let v = x.as_vec();
    assert_eq!(v.len(), 2 * 784);
    assert_eq!(v[784], 0.0);
    assert!((v[785] - 7.0 / 255.0).abs() < 1e-7);

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let xb = ds
        .batch::<Const<784>, f32, Cpu>(&dev, &[0, 1, 2], Some(&mut rng))
        .unwrap()
        .as_vec();
    assert!(xb.iter().all(|&b| b == 0.0 || b == 1.0));
    // Mean of the binarized pixels is close to the mean intensity.
    let mean_b = xb.iter().sum::<f32>() / xb.len() as f32;
    let mean_i = ds.images.iter().map(|&p| p as f32 / 255.0).sum::<f32>() / xb.len() as f32;
    assert!((mean_b - mean_i).abs() < 0.03, "{mean_b} vs {mean_i}");

    assert!(matches!(
        ds.batch::<Const<100>, f32, Cpu>(&dev, &[0], None),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        ds.batch::<Const<784>, f32, Cpu>(&dev, &[3], None),
        Err(Error::InvalidSetting { .. })
    ));
    assert!("sometimes".parse::<Binarization>().is_err());
    assert_eq!(
        "dynamic".parse::<Binarization>().unwrap(),
        Binarization::Dynamic
    );
}

/// Dynamic binarization draws each pixel from Bernoulli(v / 255): 0 never fires, 255
/// always does, and the frequencies of the others are within 5 standard errors.
#[test]
fn dynamic_binarization_has_the_right_probabilities() {
    use rand::SeedableRng;
    let values: Vec<u8> = vec![0, 1, 64, 128, 200, 254, 255];
    let d = values.len();
    let data = latent::data::Dataset {
        images: values.repeat(2),
        labels: vec![0, 0],
        rows: 1,
        cols: d,
        values: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let rounds = 20_000;
    let mut ones = vec![0usize; d];
    for _ in 0..rounds {
        let px = data.pixels::<f64>(&[0, 1], Some(&mut rng)).unwrap();
        for (k, v) in px.iter().enumerate() {
            assert!(*v == 0.0 || *v == 1.0);
            ones[k % d] += *v as usize;
        }
    }
    let n = (2 * rounds) as f64;
    for (k, &v) in values.iter().enumerate() {
        let p = v as f64 / 255.0;
        let freq = ones[k] as f64 / n;
        match v {
            0 => assert_eq!(ones[k], 0),
            255 => assert_eq!(ones[k], 2 * rounds),
            _ => {
                let se = (p * (1.0 - p) / n).sqrt();
                assert!((freq - p).abs() < 5.0 * se, "v = {v}: {freq} vs {p} ± {se}");
            }
        }
    }
}

/// Bad data directories are refused before training, each with an error naming the
/// file and what is wrong: a directory or FIFO where a file should be, a symlink loop,
/// an empty split, test images of another size. A data path from `LATENT_DATA` that is
/// not valid UTF-8 is used, not ignored.
#[cfg(unix)]
#[test]
fn bad_data_directories_are_named_before_training() {
    use std::os::unix::ffi::OsStrExt;
    let (images, labels) = sample_images(3);
    let fill = |dir: &std::path::Path| {
        for (name, a) in [
            ("train-images-idx3-ubyte", &images),
            ("train-labels-idx1-ubyte", &labels),
            ("t10k-images-idx3-ubyte", &images),
            ("t10k-labels-idx1-ubyte", &labels),
        ] {
            write_idx(dir.join(name), a).unwrap();
        }
    };
    let io_reason = |e: Error| match e {
        Error::Io { path, source } => format!("{} {source}", path.display()),
        other => panic!("expected an I/O error, got {other}"),
    };

    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    std::fs::remove_file(d.path().join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::create_dir(d.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let r = io_reason(load_dir(d.path()).unwrap_err());
    assert!(
        r.contains("t10k-images-idx3-ubyte.gz") && r.contains("a directory"),
        "{r}"
    );

    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    std::fs::remove_file(d.path().join("train-labels-idx1-ubyte")).unwrap();
    let fifo = d.path().join("train-labels-idx1-ubyte");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert!(io_reason(load_dir(d.path()).unwrap_err()).contains("not a regular file"));

    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    std::fs::remove_file(d.path().join("train-images-idx3-ubyte")).unwrap();
    let a = d.path().join("train-images-idx3-ubyte.gz");
    let b = d.path().join("loop");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let r = io_reason(load_dir(d.path()).unwrap_err());
    assert!(r.contains("train-images-idx3-ubyte.gz"), "{r}");

    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    let empty = IdxArray {
        dims: vec![0, 28, 28],
        data: vec![],
    };
    write_idx(d.path().join("t10k-images-idx3-ubyte"), &empty).unwrap();
    write_idx(
        d.path().join("t10k-labels-idx1-ubyte"),
        &IdxArray {
            dims: vec![0],
            data: vec![],
        },
    )
    .unwrap();
    assert!(matches!(
        load_dir(d.path()),
        Err(Error::InvalidSetting { ref name, .. }) if name == "test"
    ));

    let d = tempfile::tempdir().unwrap();
    fill(d.path());
    let small = IdxArray {
        dims: vec![3, 14, 14],
        data: vec![0; 3 * 196],
    };
    write_idx(d.path().join("t10k-images-idx3-ubyte"), &small).unwrap();
    match load_dir(d.path()) {
        Err(Error::ShapeMismatch {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (vec![28, 28], vec![14, 14]))
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }

    // A data directory whose name is not valid UTF-8, given through LATENT_DATA.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent
        .path()
        .join(std::ffi::OsStr::from_bytes(b"data-\xff"));
    std::fs::create_dir(&dir).unwrap();
    fill(&dir);
    std::env::set_var("LATENT_DATA", &dir);
    let found = discover(None);
    std::env::remove_var("LATENT_DATA");
    let found = found.unwrap();
    assert_eq!(
        (found.train.len(), found.source.contains("data-")),
        (3, true)
    );
}
