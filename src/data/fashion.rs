//! Finding Fashion-MNIST (or any MNIST-style IDX data) on this machine, with an
//! embedded real subset as the offline fallback.

use std::path::{Path, PathBuf};

use super::dataset::Dataset;
use super::idx::{parse_idx, read_idx};
use crate::error::{Error, Result};

/// Where Debian's `dataset-fashion-mnist` package installs the data.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The environment variable naming a data directory.
pub const ENV_VAR: &str = "LATENT_DATA";

/// The Fashion-MNIST class names, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

/// A training and a test split, and a description of where they came from.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
    /// Where the data came from: a directory, or `embedded`.
    pub source: String,
}

/// The embedded subset of Fashion-MNIST: the first 4,000 training and first 1,000 test
/// images of the real data set (MIT licence, © 2017 Zalando SE; see
/// `data/fashion-mnist-subset/LICENSE`), compiled into the crate.
///
/// # Errors
/// None in practice; the embedded files are parsed like any other.
pub fn embedded() -> Result<Splits> {
    let p = |n: &str| PathBuf::from(format!("<embedded>/{n}"));
    let train = Dataset::from_idx(
        parse_idx(EMBEDDED_TRAIN_IMAGES, &p("train-images-idx3-ubyte.gz"))?,
        parse_idx(EMBEDDED_TRAIN_LABELS, &p("train-labels-idx1-ubyte.gz"))?,
    )?;
    let test = Dataset::from_idx(
        parse_idx(EMBEDDED_TEST_IMAGES, &p("t10k-images-idx3-ubyte.gz"))?,
        parse_idx(EMBEDDED_TEST_LABELS, &p("t10k-labels-idx1-ubyte.gz"))?,
    )?;
    Ok(Splits {
        train,
        test,
        source: "embedded".into(),
    })
}

/// Finds `name` or `name.gz` in `dir`.
/// `dir/name.gz` or `dir/name`, whichever exists first; `Ok(None)` if neither does.
///
/// # Errors
/// [`Error::Io`] if a candidate exists but is not a regular file (a directory, a FIFO,
/// a device) or cannot be examined (a symlink loop, no permission).
fn find(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    for p in [dir.join(format!("{name}.gz")), dir.join(name)] {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => return Ok(Some(p)),
            Ok(m) => {
                let kind = if m.is_dir() {
                    "a directory"
                } else {
                    "not a regular file"
                };
                return Err(Error::io(
                    &p,
                    std::io::Error::other(format!("{kind}, expected an IDX file")),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(None)
}

/// Whether `dir` holds the four IDX files (raw or `.gz`) of an MNIST-style data set.
pub fn has_idx_files(dir: &Path) -> bool {
    FILES.iter().all(|n| matches!(find(dir, n), Ok(Some(_))))
}

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Loads the four MNIST-style IDX files (`train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each
/// raw or with `.gz`) from `dir`. Works for Fashion-MNIST and MNIST alike.
///
/// # Errors
/// [`Error::Io`] naming the first missing file, or one that is not a regular file (a
/// directory, a FIFO) or cannot be examined (a symlink loop); [`Error::MalformedIdx`]
/// or [`Error::ShapeMismatch`] for a corrupt one; [`Error::InvalidSetting`] for an
/// empty split; [`Error::ShapeMismatch`] for test images of another size than the
/// training images.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Splits> {
    let dir = dir.as_ref();
    let mut arrays = Vec::with_capacity(4);
    for name in FILES {
        let path = find(dir, name)?.ok_or_else(|| {
            Error::io(
                dir.join(format!("{name}[.gz]")),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such IDX file"),
            )
        })?;
        arrays.push(read_idx(path)?);
    }
    let mut it = arrays.into_iter();
    let mut next = || {
        it.next()
            .unwrap_or_else(|| unreachable!("four files were read"))
    };
    let train = Dataset::from_idx(next(), next())?;
    let test = Dataset::from_idx(next(), next())?;
    checked(Splits {
        train,
        test,
        source: dir.display().to_string(),
    })
}

/// `splits` after [`check_pair`].
fn checked(splits: Splits) -> Result<Splits> {
    check_pair(&splits.train, &splits.test, &splits.source)?;
    Ok(splits)
}

/// Checks a training and a test split of the data from `source`: both non-empty, with
/// images of the same size. Run when data is loaded and again when training starts.
///
/// # Errors
/// [`Error::InvalidSetting`] (`train` or `test`) for an empty split;
/// [`Error::ShapeMismatch`] for test images of another size than the training images.
pub fn check_pair(train: &Dataset, test: &Dataset, source: &str) -> Result<()> {
    for (name, split) in [("train", train), ("test", test)] {
        if split.is_empty() {
            return Err(Error::invalid(
                name,
                format!("the {name} split of {source} has no images"),
            ));
        }
    }
    if train.is_real_valued() != test.is_real_valued() {
        return Err(Error::invalid(
            "test",
            format!("{source}: one split holds images, the other real values"),
        ));
    }
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(Error::shape(
            format!("test images of {source} (rows, cols; the training images')"),
            &[train.rows, train.cols],
            &[test.rows, test.cols],
        ));
    }
    Ok(())
}

/// Finds Fashion-MNIST in this order: `spec` (a directory, or `embedded` to force the
/// subset), the `LATENT_DATA` environment variable, [`DEBIAN_DIR`], then the
/// [`embedded`] subset.
///
/// # Errors
/// An explicitly named directory (by `spec` or `LATENT_DATA`) that cannot be loaded is
/// an error, not a silent fallback: [`Error::Io`], [`Error::MalformedIdx`] or
/// [`Error::ShapeMismatch`].
pub fn discover(spec: Option<&str>) -> Result<Splits> {
    match spec {
        Some("embedded") => return embedded(),
        Some(dir) => return load_dir(dir),
        None => {}
    }
    // As an OsString: a path that is not valid UTF-8 is still a path.
    if let Some(dir) = std::env::var_os(ENV_VAR) {
        if !dir.is_empty() {
            return if dir == "embedded" {
                embedded()
            } else {
                load_dir(PathBuf::from(dir))
            };
        }
    }
    let debian = Path::new(DEBIAN_DIR);
    if has_idx_files(debian) {
        return load_dir(debian);
    }
    embedded()
}
