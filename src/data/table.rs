//! Real-valued data sets of any width: rows of measurements (tabular data, spectra,
//! embeddings, small images of any size) read from `.npy` / `.npz` arrays (the `npyz`
//! crate) or CSV files (the `csv` crate), checked at load, split for validation, and
//! standardized with statistics of the training split only.
//!
//! A real-valued [`Dataset`] has `rows = 1`, `cols` = the width `X`, its values in
//! [`Dataset::values`] and one label per row (0 where the file has none).

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::dataset::Dataset;
use crate::error::{Error, Result};

impl Dataset {
    /// A real-valued data set of `values.len() / width` rows of `width` values
    /// (row-major, kept in `f64`; converted to the model's dtype per batch), with optional integer `labels` (one per row, `0..=255`; all 0 when
    /// `None`). `source` names the origin in errors.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a width of 0, values that are not whole rows, or a
    /// label count other than the row count; [`Error::BadValue`] naming the row and
    /// column (0-based) of the first NaN or infinity, or the row of a label outside
    /// `0..=255`; [`Error::InvalidSetting`] for no rows at all.
    pub fn from_rows(
        values: Vec<f64>,
        width: usize,
        labels: Option<Vec<i64>>,
        source: &Path,
    ) -> Result<Self> {
        if width == 0 || !values.len().is_multiple_of(width) {
            return Err(Error::not_a_multiple(
                format!("values of {}", source.display()),
                width,
                values.len(),
            ));
        }
        let n = values.len() / width;
        if n == 0 {
            return Err(Error::invalid(
                "data",
                format!("{} holds no rows", source.display()),
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::BadValue {
                path: source.to_path_buf(),
                row: i / width,
                column: i % width,
                reason: format!("{} is not a finite number", values[i]),
            });
        }
        let labels = match labels {
            None => vec![0; n],
            Some(l) if l.len() != n => {
                return Err(Error::ShapeMismatch {
                    context: format!("labels of {} (one per row)", source.display()),
                    expected: vec![n],
                    found: vec![l.len()],
                })
            }
            Some(l) => l
                .iter()
                .enumerate()
                .map(|(row, &v)| {
                    u8::try_from(v).map_err(|_| Error::BadValue {
                        path: source.to_path_buf(),
                        row,
                        column: 0,
                        reason: format!("label {v} is outside 0..=255"),
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok(Self {
            images: Vec::new(),
            labels,
            rows: 1,
            cols: width,
            values: Some(values),
        })
    }

    /// Whether this is a real-valued data set ([`Dataset::values`]) rather than images.
    pub fn is_real_valued(&self) -> bool {
        self.values.is_some()
    }

    /// The rows `indices` (in that order) as a new data set of the same kind.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn select(&self, indices: &[usize]) -> Self {
        let d = self.dim();
        let pick = |src: &[u8]| -> Vec<u8> {
            indices
                .iter()
                .flat_map(|&i| src[i * d..(i + 1) * d].iter().copied())
                .collect()
        };
        Self {
            images: if self.values.is_some() {
                Vec::new()
            } else {
                pick(&self.images)
            },
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
            values: self.values.as_ref().map(|v| {
                indices
                    .iter()
                    .flat_map(|&i| v[i * d..(i + 1) * d].iter().copied())
                    .collect()
            }),
        }
    }

    /// A seeded random split: `(rest, held_out)` with `round(fraction · len)` rows held
    /// out (e.g. a validation split of the training data), each part keeping the
    /// original order of its rows.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `0 < fraction < 1` and both parts get a row.
    pub fn split_off(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let n = self.len();
        let k = (fraction * n as f64).round() as usize;
        if !(fraction > 0.0 && fraction < 1.0) || k == 0 || k >= n {
            return Err(Error::invalid(
                "fraction",
                format!("{fraction} of {n} rows leaves a part empty"),
            ));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let (mut held, mut rest) = (order[..k].to_vec(), order[k..].to_vec());
        held.sort_unstable();
        rest.sort_unstable();
        Ok((self.select(&rest), self.select(&held)))
    }
}

/// How real-valued columns are rescaled before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// As they are.
    #[default]
    None,
    /// `(v − mean) / std` per column (a constant column: `v − mean`).
    Standardize,
    /// `(v − min) / (max − min)` per column, into `[0, 1]` (a constant column: `v − min`).
    MinMax,
}

/// A per-column affine map `v ↦ (v − offset) / scale`, fitted on the training split
/// ([`Scaler::fit`]) and applied to every split, saved with a run so that its data can
/// be mapped back ([`Scaler::invert`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaler {
    /// How it was fitted.
    pub scaling: Scaling,
    /// Subtracted from each column.
    pub offset: Vec<f64>,
    /// Each column is divided by it (never 0).
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Fits `scaling` on `train`, a real-valued data set (population statistics, in
    /// `f64`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for image data.
    pub fn fit(train: &Dataset, scaling: Scaling) -> Result<Self> {
        let Some(values) = &train.values else {
            return Err(Error::invalid(
                "scaling",
                "applies to real-valued data sets, not images",
            ));
        };
        let (d, n) = (train.dim(), train.len() as f64);
        let column = |j: usize| values.iter().skip(j).step_by(d).copied();
        let (mut offset, mut scale) = (vec![0.0; d], vec![1.0; d]);
        for j in 0..d {
            match scaling {
                Scaling::None => {}
                Scaling::Standardize => {
                    let mean = column(j).sum::<f64>() / n;
                    let var = column(j).map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    offset[j] = mean;
                    scale[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
                }
                Scaling::MinMax => {
                    let (lo, hi) = column(j)
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                            (a.min(v), b.max(v))
                        });
                    offset[j] = lo;
                    scale[j] = if hi > lo { hi - lo } else { 1.0 };
                }
            }
        }
        Ok(Self {
            scaling,
            offset,
            scale,
        })
    }

    /// `data` with each column mapped by `v ↦ (v − offset) / scale`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for another width than the fitted one;
    /// [`Error::InvalidSetting`] for image data.
    pub fn apply(&self, data: &Dataset) -> Result<Dataset> {
        self.map(data, |v, o, s| (v - o) / s)
    }

    /// The inverse map, `v ↦ v · scale + offset` (e.g. for decoded means).
    ///
    /// # Errors
    /// As [`Scaler::apply`].
    pub fn invert(&self, data: &Dataset) -> Result<Dataset> {
        self.map(data, |v, o, s| v * s + o)
    }

    fn map(&self, data: &Dataset, f: impl Fn(f64, f64, f64) -> f64) -> Result<Dataset> {
        let Some(values) = &data.values else {
            return Err(Error::invalid(
                "scaling",
                "applies to real-valued data sets, not images",
            ));
        };
        let d = data.dim();
        if d != self.offset.len() {
            return Err(Error::shape("columns to scale", &[self.offset.len()], &[d]));
        }
        let mapped = values
            .iter()
            .enumerate()
            .map(|(i, &v)| f(v, self.offset[i % d], self.scale[i % d]))
            .collect();
        Ok(Dataset {
            values: Some(mapped),
            ..data.clone()
        })
    }
}

/// Reads a numeric `.npy` array as `f64` values and its shape (C order; a Fortran-order
/// array is transposed). Floats, signed and unsigned integers of any size and either
/// byte order are accepted.
///
/// # Errors
/// [`Error::Io`] for a missing or unreadable file; [`Error::BadValue`] (row 0, column
/// 0) for a file that is not `.npy` or holds another type (strings, records, …).
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<f64>, Vec<usize>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes, path)
}

/// Parses the bytes of one `.npy` array, after checking that its header's shape fits
/// the bytes that follow it: a header may claim any shape, and the reader would
/// otherwise overflow multiplying it or reserve memory for what the file does not hold.
fn parse_npy(bytes: &[u8], path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
    check_npy_header(bytes, path)?;
    let file = npyz::NpyFile::new(bytes).map_err(|e| bad_file(path, e.to_string()))?;
    npy_values(file, path)
}

/// The header of a `.npy` file (format versions 1–3): its `shape` tuple must multiply
/// out without overflow to at most the number of data bytes after the header (every
/// element takes at least one byte), and, for a plain numeric type, to exactly that
/// number of bytes.
fn check_npy_header(bytes: &[u8], path: &Path) -> Result<()> {
    let bad = |why: &str| bad_file(path, format!("not a valid .npy header: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(l).map_err(|_| bad("header length"))?, 12)
        }
        _ => return Err(bad("unknown format version")),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("cut short"))?;
    let header = String::from_utf8_lossy(&bytes[start..end]);
    let shape = header
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(').map(|(_, r)| r))
        .and_then(|rest| rest.split_once(')').map(|(dims, _)| dims))
        .ok_or_else(|| bad("no shape"))?;
    let mut count: u64 = 1;
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = d
            .parse()
            .map_err(|_| bad("a dimension that is not a number"))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| bad("a shape whose size overflows"))?;
    }
    let data = (bytes.len() - end) as u64;
    if count > data {
        return Err(bad_file(
            path,
            format!("the header declares {count} values, but only {data} bytes follow it"),
        ));
    }
    // A plain numeric type ('<f8', '|u1', …) gives the exact size: the data must fill
    // the shape, no more (trailing bytes mean a damaged or mismatched file).
    let item = header
        .split_once("'descr'")
        .and_then(|(_, rest)| rest.split('\'').nth(1))
        .and_then(|d| d.trim_start_matches(['<', '>', '|', '=']).get(1..))
        .and_then(|size| size.parse::<u64>().ok());
    if let Some(item) = item {
        let want = count
            .checked_mul(item)
            .ok_or_else(|| bad("a shape whose size overflows"))?;
        if want != data {
            return Err(bad_file(
                path,
                format!("the header declares {want} bytes of data, but {data} bytes follow it"),
            ));
        }
    }
    Ok(())
}

/// An array's values (row-major), its shape, and optional labels.
pub type LabelledArray = (Vec<f64>, Vec<usize>, Option<Vec<f64>>);

/// Reads the arrays `x` (2-D, one row per example) and, when present, `y` (1-D integer
/// labels) of an `.npz` archive (`numpy.savez(path, x=…, y=…)`).
///
/// # Errors
/// As [`read_npy`]; [`Error::BadValue`] when there is no array `x`.
pub fn read_npz(path: impl AsRef<Path>) -> Result<LabelledArray> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad_file(path, e.to_string()))?;
    let x = npz_entry(&mut archive, "x", path)?.ok_or_else(|| {
        bad_file(
            path,
            "no array named `x` (numpy.savez(path, x=…, y=…))".into(),
        )
    })?;
    let (values, shape) = parse_npy(&x, path)?;
    let labels = match npz_entry(&mut archive, "y", path)? {
        Some(y) => Some(parse_npy(&y, path)?.0),
        None => None,
    };
    Ok((values, shape, labels))
}

