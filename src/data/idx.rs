//! The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: a 4-byte magic number `0x00 0x00 <type> <ndim>`, then `ndim` big-endian
//! `u32` dimension sizes, then the data in row-major order. Only unsigned bytes
//! (`type = 0x08`), the type of every MNIST-style image and label file, are supported.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;

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

/// The largest IDX body [`parse_idx`] accepts by default: half the memory the system
/// reports available (`MemAvailable` of `/proc/meminfo`), or 4 GiB where that cannot be
/// read. [`parse_idx_limited`] takes another limit.
pub fn default_max_bytes() -> usize {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    available.map_or(4 << 30, |b| b / 2)
}

/// Parses IDX bytes (raw, or gzip-compressed, detected by the gzip magic `1f 8b`; a
/// gzip file of several members is one stream). `path` only names the source in
/// errors. The body may be at most [`default_max_bytes`].
///
/// # Errors
/// As [`parse_idx_limited`].
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    parse_idx_limited(bytes, path, default_max_bytes())
}

/// [`parse_idx`] with a body of at most `max_bytes`. The header is read and checked
/// first, and a gzip stream is inflated only up to the size the header declares (plus
/// one byte, to detect trailing data), so memory stays bounded by the declared size
/// whatever the input.
///
/// # Errors
/// [`Error::MalformedIdx`] for a bad magic number, an unsupported type, a truncated
/// header or body, trailing bytes (also after the last gzip member), corrupt gzip
/// data, or a declared size above `max_bytes` (refused before anything is allocated).
pub fn parse_idx_limited(bytes: &[u8], path: &Path, max_bytes: usize) -> Result<IdxArray> {
    let bad = |reason: String| Error::MalformedIdx {
        path: path.to_path_buf(),
        reason,
    };
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let mut stream: Box<dyn Read + '_> = if gzip {
        Box::new(MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    // Reads exactly `buf.len()` bytes, or says how many there were.
    let mut fill = |buf: &mut [u8], what: &str| -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match stream.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(bad(format!(
                        "truncated {what}: {} bytes needed, {got} found",
                        buf.len()
                    )))
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(format!("corrupt gzip stream: {e}"))),
            }
        }
        Ok(())
    };
    let mut magic = [0u8; 4];
    fill(&mut magic, "magic number")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "bad magic number 0x{:02x}{:02x}{:02x}{:02x} (must start with 0x0000)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != IDX_U8 {
        return Err(bad(format!(
            "unsupported data type 0x{:02x} (only unsigned bytes, 0x08)",
            magic[2]
        )));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(bad("zero dimensions".into()));
    }
    let mut header = vec![0u8; 4 * ndim];
    fill(&mut header, "header")?;
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    if n > max_bytes {
        return Err(bad(format!(
            "dimensions {dims:?} declare {n} bytes, above the limit of {max_bytes} \
             (half the available memory by default)"
        )));
    }
    // Grown as the data arrives (a header may promise more than the file holds), and
    // never past the promised size.
    let mut data = Vec::with_capacity(n.min(1 << 24));
    (&mut stream)
        .take(n as u64)
        .read_to_end(&mut data)
        .map_err(|e| bad(format!("corrupt gzip stream: {e}")))?;
    if data.len() < n {
        return Err(bad(format!(
            "truncated data: dimensions {dims:?} need {n} bytes, file has {}",
            data.len()
        )));
    }
    let mut extra = [0u8; 1];
    match stream.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(bad(format!(
                "unexpected trailing bytes after {n} data bytes"
            )))
        }
        Err(e) => return Err(bad(format!("trailing data that is not gzip: {e}"))),
    }
    Ok(IdxArray { dims, data })
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
