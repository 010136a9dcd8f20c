//! Fuzzed `.npy`, `.npz` and CSV input: thousands of mutated files (truncations, flipped
//! bytes, mutated headers with huge declared shapes, damaged zip archives, non-numbers,
//! NaN and infinity, ragged rows, trailing garbage) through `load_table`. Every input
//! must give a typed error or a load consistent with itself, never a panic; the inputs
//! that must fail (a truncated array, bytes after an array's data, a non-finite value, a
//! ragged row) are never accepted. Prints the number of inputs tried per class.

#[path = "support/npy.rs"]
mod npy_file;

use std::io::Write;
use std::path::Path;

use latent::data::load_table;
use latent::Error;
use npy_file::npy;
use rand::{Rng, SeedableRng};

fn npz(x: &[u8], y: Option<&[u8]>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::FileOptions::default();
    z.start_file("x.npy", opts).unwrap();
    z.write_all(x).unwrap();
    if let Some(y) = y {
        z.start_file("y.npy", opts).unwrap();
        z.write_all(y).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// Loads `bytes` written as `name`; checks the outcome (a typed error, always when
/// `must_fail`, or a consistent load) and that nothing panicked. Returns whether it
/// loaded.
fn check(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    label: Option<&str>,
    class: &str,
    must_fail: bool,
) -> bool {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let outcome = std::panic::catch_unwind(|| load_table(&path, None, label));
    match outcome {
        Err(_) => panic!("{class}: the loader panicked on {}", path.display()),
        Ok(Ok(d)) => {
            assert!(!must_fail, "{class}: bad input accepted: {bytes:?}");
            let values = d.values.as_ref().expect("a table loads real values");
            assert_eq!(
                values.len(),
                d.len() * d.dim(),
                "{class}: values do not fill the rows"
            );
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{class}: a non-finite value loaded"
            );
            assert_eq!(
                d.labels.len(),
                d.len(),
                "{class}: labels do not match the rows"
            );
            true
        }
        Ok(Err(e)) => {
            assert!(
                matches!(
                    e,
                    Error::BadValue { .. }
                        | Error::ShapeMismatch { .. }
                        | Error::InvalidSetting { .. }
                        | Error::Io { .. }
                ),
                "{class}: an untyped failure {e:?}"
            );
            false
        }
    }
}

#[test]
fn mutated_tables_give_typed_errors_or_consistent_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261205);
    let x: Vec<f64> = (0..24).map(|i| f64::from(i) * 0.37 - 3.0).collect();
    let f8: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let i4: Vec<u8> = (0..24i32).flat_map(|v| v.to_le_bytes()).collect();
    let y8: Vec<u8> = (0..8i64)
        .map(|v| v % 3)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let npys = [
        npy("<f8", &[8, 3], &f8),
        npy("<i4", &[8, 3], &i4),
        npy("<f8", &[4, 6], &f8),
    ];
    let npzs = [
        npz(&npys[0], Some(&npy("<i8", &[8], &y8))),
        npz(&npys[1], None),
    ];
    let csv: String = std::iter::once("a,b,c,class\n".to_string())
        .chain(
            (0..8).map(|r| format!("{},{},{},{}\n", x[3 * r], x[3 * r + 1], x[3 * r + 2], r % 3)),
        )
        .collect();
    // The seeds load.
    for (i, s) in npys.iter().enumerate() {
        assert!(check(
            dir.path(),
            &format!("seed{i}.npy"),
            s,
            None,
            "seed",
            false
        ));
    }
    for (i, s) in npzs.iter().enumerate() {
        assert!(check(
            dir.path(),
            &format!("seed{i}.npz"),
            s,
            None,
            "seed",
            false
        ));
    }
    assert!(check(
        dir.path(),
        "seed.csv",
        csv.as_bytes(),
        Some("class"),
        "seed",
        false
    ));

    let mut tried = std::collections::BTreeMap::<&str, (usize, usize, usize)>::new();
    let mut run =
        |name: &str, bytes: Vec<u8>, label: Option<&str>, class: &'static str, must_fail: bool| {
            let loaded = check(dir.path(), name, &bytes, label, class, must_fail);
            let e = tried.entry(class).or_default();
            e.0 += 1;
            if loaded {
                e.1 += 1
            } else {
                e.2 += 1
            }
        };
    for round in 0..150 {
        let seed = &npys[round % npys.len()];
        // .npy cut short anywhere (header or data): never a load.
        run(
            "t.npy",
            seed[..rng.gen_range(0..seed.len())].to_vec(),
            None,
            "npy truncated",
            true,
        );
        // .npy with 1–8 bytes overwritten anywhere.
        let mut m = seed.clone();
        for _ in 0..rng.gen_range(1..=8) {
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
        }
        run("m.npy", m, None, "npy bytes flipped", false);
        // .npy whose header claims a huge or wrong shape (terabytes in a few bytes).
        let n = match rng.gen_range(0..3) {
            0 => u64::MAX - rng.gen_range(0..1000),
            1 => rng.gen_range(9..1_000_000_000_000),
            _ => rng.gen_range(0..8),
        };
        let body = &seed[seed.len() - 192.min(seed.len() - 128)..];
        run(
            "h.npy",
            npy("<f8", &[n as usize, 3], body),
            None,
            "npy shape mutated",
            false,
        );
        // .npy with trailing garbage after the data.
        let mut t = seed.clone();
        t.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
        run("g.npy", t, None, "npy trailing garbage", true);
        // .npz archive damaged or cut.
        let z = &npzs[round % npzs.len()];
        let mut m = z.clone();
        for _ in 0..rng.gen_range(1..=8) {
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
        }
        run("m.npz", m, None, "npz bytes flipped", false);
        run(
            "t.npz",
            z[..rng.gen_range(0..z.len())].to_vec(),
            None,
            "npz truncated",
            false,
        );
        // CSV: a field replaced by a non-number, NaN or infinity: never a load.
        let mut fields: Vec<String> = csv.lines().map(str::to_string).collect();
        let row = rng.gen_range(1..fields.len());
        let mut cells: Vec<String> = fields[row].split(',').map(str::to_string).collect();
        let col = rng.gen_range(0..3);
        cells[col] = ["abc", "NaN", "inf", "-inf", "1e999", "", "0x1F", "1,5"][rng.gen_range(0..8)]
            .to_string();
        fields[row] = cells.join(",");
        run(
            "v.csv",
            (fields.join("\n") + "\n").into_bytes(),
            Some("class"),
            "csv bad field",
            true,
        );
        // CSV: a row with a field too many or too few: never a load.
        let mut fields: Vec<String> = csv.lines().map(str::to_string).collect();
        let row = rng.gen_range(1..fields.len());
        if rng.gen_bool(0.5) {
            fields[row].push_str(",1.0")
        } else {
            let c = fields[row].rfind(',').unwrap();
            fields[row].truncate(c)
        }
        run(
            "r.csv",
            (fields.join("\n") + "\n").into_bytes(),
            Some("class"),
            "csv ragged row",
            true,
        );
        // CSV with random bytes overwritten (including invalid UTF-8).
        let mut m = csv.clone().into_bytes();
        for _ in 0..rng.gen_range(1..=6) {
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
        }
        run("m.csv", m, Some("class"), "csv bytes flipped", false);
    }
    let total: usize = tried.values().map(|t| t.0).sum();
    eprintln!("fuzzed table inputs (.npy, .npz, CSV): {total}");
    for (class, (n, loads, errors)) in &tried {
        eprintln!("  {class}: {n} inputs, {loads} loads, {errors} typed errors, 0 panics, 0 silent acceptances");
    }
    assert!(total >= 1000);
}