/// The bytes of the archive's array `name` (`name.npy`), if present, read up to the
/// memory limit of [`super::default_max_bytes`] whatever size the archive declares.
fn npz_entry<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    path: &Path,
) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut entry = match archive.by_name(&format!("{name}.npy")) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(bad_file(path, e.to_string())),
    };
    let limit = super::default_max_bytes() as u64;
    let mut bytes = Vec::new();
    (&mut entry)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad_file(path, format!("array `{name}`: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad_file(
            path,
            format!("array `{name}` inflates to more than {limit} bytes"),
        ));
    }
    Ok(Some(bytes))
}

fn bad_file(path: &Path, reason: String) -> Error {
    Error::BadValue {
        path: path.to_path_buf(),
        row: 0,
        column: 0,
        reason,
    }
}

fn npy_values<R: std::io::Read>(
    file: npyz::NpyFile<R>,
    path: &Path,
) -> Result<(Vec<f64>, Vec<usize>)> {
    use npyz::TypeChar;
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let fortran = file.order() == npyz::Order::Fortran;
    let npyz::DType::Plain(ts) = file.dtype() else {
        return Err(bad_file(path, "not a plain numeric array".into()));
    };
    let err = |e: std::io::Error| bad_file(path, e.to_string());
    let values: Vec<f64> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => file
            .into_vec::<f32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Float, 8) => file.into_vec::<f64>().map_err(err)?,
        (TypeChar::Int, 1) => file
            .into_vec::<i8>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 2) => file
            .into_vec::<i16>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 4) => file
            .into_vec::<i32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 8) => file
            .into_vec::<i64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Uint, 1) => file
            .into_vec::<u8>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 2) => file
            .into_vec::<u16>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 4) => file
            .into_vec::<u32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 8) => file
            .into_vec::<u64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        _ => return Err(bad_file(path, format!("unsupported element type {ts}"))),
    };
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0.0; values.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = values[j * r + i];
            }
        }
        return Ok((t, shape));
    }
    Ok((values, shape))
}

