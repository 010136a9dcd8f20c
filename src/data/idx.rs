//! The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: a 4-byte magic number `0x00 0x00 <type> <ndim>`, then `ndim` big-endian
//! `u32` dimension sizes, then the data in row-major order. Only unsigned bytes
//! (`type = 0x08`), the type of every MNIST-style image and label file, are supported.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{Error, Result};

/// The IDX type code of unsigned bytes.
pub const IDX_U8: u8 = 0x08;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimension sizes, e.g. `[60000, 28, 28]` for images or `[60000]` for labels.
    pub dims: Vec<usize>,
    /// The values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (raw, or gzip-compressed, detected by the gzip magic `1f 8b`).
/// `path` only names the source in errors.
///
/// # Errors
/// [`Error::MalformedIdx`] for a bad magic number, an unsupported type, a truncated
/// header or body, trailing bytes, or corrupt gzip data.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let bad = |reason: String| Error::MalformedIdx {
        path: path.to_path_buf(),
        reason,
    };
    let raw: std::borrow::Cow<[u8]> = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("corrupt gzip stream: {e}")))?;
        out.into()
    } else {
        bytes.into()
    };
    if raw.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for the 4-byte magic number",
            raw.len()
        )));
    }
    if raw[0] != 0 || raw[1] != 0 {
        return Err(bad(format!(
            "bad magic number 0x{:02x}{:02x}{:02x}{:02x} (must start with 0x0000)",
            raw[0], raw[1], raw[2], raw[3]
        )));
    }
    if raw[2] != IDX_U8 {
        return Err(bad(format!(
            "unsupported data type 0x{:02x} (only unsigned bytes, 0x08)",
            raw[2]
        )));
    }
    let ndim = raw[3] as usize;
    if ndim == 0 {
        return Err(bad("zero dimensions".into()));
    }
    let header = 4 + 4 * ndim;
    if raw.len() < header {
        return Err(bad(format!(
            "truncated header: {ndim} dimensions need {header} bytes, file has {}",
            raw.len()
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &raw[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let body = raw.len() - header;
    if body < n {
        return Err(bad(format!(
            "truncated data: dimensions {dims:?} need {n} bytes, file has {body}"
        )));
    }
    if body > n {
        return Err(bad(format!(
            "{} unexpected trailing bytes after {n} data bytes",
            body - n
        )));
    }
    Ok(IdxArray {
        dims,
        data: raw[header..].to_vec(),
    })
}

/// Reads an IDX file (raw or gzip-compressed).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::MalformedIdx`] as in [`parse_idx`].
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Encodes an array as IDX bytes (unsigned bytes, uncompressed).
///
/// # Errors
/// [`Error::ShapeMismatch`] if `data.len()` is not the product of `dims`;
/// [`Error::InvalidSetting`] for more than 255 dimensions or a dimension over `u32::MAX`.
pub fn encode_idx(array: &IdxArray) -> Result<Vec<u8>> {
    let n: usize = array.dims.iter().product();
    if n != array.data.len() {
        return Err(Error::shape(
            "encode_idx (values for the dimensions)",
            &[n],
            &[array.data.len()],
        ));
    }
    let ndim = u8::try_from(array.dims.len())
        .map_err(|_| Error::invalid("dims", "IDX allows at most 255 dimensions"))?;
    let mut out = vec![0, 0, IDX_U8, ndim];
    for &d in &array.dims {
        let d = u32::try_from(d)
            .map_err(|_| Error::invalid("dims", format!("dimension {d} exceeds u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    Ok(out)
}

/// Writes an IDX file; gzip-compressed when `path` ends in `.gz`.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written; as [`encode_idx`] otherwise.
pub fn write_idx(path: impl AsRef<Path>, array: &IdxArray) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_idx(array)?;
    let io = |e| Error::io(path, e);
    if path.extension().is_some_and(|e| e == "gz") {
        let file = std::fs::File::create(path).map_err(io)?;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(&bytes).map_err(io)?;
        gz.finish().map_err(io)?;
    } else {
        std::fs::write(path, bytes).map_err(io)?;
    }
    Ok(())
}
