//! Fuzzed IDX input: thousands of mutated image and label files (truncations, header
//! mutations, flipped bytes, damaged gzip streams, huge declared sizes, trailing
//! garbage), raw and gzip-compressed, through the loader. Every input must give a typed
//! error or a correct load, never a panic, and the loader's peak memory stays bounded
//! by the limit it is given (measured with a counting allocator), whatever the file
//! claims. Prints the number of inputs tried per class.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use latent::data::{encode_idx, parse_idx_limited, IdxArray};
use latent::Error;
use rand::{Rng, SeedableRng};

/// The system allocator, counting the bytes live and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The loader's body limit in this test: far below what the mutated headers claim.
const LIMIT: usize = 1 << 20;

/// Parses `bytes`; checks the outcome is a typed error (always, when `must_fail`) or a
/// load consistent with its header, that nothing panicked, and returns whether it
/// loaded and the peak memory above the input's.
fn check(bytes: &[u8], class: &str, must_fail: bool) -> (bool, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(|| parse_idx_limited(bytes, Path::new("fuzz"), LIMIT));
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    match outcome {
        Err(_) => panic!("{class}: the loader panicked"),
        Ok(Ok(a)) => {
            assert!(!must_fail, "{class}: bad input accepted");
            assert_eq!(
                a.data.len(),
                a.dims.iter().product::<usize>(),
                "{class}: a load whose data does not fill its dimensions"
            );
            assert!(
                a.data.len() <= LIMIT,
                "{class}: a body above the limit loaded"
            );
        }
        Ok(Err(e)) => {
            assert!(
                matches!(e, Error::MalformedIdx { .. }),
                "{class}: an untyped failure {e:?}"
            );
            return (false, peak);
        }
    }
    (true, peak)
}

#[test]
fn mutated_idx_files_give_typed_errors_or_correct_loads_in_bounded_memory() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261202);
    let images = IdxArray {
        dims: vec![12, 28, 28],
        data: (0..12 * 784).map(|i| (i * 7 % 251) as u8).collect(),
    };
    let labels = IdxArray {
        dims: vec![12],
        data: (0..12).map(|i| i as u8 % 10).collect(),
    };
    let seeds: Vec<Vec<u8>> = [&images, &labels]
        .into_iter()
        .flat_map(|a| {
            let raw = encode_idx(a).unwrap();
            [gzip(&raw), raw]
        })
        .collect();
    // The valid seeds load back exactly.
    for (s, want) in seeds.iter().zip([&images, &images, &labels, &labels]) {
        assert_eq!(
            &parse_idx_limited(s, Path::new("seed"), LIMIT).unwrap(),
            want
        );
    }
    // Per class: (inputs, loads, typed errors).
    let mut tried = std::collections::BTreeMap::<&str, (usize, usize, usize)>::new();
    let mut worst_peak = 0usize;
    let mut run = |bytes: Vec<u8>, class: &'static str, must_fail: bool| {
        let (loaded, peak) = check(&bytes, class, must_fail);
        worst_peak = worst_peak.max(peak);
        let e = tried.entry(class).or_default();
        e.0 += 1;
        if loaded {
            e.1 += 1;
        } else {
            e.2 += 1;
        }
    };
    for round in 0..300 {
        let seed = &seeds[round % seeds.len()];
        let raw = round % 2 == 1;
        // Truncation at a random point.
        let cut = rng.gen_range(0..seed.len());
        run(seed[..cut].to_vec(), "truncated", true);
        // 1–8 random bytes overwritten anywhere (in gzip: damaged compressed data).
        let mut m = seed.clone();
        for _ in 0..rng.gen_range(1..=8) {
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
        }
        let class = if raw {
            "bytes flipped (raw)"
        } else {
            "gzip stream damaged"
        };
        run(m, class, false);
        // Header mutations on the raw form: magic, type, rank, and declared sizes up to
        // 2^32 − 1 per dimension (terabytes claimed by a few bytes), then re-gzipped
        // half the time.
        let mut h = encode_idx(if round % 4 < 2 { &images } else { &labels }).unwrap();
        let ndim = h[3] as usize;
        match rng.gen_range(0..4) {
            0 => h[rng.gen_range(0..4)] = rng.gen(),
            1 => h[3] = rng.gen_range(0..=255),
            _ => {
                let d = rng.gen_range(0..ndim);
                let v: u32 = if rng.gen_bool(0.5) {
                    u32::MAX - rng.gen_range(0..1000)
                } else {
                    rng.gen()
                };
                h[4 + 4 * d..8 + 4 * d].copy_from_slice(&v.to_be_bytes());
            }
        }
        run(if raw { h } else { gzip(&h) }, "header mutated", false);
        // Trailing garbage after a valid file, raw or after the gzip stream.
        let mut t = seed.clone();
        t.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
        run(t, "trailing garbage", true);
    }
    // A few gzip bombs: a tiny file that inflates to far more than its header allows.
    for n in [4usize << 20, 16 << 20, 64 << 20] {
        let mut body = encode_idx(&labels).unwrap();
        body.resize(n, 0);
        run(gzip(&body), "gzip bomb (trailing zeros)", true);
        let mut head = vec![0, 0, 8, 1];
        head.extend_from_slice(&(n as u32).to_be_bytes());
        head.resize(8 + n, 0);
        run(gzip(&head), "gzip bomb (declared above the limit)", true);
    }
    let total: usize = tried.values().map(|t| t.0).sum();
    eprintln!("fuzzed IDX inputs: {total}; worst peak memory {worst_peak} bytes");
    for (class, (n, loads, errors)) in &tried {
        eprintln!("  {class}: {n} inputs, {loads} loads, {errors} typed errors, 0 panics");
    }
    assert!(total >= 1000);
    // The body limit plus the inflater's buffers and the header: nothing scales with
    // what a file claims.
    assert!(
        worst_peak < LIMIT + (512 << 10),
        "peak memory {worst_peak} bytes for a limit of {LIMIT}"
    );
}