/// Loads a real-valued data set from a `.npy` (a 2-D array `(n, X)`; labels from an
/// optional second `.npy` of `n` integers), an `.npz` (arrays `x` and optional `y`) or a
/// CSV file ([`read_csv`], `label_column` naming its label column), by extension.
///
/// # Errors
/// As [`read_npy`], [`read_npz`], [`read_csv`] and [`Dataset::from_rows`];
/// [`Error::ShapeMismatch`] for an array that is not 2-D.
pub fn load_table(
    path: impl AsRef<Path>,
    labels: Option<&Path>,
    label_column: Option<&str>,
) -> Result<Dataset> {
    let path = path.as_ref();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let (values, shape, y) = match ext {
        "npy" => {
            let (v, s) = read_npy(path)?;
            let y = labels.map(|l| read_npy(l).map(|(v, _)| v)).transpose()?;
            (v, s, y)
        }
        "npz" => read_npz(path)?,
        _ => {
            let (v, width, y) = read_csv(path, label_column)?;
            let n = v.len() / width.max(1);
            (v, vec![n, width], y)
        }
    };
    if shape.len() != 2 {
        return Err(Error::ShapeMismatch {
            context: format!("array in {} (rows, columns)", path.display()),
            expected: vec![2],
            found: vec![shape.len()],
        });
    }
    let labels = y
        .map(|y| {
            y.iter()
                .enumerate()
                .map(|(row, &v)| {
                    if v.fract() == 0.0 && v.is_finite() {
                        Ok(v as i64)
                    } else {
                        Err(Error::BadValue {
                            path: path.to_path_buf(),
                            row,
                            column: 0,
                            reason: format!("label {v} is not an integer"),
                        })
                    }
                })
                .collect::<Result<Vec<i64>>>()
        })
        .transpose()?;
    Dataset::from_rows(values, shape[1], labels, path)
}

/// Reads a CSV file of numbers with a header row: every column is a feature except
/// `label_column` (a header name or a 0-based index), whose integers become the labels.
///
/// Returns the values (row-major), the number of feature columns and the labels.
///
/// # Errors
/// [`Error::Io`] for an unreadable file; [`Error::BadValue`] naming the data row and
/// column (0-based, header excluded) of a field that is not a number or of a row with
/// another number of fields than the header (a ragged file); [`Error::InvalidSetting`]
/// for a label column that does not exist.
pub fn read_csv(
    path: impl AsRef<Path>,
    label_column: Option<&str>,
) -> Result<(Vec<f64>, usize, Option<Vec<f64>>)> {
    let path = path.as_ref();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    let header = reader
        .headers()
        .map_err(|e| bad_file(path, e.to_string()))?
        .clone();
    let width = header.len();
    let label = match label_column {
        None => None,
        Some(name) => Some(
            header
                .iter()
                .position(|h| h == name)
                .or_else(|| name.parse::<usize>().ok().filter(|&i| i < width))
                .ok_or_else(|| {
                    Error::invalid(
                        "label_column",
                        format!("{} has no column `{name}`", path.display()),
                    )
                })?,
        ),
    };
    let (mut values, mut labels) = (Vec::new(), label.map(|_| Vec::new()));
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad_file(path, e.to_string()))?;
        if record.len() != width {
            return Err(Error::BadValue {
                path: path.to_path_buf(),
                row,
                column: record.len().min(width),
                reason: format!("{} fields, the header has {width}", record.len()),
            });
        }
        for (column, field) in record.iter().enumerate() {
            let v: f64 = field.trim().parse().map_err(|_| Error::BadValue {
                path: path.to_path_buf(),
                row,
                column,
                reason: format!("`{field}` is not a number"),
            })?;
            if Some(column) == label {
                if let Some(l) = labels.as_mut() {
                    l.push(v);
                }
            } else {
                values.push(v);
            }
        }
    }
    Ok((values, width - usize::from(label.is_some()), labels))
}
